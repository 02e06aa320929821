//! The published contract of the packets: a JSON Schema (served at `GET /schema.json`) and
//! TypeScript types, both generated from the types in [`crate::hub::packet`] and checked in under
//! `docs/` for frontends to use.
//!
//! The generators (schemars, ts-rs) run only in this module's tests, which fail when a checked-in
//! file differs from what the types generate; `BFF_UPDATE_CONTRACT=1 cargo test --lib contract`
//! rewrites them. The daemon embeds the checked-in schema, so it carries no generator.

/// The JSON Schema of a WELCOME or TELEMETRY packet (draft 2020-12).
pub const SCHEMA: &str = include_str!("../docs/packet.schema.json");

#[cfg(test)]
mod tests {
    use std::path::Path;

    use schemars::generate::SchemaSettings;
    use ts_rs::TS;

    use crate::hub::packet::{
        AgentStats, Governance, Level, LogEntry, Market, ModelStats, Packet, PacketType, Portfolio,
        Side, Signal, SourceHealth, Sources, Status, Telemetry, Timestamp,
    };

    /// The schema as the packet types describe what they serialize to.
    fn schema() -> String {
        let mut schema = SchemaSettings::draft2020_12()
            .for_serialize()
            .into_generator()
            .into_root_schema_for::<Packet>();
        schema.insert("title".into(), "bff packet".into());
        serde_json::to_string_pretty(&schema).unwrap() + "\n"
    }

    /// Every packet type as one TypeScript module.
    fn typescript() -> String {
        // `JSON.parse` gives numbers, whatever their size.
        let cfg = ts_rs::Config::new().with_large_int("number");
        let decls = [
            Packet::decl(&cfg),
            PacketType::decl(&cfg),
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
        ];
        let mut out = String::from(
            "// The packets bff sends: `import type { Packet } from './packet';`\n\
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
