//! The `bff` command line: its flags and subcommands, each subcommand in a file of its own, and
//! the reload that `SIGHUP` triggers. `main.rs` parses [`Cli`] and calls into these; the tests
//! call [`reload::reload`] without a signal.

pub mod check_config;
pub mod demo_engine;
pub mod logging;
pub mod reload;
pub mod token;

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Polls a trading engine and streams one TELEMETRY packet a second to WebSocket dashboards.
#[derive(Debug, Clone, Parser)]
#[command(version, about)]
pub struct Cli {
    #[command(flatten)]
    #[allow(missing_docs)]
    // A doc comment here would become help text; the fields have theirs.
    pub settings: Settings,
    /// Poll an embedded engine simulator instead of a real engine
    #[arg(long)]
    pub demo: bool,
    /// Log lines for people (coloured on a terminal) or one JSON object per line for collectors
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Pretty)]
    pub log_format: LogFormat,
    #[command(subcommand)]
    #[allow(missing_docs)]
    pub command: Option<Command>,
}

/// The config file and the flags overriding it: the daemon's and `check-config`'s own, so other
/// subcommands' `--help` does not list them. Kept for every reload, which applies them again.
#[derive(Debug, Clone, Default, Args)]
pub struct Settings {
    /// Config file [default: ./bff.toml when present, else built-in defaults]
    #[arg(long, value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// Address to listen on, overriding server.listen (e.g. 0.0.0.0:3000, 127.0.0.1:0,
    /// localhost:3000)
    #[arg(long, value_name = "ADDR", value_parser = crate::config::listen_addr)]
    pub listen: Option<SocketAddr>,
    /// Engine base URL, overriding engine.url (endpoint paths are appended to its path)
    #[arg(long, value_name = "URL")]
    pub engine_url: Option<String>,
    /// Redis URL, overriding redis.url: merge the engine's events and relay channels (with
    /// --demo, the simulator publishes its events there too; a redis.url from the config file
    /// never gets them)
    #[arg(long, value_name = "URL")]
    pub redis_url: Option<String>,
    /// Redis shared by several daemons, overriding cluster.url: one of them polls, all serve
    #[arg(long, value_name = "URL")]
    pub cluster: Option<String>,
    /// File holding the token secret, overriding auth.secret_file (see `bff token`)
    #[arg(long, value_name = "PATH")]
    pub auth_secret_file: Option<PathBuf>,
}

impl Settings {
    /// These settings, each one not given taken from `outer` (`bff --config x check-config`
    /// and `bff check-config --config x` mean the same).
    pub fn or(self, outer: Settings) -> Settings {
        Settings {
            config: self.config.or(outer.config),
            listen: self.listen.or(outer.listen),
            engine_url: self.engine_url.or(outer.engine_url),
            redis_url: self.redis_url.or(outer.redis_url),
            cluster: self.cluster.or(outer.cluster),
            auth_secret_file: self.auth_secret_file.or(outer.auth_secret_file),
        }
    }
}

/// How log lines are written (`--log-format`).
#[derive(Debug, Clone, Copy, ValueEnum)]
#[allow(missing_docs)] // Doc comments on the variants would become `--help` text.
pub enum LogFormat {
    Pretty,
    Json,
}

/// The subcommands; without one, `bff` runs the daemon.
#[derive(Debug, Clone, Subcommand)]
#[allow(missing_docs)] // The variants' doc comments are their `--help` text.
pub enum Command {
    /// Check a config file and print the effective config
    CheckConfig {
        #[command(flatten)]
        settings: Settings,
    },
    /// Run only the engine simulator that --demo polls, for testing against a separate engine
    DemoEngine(demo_engine::Args),
    /// Print a token (an HS256 JWT) signed with the secret in a file, creating the file with a
    /// random secret when it does not exist yet
    Token(token::Args),
}
