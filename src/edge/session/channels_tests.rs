use super::*;

fn config() -> Config {
    let mut config = Config::default();
    config.redis.url = crate::config::RedisUrl::new("redis://127.0.0.1:6379");
    config.clients.max_channels = 3;
    config
}

fn ask(channels: &[&str], lowercase: bool) -> Subscribe {
    Subscribe {
        channels: channels.iter().map(|c| c.to_string()).collect(),
        lowercase,
        ..Subscribe::default()
    }
}

fn names(list: &[Rejected]) -> Vec<(&str, &str)> {
    list.iter()
        .map(|r| (r.channel.as_str(), r.reason.as_str()))
        .collect()
}

#[test]
fn the_allow_list_and_the_cap_decide_and_each_refusal_says_why() {
    let (relay, config) = (Arc::new(Relay::default()), config());
    let mut channels = Channels::default();
    let asked = [
        "trade.results",
        "market.tick.SPY",
        "secret.keys",
        "market.*",
        "",
        "trade.results",
    ];
    let (answer, _) = channels.subscribe(ask(&asked, false), &config, &relay, Encoding::Stream);
    assert_eq!(answer.kind, "SUBSCRIBED");
    assert_eq!(answer.channels, ["trade.results", "market.tick.SPY"]);
    assert_eq!(
        names(&answer.rejected),
        [
            (
                "secret.keys",
                "not relayed: no entry of redis.relay matches it"
            ),
            (
                "market.*",
                "a pattern must be one of redis.relay as written"
            ),
            ("", "not a channel name"),
            ("trade.results", "already subscribed"),
        ]
    );
    // A pattern replaces the exact channels it covers, then covers them.
    let (answer, _) = channels.subscribe(
        ask(&["market.tick.*"], true),
        &config,
        &relay,
        Encoding::Stream,
    );
    assert_eq!((answer.kind, answer.channels.len()), ("subscribed", 1));
    assert_eq!(channels.len(), 2);
    let asked = ask(&["market.tick.AAPL", "risk.state", "agent.updates"], false);
    let (answer, _) = channels.subscribe(asked, &config, &relay, Encoding::Stream);
    assert_eq!(answer.channels, ["risk.state"]);
    assert_eq!(
        names(&answer.rejected),
        [
            ("market.tick.AAPL", "already covered by market.tick.*"),
            (
                "agent.updates",
                "at most 3 subscriptions per connection (clients.max_channels)"
            ),
        ]
    );
    let answer = channels.unsubscribe(vec!["risk.state".into(), "risk.state".into()], false);
    assert_eq!(
        (answer.kind, answer.channels.clone()),
        ("UNSUBSCRIBED", vec!["risk.state".to_owned()])
    );
    assert_eq!(names(&answer.rejected), [("risk.state", "not subscribed")]);
}

#[test]
fn without_redis_only_the_bridge_telemetry_channel_exists() {
    let relay = Arc::new(Relay::default());
    let config = Config::default();
    let mut channels = Channels::default();
    let asked = ask(&["telemetry", "risk.state"], true);
    let (answer, _) = channels.subscribe(asked, &config, &relay, Encoding::Bridge);
    assert_eq!(answer.channels, ["telemetry"]);
    assert_eq!(
        names(&answer.rejected),
        [("risk.state", "channels are off here: redis.url is not set")]
    );
    assert!(channels.telemetry);
    let (answer, _) = channels.subscribe(
        ask(&["telemetry"], false),
        &config,
        &relay,
        Encoding::Stream,
    );
    assert_eq!(
        answer.rejected.len(),
        1,
        "telemetry is a channel on bridge paths only"
    );
}

#[tokio::test]
async fn subscribed_channels_deliver_in_order() {
    let (relay, config) = (Arc::new(Relay::default()), config());
    let mut channels = Channels::default();
    channels.subscribe(
        ask(&["market.tick.*"], false),
        &config,
        &relay,
        Encoding::Stream,
    );
    relay.publish("e", "market.tick.SPY", b"1");
    relay.publish("e", "risk.state", b"2");
    relay.publish("e", "market.tick.SPY", b"3");
    assert_eq!(channels.next().await.unwrap().offset, 1);
    assert_eq!(channels.next().await.unwrap().offset, 2);
}

