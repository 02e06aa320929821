//! The market's mood and the alerts on the wire (`docs/PROTOCOL.md` §12.4-§12.6), driven by the
//! fake engine's state answers: shown in every WELCOME and on a market-stream connect, one
//! `REGIME` / `market_regime` per change, each alert raised once and cleared once, on both
//! dialects, and counted in `/metrics`.

use crate::common;

use bff::Config;
use common::{Answer, Daemon, FakeEngine, Frame, Ws, config, next_frame, next_packet, within};
use serde_json::Value;

/// `fixtures/engine/state-current.json` (neutral: velocity 0.0012, drawdown -0.05) with some
/// fields changed.
fn state(status: &str, velocity: f64, drawdown: f64) -> Answer {
    let mut state: Value =
        serde_json::from_str(&common::fixture_text("state-current.json")).unwrap();
    state["status"] = status.into();
    state["market"]["velocity"] = velocity.into();
    state["portfolio"]["max_drawdown"] = drawdown.into();
    Answer::Body(state.to_string())
}

/// The calm market: neutral, nothing to alert on.
fn calm() -> Answer {
    state("ACTIVE", 0.0012, -0.05)
}

/// The crisis: halted, falling far below `regime.crash_velocity`, and a drawdown past the
/// test's rule (but not `regime.crash_drawdown`).
fn crisis() -> Answer {
    state("HALTED", -0.02, -0.08)
}

/// The alert codes the crisis raises, in the order they are decided.
const CRISIS_ALERTS: [&str; 3] = ["ENGINE_HALTED", "MARKET_CRASH", "DEEP_DRAWDOWN"];

/// The test's config for `engine`: a mood announced at once, one rule.
async fn mood_config(engine: &FakeEngine) -> Config {
    let mut config = config(engine);
    let mood = Config::parse(
        "[regime]\nmin_dwell_ms = 0\n[[alerts.rules]]\nfield = \"portfolio.max_drawdown\"\nbelow = -0.07\nlevel = \"warning\"\ncode = \"DEEP_DRAWDOWN\"\nmessage = \"Drawdown past 7 %\"\n",
    )
    .unwrap();
    (config.regime, config.alerts) = (mood.regime, mood.alerts);
    config
}

/// The fake engine answering `state`.
async fn engine(state: Answer) -> FakeEngine {
    FakeEngine::start(
        state,
        Answer::File("agents-list.json"),
        Answer::File("models-list.json"),
    )
    .await
}

/// The test's daemon on a calm engine.
async fn start() -> (FakeEngine, Daemon) {
    let engine = engine(calm()).await;
    let daemon = Daemon::start(mood_config(&engine).await).await;
    (engine, daemon)
}

async fn connect(daemon: &Daemon, path: &str) -> Ws {
    tokio_tungstenite::connect_async(daemon.url(path))
        .await
        .unwrap()
        .0
}

/// The next text frame's JSON.
async fn next_json(ws: &mut Ws) -> Value {
    match next_frame(ws).await {
        Frame::Packet(json) => json,
        other => panic!("expected a message, got {other:?}"),
    }
}

/// Every message up to the one `done` holds for, that one included.
async fn read_until(ws: &mut Ws, done: impl Fn(&Value) -> bool) -> Vec<Value> {
    within("the message waited for", async {
        let mut read = Vec::new();
        loop {
            let message = next_json(ws).await;
            let last = done(&message);
            read.push(message);
            if last {
                return read;
            }
        }
    })
    .await
}

/// The packets of the stream with this mood and this many alerts, each one past the last.
fn packet_with(regime: &'static str, alerts: usize) -> impl Fn(&Value) -> bool {
    move |m: &Value| {
        m["type"] == "TELEMETRY"
            && m["data"]["mood"]["regime"] == regime
            && m["data"]["alerts"].as_array().map(Vec::len) == Some(alerts)
    }
}

fn codes(alerts: &Value) -> Vec<&str> {
    alerts
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["code"].as_str().unwrap())
        .collect()
}

/// What a list of messages announced: `REGIME previous>regime` and `ALERT code active`, in order.
fn announced<'a>(
    messages: impl IntoIterator<Item = &'a Value>,
    regime: &str,
    alert: &str,
) -> Vec<String> {
    messages
        .into_iter()
        .filter_map(|m| {
            let fields = if m.get("data").is_some() && m["type"] != "update" {
                &m["data"]
            } else {
                m
            };
            if m["type"] == regime {
                Some(format!(
                    "{} {}>{}",
                    regime,
                    fields["previous"].as_str()?,
                    fields["regime"].as_str()?
                ))
            } else if m["type"] == alert {
                Some(format!(
                    "{} {} {}",
                    alert,
                    fields["code"].as_str()?,
                    fields["active"]
                ))
            } else {
                None
            }
        })
        .collect()
}

