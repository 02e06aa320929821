//! A file's keys, walked before the file is read: every unknown key (with the nearest known
//! one) and every value of the wrong kind (with what to write instead) at once, each with its
//! key path and line, so three typos take one run, not three.
//!
//! The known keys are never listed by hand: serde is asked about one key at a time (a document
//! holding only that key, read as a whole [`Config`]), and its answer names the keys it knows.
//! `deny_unknown_fields` stays the backstop when the whole file is read.

use std::collections::HashMap;

use toml::de::{DeTable, DeValue};
use toml::{Table, Value};

use super::{Config, mask_config_message};

/// Every problem with the keys of `text` (which parsed into `doc`), in the file's order and
/// masked; empty when every key is known and every value has the right kind.
pub(super) fn problems(text: &str, doc: &Table) -> Vec<String> {
    let lines = key_lines(text);
    let defaults = Table::try_from(Config::default()).expect("the defaults serialize");
    let mut found: Vec<(usize, String)> = Vec::new();
    let mut report = |path: String, key: &str, value: &Value, message: &str, default| {
        let line = lines.get(&path).copied();
        let mut problem = describe(&path, key, value, message, default, &defaults);
        if let Some(line) = line {
            problem.push_str(&format!(" (line {line})"));
        }
        found.push((line.unwrap_or(usize::MAX), problem));
    };
    // Problems inside an entry of a list of tables, which has no line of its own.
    let mut in_entries = Vec::new();
    for (section, value) in doc {
        match (value, defaults.get(section)) {
            (Value::Table(keys), Some(Value::Table(known))) => {
                for (key, value) in keys {
                    let one = Table::from_iter([(key.clone(), value.clone())]);
                    let Err(message) = probe(section, Value::Table(one)) else {
                        continue;
                    };
                    let path = format!("{section}.{key}");
                    let Some(entries) = table_list(value) else {
                        report(path, key, value, &message, known.get(key));
                        continue;
                    };
                    // `[[alerts.rules]]`: each entry on its own, named by its index.
                    for (i, entry) in entries.iter().enumerate() {
                        let one =
                            Table::from_iter([(key.clone(), Value::Array(vec![entry.clone()]))]);
                        let Err(message) = probe(section, Value::Table(one)) else {
                            continue;
                        };
                        let path = format!("{path}[{i}]");
                        match unknown_field(&message) {
                            Some(field) => {
                                report(format!("{path}.{field}"), field, entry, &message, None)
                            }
                            None => in_entries.push(format!("{path}: {message}")),
                        }
                    }
                }
            }
            (_, default) => {
                if let Err(message) = probe(section, value.clone()) {
                    report(section.clone(), section, value, &message, default);
                }
            }
        }
    }
    found.extend(in_entries.into_iter().map(|problem| (usize::MAX, problem)));
    found.sort_by_key(|(line, _)| *line);
    found
        .into_iter()
        .map(|(_, problem)| mask_config_message(text, &problem))
        .collect()
}

/// The entries of a list of tables (`[[alerts.rules]]`), when `value` is one.
fn table_list(value: &Value) -> Option<&Vec<Value>> {
    value
        .as_array()
        .filter(|items| !items.is_empty() && items.iter().all(Value::is_table))
}

/// The key serde's "unknown field `x`, expected …" is about.
fn unknown_field(message: &str) -> Option<&str> {
    message.strip_prefix("unknown field `")?.split('`').next()
}

/// Reads a document holding only `section = value` as a whole config: serde's first line about
/// it, if it does not fit.
fn probe(section: &str, value: Value) -> Result<(), String> {
    Table::from_iter([(section.to_owned(), value)])
        .try_into::<Config>()
        .map(drop)
        .map_err(|e| e.message().lines().next().unwrap_or_default().to_owned())
}

