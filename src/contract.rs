//! The published contract of what the daemon sends: a JSON Schema (served at `GET
//! /schema.json`) and TypeScript types, both generated from the types in [`crate::hub::packet`]
//! (the packets) and the edge's answers (`UPDATE`, `SUBSCRIBED`, `COMMAND_RESULT`, `PONG`), and
//! checked in under `docs/` for frontends to use.
//!
//! The generators (schemars, ts-rs) run only in this module's tests, which fail when a checked-in
//! file differs from what the types generate; `BFF_UPDATE_CONTRACT=1 cargo test --lib contract`
//! rewrites them. The daemon embeds the checked-in schema, so it carries no generator.

/// The JSON Schema of every message the daemon sends (draft 2020-12).
pub const SCHEMA: &str = include_str!("../docs/packet.schema.json");

#[cfg(test)]
mod tests {
    use std::path::Path;

    use schemars::generate::SchemaSettings;
    use serde::Serialize;
    use ts_rs::TS;

    use crate::edge::command::CommandResult;
    use crate::edge::session::channels::{Rejected, Subscribed, UpdateMessage};

    use crate::config::AlertLevel;
    use crate::hub::announce::MoodChange;
    use crate::hub::mood::{Alert, MoodNow, Persona, Regime};
    use crate::hub::packet::{
        AgentStats, Governance, Level, LogEntry, Market, ModelStats, Packet, PacketType, Portfolio,
        Side, Signal, SourceHealth, Sources, Status, Telemetry, Timestamp,
    };

    /// The answer to a PING: `{"type": "PONG"}` (`pong` to a lowercase `ping`).
    #[derive(Serialize, schemars::JsonSchema, TS)]
    struct Pong {
        /// `PONG` or `pong`.
        #[serde(rename = "type")]
        #[ts(rename = "type", type = "\"PONG\" | \"pong\"")]
        kind: PongType,
    }

    #[derive(Serialize, schemars::JsonSchema, TS)]
    #[allow(dead_code)]
    enum PongType {
        #[serde(rename = "PONG")]
        Upper,
        #[serde(rename = "pong")]
        Lower,
    }

    /// `{"type": "REGIME", "data": …}` on a stream path: the mood changed (PROTOCOL.md §12.5).
    #[derive(Serialize, schemars::JsonSchema, TS)]
    struct RegimeMessage {
        #[serde(rename = "type")]
        #[ts(rename = "type", type = "\"REGIME\"")]
        kind: Literal,
        data: MoodChange,
    }

    /// `{"type": "ALERT", "data": …}` on a stream path: an alert raised or cleared (§12.5).
    #[derive(Serialize, schemars::JsonSchema, TS)]
    struct AlertMessage {
        #[serde(rename = "type")]
        #[ts(rename = "type", type = "\"ALERT\"")]
        kind: Literal,
        data: Alert,
    }

    /// `{"type": "market_regime", …the mood's fields…}` on a market-stream path (§12.6): on
    /// connect without `previous` and `market`, on a change with them.
    #[derive(Serialize, schemars::JsonSchema, TS)]
    struct MarketRegime {
        #[serde(rename = "type")]
        #[ts(rename = "type", type = "\"market_regime\"")]
        kind: Literal,
        #[serde(flatten)]
        mood: MoodNow,
        /// The mood it replaces; absent on connect.
        #[serde(skip_serializing_if = "Option::is_none")]
        #[ts(optional)]
        previous: Option<Regime>,
        /// The market of the packet that confirmed it; absent on connect.
        #[serde(skip_serializing_if = "Option::is_none")]
        #[ts(optional)]
        market: Option<Market>,
    }

    /// `{"type": "alert", …the alert's fields…}` on a market-stream path (§12.6).
    #[derive(Serialize, schemars::JsonSchema, TS)]
    struct MarketAlert {
        #[serde(rename = "type")]
        #[ts(rename = "type", type = "\"alert\"")]
        kind: Literal,
        #[serde(flatten)]
        alert: Alert,
    }

    /// The `type` of a message that has one word only: `REGIME`, `ALERT`, `market_regime`,
    /// `alert` (each message names its own).
    #[derive(Serialize, schemars::JsonSchema, TS)]
    #[allow(dead_code)]
    enum Literal {
        #[serde(rename = "REGIME")]
        Regime,
        #[serde(rename = "ALERT")]
        Alert,
        #[serde(rename = "market_regime")]
        MarketRegime,
        #[serde(rename = "alert")]
        MarketAlert,
    }

    /// What a dashboard sends to join relay channels; to resume after a reconnect it names the
    /// last offset it got of each channel, and the epoch of the packets it got (the handshake's
    /// `epoch` when left out). `UNSUBSCRIBE` takes `channels` alone.
    #[derive(TS)]
    #[allow(dead_code)]
    struct SubscribeRequest {
        #[ts(rename = "type", type = "\"SUBSCRIBE\" | \"subscribe\"")]
        kind: String,
        /// Channels, or patterns exactly as the relay list writes them.
        channels: Vec<String>,
        /// The last `offset` got of each channel: the kept messages after it come first.
        #[ts(optional)]
        since: Option<std::collections::HashMap<String, u64>>,
        /// The epoch those offsets belong to.
        #[ts(optional)]
        epoch: Option<String>,
    }

    /// The query a reconnecting dashboard adds to the WebSocket URL to get the packets it
    /// missed: `?since=<seq>&epoch=<epoch>` of the last packet it got.
    #[derive(TS)]
    #[allow(dead_code)]
    struct ResumeQuery {
        /// The `seq` of the last packet received.
        since: u64,
        /// That packet's `epoch`.
        epoch: String,
    }

