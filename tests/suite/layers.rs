//! The shape of the code, checked: data flows one way (input → hub → edge, with config, metrics,
//! os and contract below everything), and no module imports, directly or through others, a
//! module that imports it back. Reads the sources under `src/` and follows every `crate::`,
//! `super::` and `self::` path in the code that is not a test.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Which layers a layer may use besides itself. `lib` (the entry point that wires them) and
/// `main` may use any.
const ALLOWED: &[(&str, &[&str])] = &[
    ("config", &[]),
    ("metrics", &[]),
    ("os", &[]),
    ("contract", &[]),
    ("engine", &["config"]),
    ("demo", &[]),
    ("cli", &["config", "demo", "edge", "engine"]),
    ("hub", &["config", "metrics", "os"]),
    ("input", &["hub", "engine", "config", "metrics", "os"]),
    (
        "edge",
        &["hub", "engine", "config", "metrics", "os", "contract"],
    ),
];

/// Every module of the library: its path (`edge::session`) → the file it lives in.
fn modules() -> BTreeMap<String, PathBuf> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut found = BTreeMap::new();
    let mut dirs = vec![src.clone()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
                continue;
            }
            let rel = path.strip_prefix(&src).unwrap().with_extension("");
            let rel = rel.to_str().unwrap();
            if path.extension().is_none_or(|e| e != "rs")
                || rel == "main"
                || rel.ends_with("_tests")
            {
                continue;
            }
            let name = match rel {
                "lib" => String::new(),
                _ => rel.trim_end_matches("/mod").replace('/', "::"),
            };
            found.insert(name, path);
        }
    }
    found
}

/// The code of a file without its comments and its test module.
fn code(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap();
    let text = match text.find("#[cfg(test)]\nmod ") {
        Some(at) => &text[..at],
        None => &text[..],
    };
    text.lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The modules `module`'s code refers to, by `crate::`, `super::` or `self::` paths.
fn uses(module: &str, code: &str, known: &BTreeMap<String, PathBuf>) -> BTreeSet<String> {
    let is_dir_module = known[module].ends_with("mod.rs") || module.is_empty();
    let own: Vec<&str> = module.split("::").filter(|s| !s.is_empty()).collect();
    let mut out = BTreeSet::new();
    for (at, _) in code.match_indices("::") {
        // The whole path this `::` belongs to, from its first segment.
        let start = code[..at]
            .rfind(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
            .map_or(0, |i| i + 1);
        let end = at
            + code[at..]
                .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
                .unwrap_or(code.len() - at);
        let path: Vec<&str> = code[start..end]
            .split("::")
            .filter(|s| !s.is_empty())
            .collect();
        let base: Vec<&str> = match path.first() {
            Some(&"crate") => Vec::new(),
            // In `a/mod.rs`, `self` is `a` and `super` is a's parent; in `a/b.rs`, `super` is `a`.
            Some(&"self") => own.clone(),
            Some(&"super") if is_dir_module => own[..own.len().saturating_sub(1)].to_vec(),
            Some(&"super") => own[..own.len() - 1].to_vec(),
            _ => continue,
        };
        let full: Vec<&str> = base.into_iter().chain(path[1..].iter().copied()).collect();
        // The longest prefix that is a module: `hub::packet::Telemetry` → `hub::packet`.
        let target = (0..=full.len())
            .rev()
            .map(|n| full[..n].join("::"))
            .find(|m| known.contains_key(m))
            .unwrap();
        if target != module {
            out.insert(target);
        }
    }
    out
}

fn graph() -> BTreeMap<String, BTreeSet<String>> {
    let known = modules();
    known
        .iter()
        .map(|(module, path)| (module.clone(), uses(module, &code(path), &known)))
        .collect()
}

fn layer(module: &str) -> &str {
    module.split("::").next().unwrap()
}

#[test]
fn layers_only_use_the_layers_below_them() {
    let graph = graph();
    assert!(graph.len() > 20, "the sources were not found: {graph:?}");
    let mut wrong = Vec::new();
    for (module, uses) in &graph {
        if module.is_empty() {
            continue;
        }
        let allowed = ALLOWED
            .iter()
            .find(|(l, _)| *l == layer(module))
            .unwrap_or_else(|| panic!("{module} is in no known layer: add it to ALLOWED"))
            .1;
        for used in uses {
            let to = layer(used);
            if to != layer(module) && !allowed.contains(&to) {
                wrong.push(format!("{module} uses {used}"));
            }
        }
    }
    assert!(wrong.is_empty(), "against the flow: {wrong:#?}");
}

#[test]
fn no_module_imports_one_that_imports_it_back() {
    let graph = graph();
    // Depth-first search for a back edge, reporting the circle it closes.
    fn visit(
        module: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|m| m == module) {
            let mut circle = path[at..].to_vec();
            circle.push(module.to_owned());
            return Some(circle);
        }
        if done.contains(module) {
            return None;
        }
        path.push(module.to_owned());
        for next in &graph[module] {
            if let Some(circle) = visit(next, graph, path, done) {
                return Some(circle);
            }
        }
        path.pop();
        done.insert(module.to_owned());
        None
    }
    let mut done = BTreeSet::new();
    for module in graph.keys() {
        if let Some(circle) = visit(module, &graph, &mut Vec::new(), &mut done) {
            panic!("import circle: {}", circle.join(" → "));
        }
    }
}

/// The checker itself finds what it is for, so the two tests above cannot pass by seeing nothing.
#[test]
fn the_checker_resolves_paths_and_sees_the_known_edges() {
    let graph = graph();
    assert!(graph["edge::session"].contains("hub"));
    assert!(graph["edge::session"].contains("edge::connection::socket"));
    assert!(graph["input::poller"].contains("hub"));
    assert!(graph["input::normalize"].contains("input::normalize::fields"));
    assert!(graph["config::validate"].contains("config"));
    assert!(graph["hub"].contains("hub::packet"));
    assert!(graph[""].contains("edge"));
}

/// Every `.rs` file under `src/`, tests included.
fn sources() -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut dirs = vec![Path::new(env!("CARGO_MANIFEST_DIR")).join("src")];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                found.push(path);
            }
        }
    }
    found
}