#[test]
fn a_resuming_subscribe_gets_what_it_missed_and_says_which_channels_resumed() {
    let (relay, config) = (Arc::new(Relay::new("e1".into(), 300)), config());
    for n in 1..=5 {
        relay.publish("e1", "trade.results", format!("{n}").as_bytes());
    }
    relay.publish("e1", "market.tick.SPY", b"1");
    let mut channels = Channels::default();
    let asked = Subscribe {
        since: vec![
            ("trade.results".into(), 3),
            ("market.tick.SPY".into(), 0),
            ("market.tick.QQQ".into(), 2),
            ("risk.state".into(), 0),
        ],
        epoch: Some("e1".into()),
        ..ask(&["trade.results", "market.tick.*"], false)
    };
    let (answer, missed) = channels.subscribe(asked, &config, &relay, Encoding::Stream);
    let resumed = answer.resumed.unwrap();
    assert_eq!(
        resumed.into_iter().collect::<Vec<_>>(),
        [
            ("market.tick.QQQ".into(), false),
            ("market.tick.SPY".into(), true),
            ("trade.results".into(), true),
        ],
        "risk.state was not subscribed by this request"
    );
    let missed: Vec<_> = missed
        .iter()
        .map(|u| (u.channel.to_string(), u.offset))
        .collect();
    assert_eq!(
        missed,
        [
            ("trade.results".into(), 4),
            ("trade.results".into(), 5),
            ("market.tick.SPY".into(), 1)
        ]
    );
    // Without `since`, the answer says nothing of resuming.
    let (answer, missed) = channels.subscribe(
        ask(&["risk.state"], false),
        &config,
        &relay,
        Encoding::Stream,
    );
    assert_eq!((answer.resumed, missed.len()), (None, 0));
}

#[test]
fn a_topic_is_freed_when_its_last_subscriber_leaves_or_ends() {
    let (relay, config) = (Arc::new(Relay::default()), config());
    let (mut a, mut b) = (Channels::default(), Channels::default());
    a.subscribe(
        ask(&["trade.results", "risk.state"], false),
        &config,
        &relay,
        Encoding::Stream,
    );
    b.subscribe(
        ask(&["trade.results"], false),
        &config,
        &relay,
        Encoding::Stream,
    );
    assert_eq!(relay.held(), 2);
    a.unsubscribe(vec!["risk.state".into(), "trade.results".into()], false);
    assert_eq!(relay.held(), 1, "b still hears trade.results");
    // A pattern replaces the exact channels it covers, and their topics with them.
    b.subscribe(
        ask(&["market.tick.SPY"], false),
        &config,
        &relay,
        Encoding::Stream,
    );
    b.subscribe(
        ask(&["market.tick.*"], false),
        &config,
        &relay,
        Encoding::Stream,
    );
    assert_eq!(relay.held(), 2);
    drop(b);
    assert_eq!(relay.held(), 0);
}

#[test]
fn the_daemon_wide_cap_refuses_a_new_topic_and_says_why() {
    let (relay, mut config) = (Arc::new(Relay::default()), config());
    config.redis.max_topics = 2;
    let (mut a, mut b) = (Channels::default(), Channels::default());
    a.subscribe(
        ask(&["trade.results", "risk.state"], false),
        &config,
        &relay,
        Encoding::Stream,
    );
    let (answer, _) = b.subscribe(
        ask(&["trade.results", "agent.updates"], false),
        &config,
        &relay,
        Encoding::Stream,
    );
    assert_eq!(answer.channels, ["trade.results"], "a held topic is joined");
    assert_eq!(
        names(&answer.rejected),
        [(
            "agent.updates",
            "too many relay channels held daemon-wide (redis.max_topics = 2); retry later"
        )]
    );
    assert_eq!((b.len(), relay.held()), (1, 2));
}