    /// A TELEMETRY to a client that asked for fossil deltas (`?delta=fossil`,
    /// `docs/PROTOCOL.md` §13.2).
    #[derive(Serialize, schemars::JsonSchema, TS)]
    #[allow(dead_code)]
    struct DeltaPacket {
        /// Always TELEMETRY: the WELCOME is a whole [`Packet`].
        #[serde(rename = "type")]
        #[ts(rename = "type", type = "\"TELEMETRY\"")]
        kind: TelemetryType,
        /// One more than the packet the delta applies to.
        seq: u64,
        /// With `delta: true`, the fossil delta that turns the previous packet's `data` (its
        /// bytes as they came) into this one's; with `delta: false`, the whole data.
        data: DeltaData,
        /// As in every packet.
        epoch: String,
        /// Whether `data` is a delta.
        delta: bool,
    }

    #[derive(Serialize, schemars::JsonSchema, TS)]
    #[allow(dead_code)]
    enum TelemetryType {
        #[serde(rename = "TELEMETRY")]
        Telemetry,
    }

    /// A delta client's `data`: the delta, or the whole data.
    #[derive(Serialize, schemars::JsonSchema, TS)]
    #[serde(untagged)]
    #[allow(dead_code, clippy::large_enum_variant)]
    enum DeltaData {
        Delta(String),
        Whole(Telemetry),
    }

    /// Any message the daemon sends: a packet, a relayed update, the answer to a subscription,
    /// a command's result, a pong. `type` tells which.
    #[derive(Serialize, schemars::JsonSchema, TS)]
    #[serde(untagged)]
    #[allow(dead_code, clippy::large_enum_variant)]
    enum ServerMessage {
        Packet(Packet),
        DeltaPacket(DeltaPacket),
        Update(UpdateMessage),
        Subscribed(Subscribed),
        CommandResult(CommandResult),
        Pong(Pong),
        Regime(RegimeMessage),
        Alert(AlertMessage),
        MarketRegime(MarketRegime),
        MarketAlert(MarketAlert),
    }

    /// The schema as the types describe what they serialize to.
    fn schema() -> String {
        let mut schema = SchemaSettings::draft2020_12()
            .for_serialize()
            .into_generator()
            .into_root_schema_for::<ServerMessage>();
        schema.insert("title".into(), "bff message".into());
        serde_json::to_string_pretty(&schema).unwrap() + "\n"
    }

    /// Every packet type as one TypeScript module.
    fn typescript() -> String {
        // `JSON.parse` gives numbers, whatever their size.
        let cfg = ts_rs::Config::new().with_large_int("number");
        let decls = [
            ServerMessage::decl(&cfg),
            Packet::decl(&cfg),
            PacketType::decl(&cfg),
            DeltaPacket::decl(&cfg),
            DeltaData::decl(&cfg),
            // The engine's extra sections, typed `unknown` so they do not blur the known ones.
            Telemetry::decl(&cfg).trim_end_matches(';').to_owned()
                + " & { [section: string]: unknown };",
            Status::decl(&cfg),
            Market::decl(&cfg),
            Portfolio::decl(&cfg),
            Signal::decl(&cfg),
            Side::decl(&cfg),
            Governance::decl(&cfg),
            LogEntry::decl(&cfg),
            Level::decl(&cfg),
            AgentStats::decl(&cfg),
            ModelStats::decl(&cfg),
            Sources::decl(&cfg),
            SourceHealth::decl(&cfg),
            Timestamp::decl(&cfg),
            UpdateMessage::decl(&cfg),
            Subscribed::decl(&cfg),
            Rejected::decl(&cfg),
            CommandResult::decl(&cfg),
            Pong::decl(&cfg),
            RegimeMessage::decl(&cfg),
            AlertMessage::decl(&cfg),
            MarketRegime::decl(&cfg),
            MarketAlert::decl(&cfg),
            MoodNow::decl(&cfg),
            MoodChange::decl(&cfg),
            Persona::decl(&cfg),
            Regime::decl(&cfg),
            Alert::decl(&cfg),
            AlertLevel::decl(&cfg),
            SubscribeRequest::decl(&cfg),
            ResumeQuery::decl(&cfg),
        ];
        let mut out = String::from(
            "// What bff sends (and how to subscribe): `import type { ServerMessage, Packet } from './packet';`\n\
             // Generated from the daemon's Rust types; do not edit (see src/contract.rs).\n",
        );
        for decl in decls {
            out.push_str("\nexport ");
            out.push_str(&decl);
            out.push('\n');
        }
        out
    }

    /// Compares `generated` with the checked-in file, or rewrites it when asked to.
    fn check(file: &str, generated: &str) {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("docs")
            .join(file);
        if std::env::var_os("BFF_UPDATE_CONTRACT").is_some() {
            std::fs::write(&path, generated).unwrap();
            return;
        }
        let checked_in = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            checked_in == generated,
            "docs/{file} is out of date with the packet types: run \
             `BFF_UPDATE_CONTRACT=1 cargo test --lib contract` and commit the result"
        );
    }

    #[test]
    fn the_checked_in_schema_is_what_the_types_generate() {
        // `SCHEMA`, which the daemon serves, is this file as compiled in.
        check("packet.schema.json", &schema());
    }

    #[test]
    fn the_checked_in_typescript_is_what_the_types_generate() {
        check("packet.d.ts", &typescript());
    }
}