/// The lines of `text` that use `unsafe` as code (`unsafe {`, `unsafe fn`, `unsafe impl`,
/// `unsafe extern`, `unsafe trait`, `#[unsafe(…)]`), with their numbers; comments are not code.
fn unsafe_lines(text: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        // A comment runs from a `//` at the start of the line or after a space to its end.
        let code = match line
            .match_indices("//")
            .find(|(at, _)| *at == 0 || line[..*at].ends_with(char::is_whitespace))
        {
            Some((at, _)) => &line[..at],
            None => line,
        };
        let used = code.match_indices("unsafe").any(|(at, word)| {
            let before = code[..at].chars().next_back();
            let rest = code[at + word.len()..].trim_start();
            !before.is_some_and(|c| c.is_alphanumeric() || c == '_')
                && (code[at + word.len()..].starts_with('(')
                    || rest.starts_with('{')
                    || ["fn", "impl", "extern", "trait"].iter().any(|k| {
                        rest.strip_prefix(k).is_some_and(|r| {
                            !r.starts_with(|c: char| c.is_alphanumeric() || c == '_')
                        })
                    }))
        });
        if used {
            out.push((n + 1, line.trim().to_owned()));
        }
    }
    out
}

/// The crate denies `unsafe` code and `os.rs` alone allows it back, so every call the compiler
/// cannot check is in the one file to review; this holds whatever attributes later change.
#[test]
fn unsafe_code_is_only_in_the_os_module() {
    let os = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/os.rs");
    let mut wrong = Vec::new();
    let mut in_os = 0;
    for path in sources() {
        let found = unsafe_lines(&std::fs::read_to_string(&path).unwrap());
        if path == os {
            in_os = found.len();
            continue;
        }
        for (n, line) in found {
            wrong.push(format!("{}:{n}: {line}", path.display()));
        }
    }
    // The checker sees the blocks that are there, so it cannot pass by seeing nothing.
    assert!(
        in_os > 0,
        "no `unsafe` found in src/os.rs: the checker is blind"
    );
    assert!(
        wrong.is_empty(),
        "`unsafe` outside src/os.rs; move it behind a safe function there, with a SAFETY \
         comment: {wrong:#?}"
    );
}

/// What the checker counts as code and what it leaves alone.
#[test]
fn the_unsafe_checker_tells_code_from_comments_and_strings() {
    let code = "unsafe { f() }\nlet x = unsafe{ g() };\npub unsafe fn h() {}\n\
                unsafe impl Send for T {}\n#[unsafe(no_mangle)]\n";
    assert_eq!(unsafe_lines(code).len(), 5, "{:?}", unsafe_lines(code));
    let not_code = "// unsafe { f() }\n/// an unsafe fn\nlet csp = \"'unsafe-inline'\";\n\
                    let a = 1; // unsafe { here }\nlet unsafe_ish = 2;\n";
    assert_eq!(unsafe_lines(not_code), Vec::new());
}

/// The public surface is chosen, not inherited: `lib.rs` declares every module but `cli`
/// `pub(crate)`, and a `pub mod` anywhere else (outside `cli/`, `main.rs`'s side) is one that
/// `lib.rs` re-exports on purpose, so `missing_docs` asks docs only of what users see.
#[test]
fn only_cli_and_the_re_exported_modules_are_public() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let lib = std::fs::read_to_string(src.join("lib.rs")).unwrap();
    // The last segment of every path `lib.rs` re-exports: `input::{aggregate, normalize}` →
    // `aggregate`, `normalize`.
    let exported: BTreeSet<&str> = lib
        .lines()
        .filter_map(|l| l.strip_prefix("pub use "))
        .flat_map(|l| l.split(|c: char| "{},;".contains(c) || c.is_whitespace()))
        .filter_map(|path| path.rsplit("::").next())
        .filter(|name| !name.is_empty())
        .collect();
    let mut public = Vec::new();
    let mut wrong = Vec::new();
    for path in sources() {
        if path.starts_with(src.join("cli")) {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        for name in text
            .lines()
            .filter_map(|l| l.strip_prefix("pub mod "))
            .map(|l| l.trim_end_matches(';'))
        {
            public.push(name.to_owned());
            let re_exported = exported.contains(name);
            let the_cli = path == src.join("lib.rs") && name == "cli";
            if !the_cli && !re_exported {
                wrong.push(format!("{}: pub mod {name}", path.display()));
            }
        }
    }
    // The checker sees the public modules that are there, so it cannot pass by seeing nothing.
    assert!(public.iter().any(|m| m == "cli"), "{public:?}");
    assert!(
        wrong.is_empty(),
        "public modules lib.rs does not re-export; make them pub(crate), or re-export what \
         the tests, bench or fuzz targets need from lib.rs: {wrong:#?}"
    );
}