/// One problem, from serde's `message` about `key` (at `path`) holding `value`.
fn describe(
    path: &str,
    key: &str,
    value: &Value,
    message: &str,
    default: Option<&Value>,
    defaults: &Table,
) -> String {
    if message.starts_with("unknown field") {
        let known = expected(message);
        return match nearest(key, &known) {
            Some(near) => format!("{path}: unknown key; did you mean `{near}`?"),
            // A key written above its section's header: say under which one it goes.
            None => match defaults
                .iter()
                .find(|(_, keys)| keys.as_table().is_some_and(|t| t.contains_key(key)))
            {
                Some((section, _)) if !path.contains('.') => format!(
                    "{path}: unknown key; did you mean `{section}.{key}`? Write it below [{section}]"
                ),
                _ => format!(
                    "{path}: unknown key; the keys here are {}",
                    known
                        .iter()
                        .map(|k| format!("`{k}`"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            },
        };
    }
    if message.starts_with("invalid type") || message.starts_with("invalid value") {
        return format!(
            "{path}: expected {}, not {}",
            kind(key, default),
            shown(key, value)
        );
    }
    format!("{path}: {message}")
}

/// The keys serde's "unknown field `x`, expected one of `a`, `b`" names as known.
fn expected(message: &str) -> Vec<&str> {
    let Some((_, list)) = message.split_once("expected") else {
        return Vec::new();
    };
    list.split('`').skip(1).step_by(2).collect()
}

/// The known key nearest to `key` by edit distance, when it is near enough to be a typo, or
/// is `key` with a unit added or taken off (`timeout` for `timeout_ms`).
fn nearest<'a>(key: &str, known: &[&'a str]) -> Option<&'a str> {
    let limit = (key.chars().count() / 4).max(2);
    let unit = |k: &str| {
        let (short, long) = if k.len() < key.len() {
            (k, key)
        } else {
            (key, k)
        };
        short.len() >= 4 && long.starts_with(short) && long[short.len()..].starts_with('_')
    };
    known
        .iter()
        .map(|k| (distance(key, k), *k))
        .filter(|(d, k)| *d <= limit || unit(k))
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}

/// Levenshtein distance: the single-character edits that turn `a` into `b`.
fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let substitute = diagonal + usize::from(ca != *cb);
            diagonal = row[j + 1];
            row[j + 1] = substitute.min(row[j] + 1).min(diagonal + 1);
        }
    }
    row[b.len()]
}

/// Whether `key` holds a secret, whose value a message must not quote.
fn is_secret(key: &str) -> bool {
    !key.ends_with("_file")
        && ["secret", "password", "token"]
            .iter()
            .any(|s| key.contains(s))
}

/// What `key` holds, with an example taken from its default where it has one.
fn kind(key: &str, default: Option<&Value>) -> String {
    match default {
        Some(Value::Table(_)) => format!("a table: a line [{key}] with its keys below it"),
        Some(Value::Boolean(_)) => "true or false".into(),
        Some(Value::Integer(n)) if key.ends_with("_ms") => {
            format!("a number of milliseconds, e.g. {n}")
        }
        Some(Value::Integer(n)) if key.ends_with("_bytes") => {
            format!("a number of bytes, e.g. {n}")
        }
        Some(Value::Integer(n)) => format!("a whole number, e.g. {n}"),
        Some(Value::Array(items)) => match items.first() {
            Some(first) => format!("a list of strings, e.g. [{first}]"),
            None => "a list of strings, e.g. [\"…\"]".into(),
        },
        Some(Value::String(s)) if key == "url" && s.is_empty() => {
            "a URL in quotes, e.g. \"redis://127.0.0.1:6379\"".into()
        }
        Some(Value::String(s)) if key == "url" => format!("a URL in quotes, e.g. {s:?}"),
        Some(Value::String(s)) if !s.is_empty() && !is_secret(key) => {
            format!("a string in quotes, e.g. {s:?}")
        }
        _ if key.ends_with("_file") => "a file path in quotes, e.g. \"/etc/bff/secret\"".into(),
        _ if key.ends_with("_until") => {
            "an RFC 3339 time in quotes, e.g. \"2026-12-08T12:00:00Z\"".into()
        }
        _ => "a string in quotes".into(),
    }
}

/// `value` as a message may show it: itself (cut short), or only its kind for a secret.
fn shown(key: &str, value: &Value) -> String {
    let text = value.to_string();
    if is_secret(key) || text.contains('\n') || text.chars().count() > 60 {
        let kind = value.type_str();
        let article = if kind.starts_with(['a', 'e', 'i', 'o', 'u']) {
            "an"
        } else {
            "a"
        };
        format!("{article} {kind}")
    } else {
        text
    }
}

