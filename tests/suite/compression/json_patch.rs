//! A JSON-aware delta, measured against fossil and not offered: an RFC 6902 JSON Patch of one
//! packet's data against the one before, down to the leaves that changed, with a list that
//! dropped its oldest entries and took new ones (the logs, the agents' calls) written as those
//! removes and adds. [`super::wire_bytes`] prints its bytes, bare and deflated after the patch
//! before (as a client that keeps its window would read it), each patch checked to rebuild its
//! packet's data.

use std::io::Write;

use flate2::Compression;
use flate2::write::DeflateEncoder;
use serde_json::{Value, json};

/// The patch that turns `before` into `after`.
pub(super) fn diff(before: &Value, after: &Value) -> Vec<Value> {
    let mut ops = Vec::new();
    diff_at("", before, after, &mut ops);
    ops
}

fn diff_at(path: &str, before: &Value, after: &Value, ops: &mut Vec<Value>) {
    match (before, after) {
        _ if before == after => {}
        (Value::Object(b), Value::Object(a)) => {
            for (key, value) in a {
                let at = child(path, key);
                match b.get(key) {
                    Some(old) => diff_at(&at, old, value, ops),
                    None => ops.push(json!({"op": "add", "path": at, "value": value})),
                }
            }
            for key in b.keys().filter(|key| !a.contains_key(*key)) {
                ops.push(json!({"op": "remove", "path": child(path, key)}));
            }
        }
        (Value::Array(b), Value::Array(a)) => match shifted(path, b, a) {
            Some(shift) => ops.extend(shift),
            None if a.len() == b.len() => {
                for (i, (old, new)) in b.iter().zip(a).enumerate() {
                    diff_at(&format!("{path}/{i}"), old, new, ops);
                }
            }
            None => ops.push(json!({"op": "replace", "path": path, "value": after})),
        },
        _ => ops.push(json!({"op": "replace", "path": path, "value": after})),
    }
}

/// The JSON Pointer (RFC 6901) of `key` under `path`.
fn child(path: &str, key: &str) -> String {
    format!("{path}/{}", key.replace('~', "~0").replace('/', "~1"))
}

/// A list that dropped `k` entries at one end and took new ones at the other, keeping some,
/// as the fewest removes and adds that say so; `None` when it changed otherwise.
fn shifted(path: &str, before: &[Value], after: &[Value]) -> Option<Vec<Value>> {
    let n = before.len();
    let mut best: Option<Vec<Value>> = None;
    for k in 1..n {
        let kept = &before[k..];
        // Oldest first: dropped from the front, new ones appended.
        if after.starts_with(kept) {
            let mut ops: Vec<Value> = (0..k)
                .map(|_| json!({"op": "remove", "path": format!("{path}/0")}))
                .collect();
            ops.extend(
                after[kept.len()..]
                    .iter()
                    .map(|value| json!({"op": "add", "path": format!("{path}/-"), "value": value})),
            );
            best = shortest(best, ops);
        }
        let kept = &before[..n - k];
        // Newest first: dropped from the end, new ones put in front.
        if after.ends_with(kept) {
            let mut ops: Vec<Value> = (0..k)
                .map(|j| json!({"op": "remove", "path": format!("{path}/{}", n - 1 - j)}))
                .collect();
            ops.extend(
                after[..after.len() - kept.len()]
                    .iter()
                    .rev()
                    .map(|value| json!({"op": "add", "path": format!("{path}/0"), "value": value})),
            );
            best = shortest(best, ops);
        }
    }
    best
}

fn shortest(best: Option<Vec<Value>>, ops: Vec<Value>) -> Option<Vec<Value>> {
    match best {
        Some(best) if best.len() <= ops.len() => Some(best),
        _ => Some(ops),
    }
}

/// `ops` applied to `data`, as RFC 6902 says (add, remove, replace: the only ones [`diff`]
/// writes), each checked against what the RFC requires of its target.
pub(super) fn apply(mut data: Value, ops: &[Value]) -> Value {
    for op in ops {
        let value = op.get("value").cloned();
        let Some((parent, last)) = op["path"].as_str().unwrap().rsplit_once('/') else {
            data = value.unwrap(); // the whole document replaced
            continue;
        };
        let last = last.replace("~1", "/").replace("~0", "~");
        let target = data.pointer_mut(parent).unwrap();
        let index = |list: &Vec<Value>, end: bool| {
            let i: usize = last
                .parse()
                .unwrap_or_else(|_| panic!("{op}: not an index"));
            assert!(i < list.len() + usize::from(end), "{op}: past the end");
            i
        };
        match (op["op"].as_str().unwrap(), target) {
            ("remove", Value::Object(map)) => {
                map.remove(&last)
                    .unwrap_or_else(|| panic!("{op}: no such key"));
            }
            ("remove", Value::Array(list)) => {
                list.remove(index(list, false));
            }
            ("replace", Value::Object(map)) => {
                let old = map
                    .get_mut(&last)
                    .unwrap_or_else(|| panic!("{op}: no such key"));
                *old = value.unwrap();
            }
            ("add", Value::Object(map)) => {
                map.insert(last, value.unwrap());
            }
            ("add", Value::Array(list)) if last == "-" => list.push(value.unwrap()),
            ("add", Value::Array(list)) => {
                let i = index(list, true);
                list.insert(i, value.unwrap());
            }
            ("replace", Value::Array(list)) => {
                let i = index(list, false);
                list[i] = value.unwrap();
            }
            (kind, target) => panic!("{kind} on {target}"),
        }
    }
    data
}

/// The bytes of `message` compressed as the stream's next message after `window` (the message
/// before, which the client keeps), its sync flush's tail stripped, as the daemon does.
pub(super) fn deflated_after(window: &[u8], message: &[u8]) -> usize {
    let mut encoder = DeflateEncoder::new(Vec::new(), Compression::default());
    encoder.write_all(window).unwrap();
    encoder.flush().unwrap();
    let primed = encoder.get_ref().len();
    encoder.write_all(message).unwrap();
    encoder.flush().unwrap();
    encoder.get_ref().len() - primed - 4
}

/// A patch as the delta envelope carries its data, `"data"` a list of operations.
pub(super) fn message(seq: u64, epoch: &Value, ops: &[Value]) -> Vec<u8> {
    let envelope =
        json!({"type": "TELEMETRY", "seq": seq, "epoch": epoch, "delta": true, "data": ops});
    serde_json::to_vec(&envelope).unwrap()
}

/// Changed leaves, added and removed keys, and lists shifted either way rebuild exactly.
#[test]
fn a_patch_rebuilds_what_it_was_made_from() {
    let before = json!({"a": 1, "b": {"c": "x", "d/e": [1, 2]}, "gone": true,
        "logs": [1, 2, 3, 4], "newest": [4, 3, 2, 1], "other": [1, 2, 3]});
    let after = json!({"a": 2, "b": {"c": "x", "d/e": [1, 3]}, "new": null,
        "logs": [3, 4, 5, 6], "newest": [6, 5, 4, 3], "other": [9]});
    let ops = diff(&before, &after);
    assert_eq!(apply(before.clone(), &ops), after);
    let adds = ops.iter().filter(|op| op["op"] == "add").count();
    assert_eq!(adds, 5, "{ops:#?}");
    assert!(diff(&after, &after).is_empty());
}