/// A crisis and its end, watched on a stream path from before it, and joined mid-crisis on a
/// stream path and on the market-stream path: each sees the mood and the active alerts at once,
/// and every change exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crisis_is_announced_once_on_both_dialects_and_shown_to_whoever_joins_during_it() {
    let (engine, daemon) = start().await;
    let mut stream = daemon.connect().await;
    let welcome = next_packet(&mut stream).await;
    assert_eq!(welcome["type"], "WELCOME");
    assert_eq!(welcome["data"]["mood"]["regime"], "neutral");
    assert_eq!(
        welcome["data"]["mood"]["persona"]["headline"],
        "STAY THE COURSE"
    );
    assert_eq!(welcome["data"]["alerts"], serde_json::json!([]));
    // A market-stream client from the calm: the neutral mood, no alert.
    let mut early = connect(&daemon, "/ws/market-stream").await;
    let greeting = next_json(&mut early).await;
    assert_eq!(
        (
            greeting["type"].as_str(),
            greeting["regime"].as_str(),
            greeting["label"].as_str()
        ),
        (Some("market_regime"), Some("neutral"), Some("Neutral"))
    );
    assert!(greeting.get("previous").is_none(), "{greeting}");
    // Calm packets first, so the crisis is a change from them.
    let mut seen = read_until(&mut stream, packet_with("neutral", 0)).await;

    engine.set("state", crisis());
    seen.extend(read_until(&mut stream, packet_with("crash", 3)).await);

    // Joining mid-crisis.
    let mut late = daemon.connect().await;
    let welcome = next_packet(&mut late).await;
    assert_eq!(welcome["type"], "WELCOME");
    assert_eq!(welcome["data"]["mood"]["regime"], "crash");
    assert_eq!(welcome["data"]["mood"]["persona"]["name"], "Big Pickle");
    assert_eq!(codes(&welcome["data"]["alerts"]), CRISIS_ALERTS);
    let mut market = connect(&daemon, "/ws/market-stream").await;
    let greeting: Vec<Value> = [
        next_json(&mut market).await,
        next_json(&mut market).await,
        next_json(&mut market).await,
        next_json(&mut market).await,
    ]
    .into();
    assert_eq!(
        (greeting[0]["type"].as_str(), greeting[0]["regime"].as_str()),
        (Some("market_regime"), Some("crash")),
        "{greeting:?}"
    );
    assert_eq!(greeting[0]["persona"]["headline"], "SELL EVERYTHING");
    let alerts: Vec<_> = greeting[1..]
        .iter()
        .map(|a| {
            (
                a["type"].as_str().unwrap(),
                a["code"].as_str().unwrap(),
                a["active"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        alerts,
        CRISIS_ALERTS.map(|code| ("alert", code, true)),
        "the active alerts follow the mood, oldest first"
    );

    // A few more crisis packets: nothing announced again.
    for _ in 0..3 {
        seen.extend(read_until(&mut stream, packet_with("crash", 3)).await);
    }
    engine.set("state", calm());
    seen.extend(read_until(&mut stream, packet_with("neutral", 0)).await);
    for _ in 0..3 {
        seen.extend(read_until(&mut stream, packet_with("neutral", 0)).await);
    }

    let raised = CRISIS_ALERTS.map(|code| format!("ALERT {code} true"));
    let cleared = CRISIS_ALERTS.map(|code| format!("ALERT {code} false"));
    let mut expected = vec!["REGIME neutral>crash".to_owned()];
    expected.extend(raised.iter().cloned());
    expected.push("REGIME crash>neutral".to_owned());
    expected.extend(cleared.iter().cloned());
    assert_eq!(announced(&seen, "REGIME", "ALERT"), expected);
    // The packet carrying the new mood follows its REGIME, and the REGIME has that packet's market.
    for (i, message) in seen
        .iter()
        .enumerate()
        .filter(|(_, m)| m["type"] == "REGIME")
    {
        let next = seen[i + 1..]
            .iter()
            .find(|m| m["type"] == "TELEMETRY")
            .unwrap();
        assert_eq!(next["data"]["mood"]["regime"], message["data"]["regime"]);
        assert_eq!(next["data"]["market"], message["data"]["market"]);
    }
    let cleared_at: Vec<_> = seen
        .iter()
        .filter(|m| m["type"] == "ALERT" && m["data"]["active"] == false)
        .collect();
    let after = seen
        .iter()
        .skip_while(|m| m["type"] != "ALERT" || m["data"]["active"] != false)
        .find(|m| m["type"] == "TELEMETRY")
        .unwrap();
    for alert in cleared_at {
        assert_eq!(
            alert["data"]["timestamp"], after["data"]["timestamp"],
            "cleared at the packet that ended it"
        );
    }

    // The late market-stream client: the end of the crisis, and nothing else (no packets).
    let rest = read_until(&mut market, |m| m["type"] == "market_regime").await;
    let mut rest = rest;
    for _ in 0..3 {
        rest.push(next_json(&mut market).await);
    }
    let mut expected = vec!["market_regime crash>neutral".to_owned()];
    expected.extend(cleared.iter().map(|a| a.replacen("ALERT", "alert", 1)));
    assert_eq!(
        announced(&rest, "market_regime", "alert"),
        expected,
        "{rest:?}"
    );
    assert_eq!(
        rest.len(),
        4,
        "nothing but the mood and the alerts: {rest:?}"
    );
    // The early one saw the whole crisis, once.
    let mut whole = Vec::new();
    for _ in 0..8 {
        whole.push(next_json(&mut early).await);
    }
    let mut expected = vec!["market_regime neutral>crash".to_owned()];
    expected.extend(raised.iter().map(|a| a.replacen("ALERT", "alert", 1)));
    expected.push("market_regime crash>neutral".to_owned());
    expected.extend(cleared.iter().map(|a| a.replacen("ALERT", "alert", 1)));
    assert_eq!(
        announced(&whole, "market_regime", "alert"),
        expected,
        "{whole:?}"
    );

    // Client messages are a bridge path's: lowercase answers, and `telemetry` is no channel here.
    let mut asking = connect(&daemon, "/ws/market-stream").await;
    assert_eq!(next_json(&mut asking).await["regime"], "neutral");
    common::send_text(&mut asking, r#"{"type":"PING"}"#).await;
    assert_eq!(
        next_json(&mut asking).await,
        serde_json::json!({"type": "pong"})
    );
    common::send_text(
        &mut asking,
        r#"{"type":"subscribe","channels":["telemetry"]}"#,
    )
    .await;
    let answer = next_json(&mut asking).await;
    assert_eq!(
        (
            answer["type"].as_str(),
            answer["rejected"][0]["channel"].as_str()
        ),
        (Some("subscribed"), Some("telemetry")),
        "{answer}"
    );

    let (metrics, text) = daemon.metrics().await;
    for (sample, want) in [
        (r#"bff_mood_changes_total{regime="crash"}"#, 1.0),
        (r#"bff_mood_changes_total{regime="neutral"}"#, 1.0),
        (
            r#"bff_alerts_total{code="ENGINE_HALTED",level="critical",active="true"}"#,
            1.0,
        ),
        (
            r#"bff_alerts_total{code="DEEP_DRAWDOWN",level="warning",active="false"}"#,
            1.0,
        ),
    ] {
        assert_eq!(metrics.get(sample), Some(&want), "{sample} in {text}");
    }
}

/// A reload renames the mood shown at once without announcing a change, and an alert whose
/// rule is gone clears once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_renames_the_mood_and_clears_the_alert_of_a_rule_gone() {
    let engine = engine(state("ACTIVE", 0.0012, -0.08)).await;
    let config = mood_config(&engine).await;
    let (daemon, reload) = Daemon::start_reloadable(config.clone()).await;
    let mut stream = daemon.connect().await;
    read_until(&mut stream, packet_with("neutral", 1)).await;
    let mut reloaded = config;
    reloaded.alerts.rules.clear();
    reloaded.regime.neutral_headline = "HOLD STEADY".into();
    reload.send_replace(std::sync::Arc::new(reloaded));
    let seen = read_until(&mut stream, |m| {
        m["type"] == "TELEMETRY" && m["data"]["mood"]["persona"]["headline"] == "HOLD STEADY"
    })
    .await;
    assert_eq!(
        seen.last().unwrap()["data"]["alerts"],
        serde_json::json!([])
    );
    assert_eq!(
        announced(&seen, "REGIME", "ALERT"),
        ["ALERT DEEP_DRAWDOWN false"],
        "{seen:#?}"
    );
    let mut more = Vec::new();
    for _ in 0..3 {
        more.extend(read_until(&mut stream, packet_with("neutral", 0)).await);
    }
    assert_eq!(announced(&more, "REGIME", "ALERT"), Vec::<String>::new());
}
