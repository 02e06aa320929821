use super::*;

/// Every family, each touched once with fixed inputs, rendered at a fixed time.
fn rendered() -> String {
    let metrics = Metrics::new();
    metrics.connected();
    metrics.disconnected("client_closed", Some(1000), false);
    metrics.disconnected("slow", None, true);
    metrics.refused(401);
    for kind in Frame::ALL {
        metrics.sent(kind, 10);
    }
    metrics.send_failed();
    metrics.polled("state", Duration::from_millis(3), None);
    metrics.polled("models", Duration::from_millis(20), Some("timeout"));
    metrics.command("halt", "ok");
    metrics.command("unknown", "unknown_action");
    metrics.redis_connected(true);
    metrics.redis_message();
    metrics.redis_merged();
    metrics.redis_pushed();
    metrics.redis_dropped("not_json");
    metrics.redis_reconnect();
    metrics.cluster_role(
        ["joining", "leader", "follower", "fallback", "apart"]
            .map(|role| (role, role == "follower")),
    );
    metrics.cluster_rejected("bad_tag");
    metrics.mood_changed("crash");
    metrics.alert("ENGINE_HALTED", "critical", true);
    metrics.published();
    metrics.fanned_out(Duration::from_millis(7), 3, 100);
    metrics.relay_topics(2);
    let now = DateTime::parse_from_rfc3339("2026-01-02T03:04:05Z")
        .unwrap()
        .with_timezone(&Utc);
    let earlier = now - chrono::Duration::milliseconds(1500);
    metrics.render(4, [("state", Some(earlier)), ("models", None)], now)
}

/// The exposition text does not change by accident: names, help texts, label sets, types and
/// values are those of `fixtures/metrics/exposition.txt`, in the same order. Only the samples
/// within one family are sorted first, since a family's labels come out in no set order.
#[test]
fn the_exposition_text_is_the_one_on_file() {
    let sorted = |text: &str| {
        let mut blocks: Vec<Vec<&str>> = Vec::new();
        for line in text.lines() {
            match blocks.last_mut() {
                Some(block) if !line.starts_with("# HELP") => block.push(line),
                _ => blocks.push(vec![line]),
            }
        }
        for block in &mut blocks {
            // The `# HELP` and `# TYPE` lines stay first.
            let samples = block.len().min(2);
            block[samples..].sort_unstable();
        }
        blocks.concat().join("\n")
    };
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/fixtures/metrics/exposition.txt"
    );
    let text = rendered();
    if std::env::var_os("BFF_WRITE_GOLDEN").is_some() {
        std::fs::write(path, &text).unwrap();
    }
    let golden = std::fs::read_to_string(path).unwrap();
    assert_eq!(sorted(&text), sorted(&golden));
}

#[test]
fn every_frame_kind_is_listed_in_its_place() {
    for (at, kind) in Frame::ALL.into_iter().enumerate() {
        // Fails to compile when a kind is added: then add it here and to `ALL`.
        let place = match kind {
            Frame::Welcome => 0,
            Frame::Telemetry => 1,
            Frame::Ping => 2,
            Frame::Reply => 3,
            Frame::Update => 4,
        };
        assert_eq!(
            (place, kind as usize),
            (at, at),
            "{kind:?} out of place in ALL"
        );
    }
}
