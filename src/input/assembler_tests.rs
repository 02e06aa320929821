//! Tests of the assembler: what the inputs send, folded in order into the packets it publishes.

use super::*;
use crate::hub::packet::Models;

/// What the inputs send, assembled in order: one packet when the poll's is due, the
/// endpoint still out marked late, a failed one showing why; the assembler ends when every
/// input has stopped.
#[tokio::test]
async fn a_poll_is_published_once_due_with_what_answered_and_what_is_late() {
    let hub = Hub::new(Telemetry::initializing(Utc::now()), 8, 4);
    let (tx, rx) = mpsc::channel(8);
    let assembler = tokio::spawn(run(
        hub.clone(),
        Arc::new(Metrics::new()),
        Arc::new(Config::default()),
        rx,
        None,
        None,
        CancellationToken::new(),
    ));
    let answers = [
        Answer::Models(Ok(Models::default())),
        Answer::Agents(Err("HTTP 503".into())),
    ];
    for answer in answers {
        tx.send(Input::Answer(answer)).await.unwrap();
    }
    let polled = Input::Polled {
        late: vec![SourceKind::State],
        took: Duration::from_millis(1),
    };
    tx.send(polled).await.unwrap();
    drop(tx);
    assembler.await.unwrap();
    let latest = hub.latest();
    assert_eq!(latest.seq, 1, "one packet, for the one poll");
    let sources = &latest.data().unwrap().sources;
    assert!(sources.models.ok);
    assert_eq!(
        (sources.agents.ok, sources.agents.error.as_deref()),
        (false, Some("HTTP 503"))
    );
    let deadline = Config::default().publish_deadline().as_millis();
    assert_eq!(
        (sources.state.ok, sources.state.error.clone()),
        (
            false,
            Some(format!(
                "no answer within {deadline} ms (engine.publish_deadline_ms); the last good \
                 value is shown"
            ))
        )
    );
}
