//! Table-driven: every case in `fixtures/packets/` names engine answers from `fixtures/engine/`
//! and the exact packet `data` they must produce at a fixed poll time.

use std::path::{Path, PathBuf};

use bff::aggregate::{self, Inputs};
use bff::normalize;
use chrono::{DateTime, Utc};
use serde_json::Value;

const NOW: &str = "2025-12-21T12:00:00.500Z";
const MAX_LOGS: usize = 50;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures")
}

fn read_json(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The engine answer a case names for one source, if it names one.
fn answer(case: &Value, source: &str) -> Option<Value> {
    let name = case[source].as_str()?;
    Some(read_json(&fixtures().join("engine").join(name)))
}

/// Structural equality where numbers are compared as f64 (45 == 45.0) within 1e-9 relative.
fn diff(path: &str, got: &Value, want: &Value, out: &mut Vec<String>) {
    match (got, want) {
        (Value::Number(g), Value::Number(w)) => {
            let (g, w) = (g.as_f64().unwrap(), w.as_f64().unwrap());
            if (g - w).abs() > 1e-9 * w.abs().max(1.0) {
                out.push(format!("{path}: got {g}, want {w}"));
            }
        }
        (Value::Object(g), Value::Object(w)) => {
            for key in g.keys().chain(w.keys().filter(|k| !g.contains_key(*k))) {
                match (g.get(key), w.get(key)) {
                    (Some(gv), Some(wv)) => diff(&format!("{path}.{key}"), gv, wv, out),
                    (Some(gv), None) => out.push(format!("{path}.{key}: unexpected {gv}")),
                    (None, Some(wv)) => out.push(format!("{path}.{key}: missing, want {wv}")),
                    (None, None) => unreachable!(),
                }
            }
        }
        (Value::Array(g), Value::Array(w)) if g.len() == w.len() => {
            for (i, (gv, wv)) in g.iter().zip(w).enumerate() {
                diff(&format!("{path}[{i}]"), gv, wv, out);
            }
        }
        _ if got == want => {}
        _ => out.push(format!("{path}: got {got}, want {want}")),
    }
}

#[test]
fn every_fixture_case_produces_its_exact_packet() {
    let now: DateTime<Utc> = NOW.parse().unwrap();
    let mut cases: Vec<PathBuf> = std::fs::read_dir(fixtures().join("packets"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    cases.sort();
    assert!(
        cases.len() >= 10,
        "expected the fixture table, found {} cases",
        cases.len()
    );

    let mut failures = Vec::new();
    for path in &cases {
        let case = read_json(path);
        let mut inputs = Inputs::default();
        if let Some(a) = answer(&case, "state") {
            inputs.state.record(normalize::state(&a), now);
        }
        if let Some(a) = answer(&case, "agents") {
            inputs.agents.record(normalize::agents(&a), now);
        }
        if let Some(a) = answer(&case, "models") {
            inputs.models.record(normalize::models(&a), now);
        }
        let got = serde_json::to_value(aggregate::build(&inputs, now, MAX_LOGS)).unwrap();
        let mut problems = Vec::new();
        diff("data", &got, &case["expected"], &mut problems);
        if !problems.is_empty() {
            let name = path.file_name().unwrap().to_string_lossy();
            failures.push(format!("{name}:\n    {}", problems.join("\n    ")));
        }
    }
    assert!(
        failures.is_empty(),
        "{} case(s) differ:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn every_engine_sample_is_covered_by_a_case() {
    let samples = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/engine");
    let cases: Vec<Value> = std::fs::read_dir(fixtures().join("packets"))
        .unwrap()
        .map(|e| read_json(&e.unwrap().path()))
        .collect();
    for entry in std::fs::read_dir(samples).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().into_owned();
        let used = cases.iter().any(|c| {
            ["state", "agents", "models"]
                .iter()
                .any(|s| c[*s].as_str() == Some(&name))
        });
        assert!(
            used,
            "fixtures/engine/{name} is not used by any case in fixtures/packets/"
        );
    }
}
