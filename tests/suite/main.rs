//! The fast integration tests, one module per topic, in one binary so that the crate and
//! `tests/common` are compiled and linked once rather than once per file. Run one topic with
//! `cargo test --test suite cli::`.
//!
//! Kept out, each a binary of its own so it can be run alone: the slow ones (`browser`, `churn`,
//! `cluster`), and the ones that read back this process's log (`auth`, `commands`, `logs`,
//! `redis`): a process has one global log sink, and their counts of log lines would take in the
//! lines of every other test running beside them.

#[path = "../common/mod.rs"]
mod common;

mod cli;
mod compression;
mod daemon;
mod demo_mood;
mod demo_redis;
mod engine_faults;
mod http;
mod layers;
mod mood;
mod packets;
mod redis_harness;
mod resume;
mod segments;
