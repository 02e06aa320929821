//! Looks for the tools some integration tests drive (redis-server, Chromium, Node and the
//! JavaScript client's dev dependencies, Python's `websockets`, systemd-analyze) and sets a `bff_no_*` cfg for each one missing, so those tests
//! are compiled as `#[ignore = "<tool> not found: how to install it"]` and `cargo test` counts
//! them as ignored, with the reason, rather than as passed. Under CI (`CI` set) nothing is
//! marked: the tests run, and one whose tool is missing fails, saying which.

use std::path::Path;
use std::process::Command;

/// Every cfg this script may set, declared so the compiler knows them.
const CFGS: [&str; 7] = [
    "bff_no_redis",
    "bff_no_browser",
    "bff_no_node",
    "bff_no_js_deps",
    "bff_no_python",
    "bff_no_systemd",
    "bff_node_has_websocket",
];

fn main() {
    println!("cargo::rerun-if-changed=build.rs");
    println!("cargo::rerun-if-env-changed=CI");
    println!("cargo::rerun-if-env-changed=PATH");
    for cfg in CFGS {
        println!("cargo::rustc-check-cfg=cfg({cfg})");
    }
    let node = node_major();
    if node.is_some_and(|major| major >= 22) {
        // Not a missing tool: the one test about Node 20's flag has nothing to check here.
        println!("cargo::rustc-cfg=bff_node_has_websocket");
    }
    if std::env::var_os("CI").is_some() {
        return;
    }
    let missing = [
        ("bff_no_redis", runs("redis-server", &["--version"])),
        (
            "bff_no_browser",
            Path::new("/usr/bin/chromium").exists() && Path::new("/usr/bin/chromedriver").exists(),
        ),
        (
            "bff_no_python",
            runs("python3", &["-c", "import websockets"]),
        ),
        ("bff_no_systemd", runs("systemd-analyze", &["--version"])),
    ];
    for (cfg, found) in missing {
        if !found {
            println!("cargo::rustc-cfg={cfg}");
        }
    }
    if node.is_none() {
        println!("cargo::rustc-cfg=bff_no_node");
    }
    // Watched where they are, so `npm ci --prefix clients/js` is noticed; a path that does not
    // exist would rerun this script, and rebuild the crate, at every build.
    if Path::new("clients/js/node_modules/react-test-renderer").is_dir() {
        println!("cargo::rerun-if-changed=clients/js/node_modules/.package-lock.json");
    } else {
        println!("cargo::rerun-if-changed=clients/js");
        println!("cargo::rustc-cfg=bff_no_js_deps");
    }
}

/// Whether `program args` runs and exits with success.
fn runs(program: &str, args: &[&str]) -> bool {
    Command::new(program)
        .args(args)
        .output()
        .is_ok_and(|out| out.status.success())
}

/// The major version of `node`, if it runs.
fn node_major() -> Option<u32> {
    let out = Command::new("node").arg("--version").output().ok()?;
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .trim_start_matches('v')
        .split('.')
        .next()?
        .parse()
        .ok()
}