/// The line of every key of `text`, by key path (`engine.url`, and `engine` for a section).
fn key_lines(text: &str) -> HashMap<String, usize> {
    let line = |offset: usize| text[..offset.min(text.len())].matches('\n').count() + 1;
    let mut lines = HashMap::new();
    let Ok(doc) = DeTable::parse(text) else {
        return lines;
    };
    for (section, value) in doc.get_ref() {
        lines.insert(section.get_ref().to_string(), line(section.span().start));
        if let DeValue::Table(keys) = value.get_ref() {
            for (key, _) in keys {
                lines.insert(
                    format!("{}.{}", section.get_ref(), key.get_ref()),
                    line(key.span().start),
                );
            }
        }
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problems_of(text: &str) -> Vec<String> {
        problems(text, &toml::from_str(text).unwrap())
    }

    #[test]
    fn every_typo_is_named_with_its_line_and_the_nearest_key() {
        let got = problems_of(
            "[engine]\npoll_intervall_ms = 5\ntimeout = 10\n[server]\nmax_conections = 5\n[clients]\nzzz = 1\n",
        );
        assert_eq!(got.len(), 4, "{got:#?}");
        assert_eq!(
            got[0],
            "engine.poll_intervall_ms: unknown key; did you mean `poll_interval_ms`? (line 2)"
        );
        assert_eq!(
            got[1],
            "engine.timeout: unknown key; did you mean `timeout_ms`? (line 3)"
        );
        assert_eq!(
            got[2],
            "server.max_conections: unknown key; did you mean `max_connections`? (line 5)"
        );
        assert!(
            got[3].starts_with("clients.zzz: unknown key; the keys here are `queue_size`, "),
            "{got:#?}"
        );
    }

    #[test]
    fn sections_and_keys_above_their_section_are_named() {
        assert_eq!(
            problems_of("poll_interval_ms = 5\n[engin]\nurl = \"http://x\"\n"),
            [
                "poll_interval_ms: unknown key; did you mean `engine.poll_interval_ms`? Write it below [engine] (line 1)",
                "engin: unknown key; did you mean `engine`? (line 2)",
            ]
        );
        assert_eq!(
            problems_of("engine = 5\n"),
            ["engine: expected a table: a line [engine] with its keys below it, not 5 (line 1)"]
        );
    }

    #[test]
    fn a_wrong_kind_says_what_to_write() {
        assert_eq!(
            problems_of(
                "[engine]\npoll_interval_ms = \"1s\"\nmax_body_bytes = -1\n[server]\nws_paths = \"/\"\n[commands]\nallow_without_auth = \"yes\"\n[auth]\nsecret = 12345\nwatch = \"maybe\"\n"
            ),
            [
                "engine.poll_interval_ms: expected a number of milliseconds, e.g. 1000, not \"1s\" (line 2)",
                "engine.max_body_bytes: expected a number of bytes, e.g. 1048576, not -1 (line 3)",
                "server.ws_paths: expected a list of strings, e.g. [\"/\"], not \"/\" (line 5)",
                "commands.allow_without_auth: expected true or false, not \"yes\" (line 7)",
                "auth.secret: expected a string in quotes, not an integer (line 9)",
                "auth.watch: unknown variant `maybe`, expected `token` or `open` (line 10)",
            ]
        );
    }

    #[test]
    fn a_problem_in_a_list_of_tables_names_its_entry_and_key() {
        let rule = "field = \"market.price\"\nlevel = \"info\"\ncode = \"X\"\nmessage = \"m\"\n";
        assert_eq!(
            problems_of(&format!(
                "[[alerts.rules]]\n{rule}below = 1.0\n[[alerts.rules]]\n{rule}bellow = 1.0\n[[alerts.rules]]\nfield = \"market.price\"\nlevel = \"loud\"\n"
            )),
            [
                "alerts.rules[1].bellow: unknown key; did you mean `below`?",
                "alerts.rules[2]: unknown variant `loud`, expected one of `critical`, `warning`, `info`",
            ]
        );
    }

    #[test]
    fn a_file_of_the_right_shape_has_no_problems() {
        assert!(problems_of(include_str!("../../bff.toml")).is_empty());
        assert!(problems_of("[auth]\nsecret_file = \"s\"\nissuer = \"i\"\n").is_empty());
    }

    #[test]
    fn distance_counts_edits() {
        assert_eq!(distance("poll_intervall_ms", "poll_interval_ms"), 1);
        assert_eq!(distance("", "abc"), 3);
        assert_eq!(distance("kitten", "sitting"), 3);
    }
}
