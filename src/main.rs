//! The `bff` command line: parses the flags, sets up logging, and calls the library: a
//! subcommand from [`bff::cli`], or the daemon, [`bff::run`], with the config reloaded on
//! `SIGHUP`.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;
use bff::Config;
use bff::cli::{self, Cli, Command, check_config, demo_engine, reload, token};
use clap::Parser;
use tokio::signal::unix::{Signal, SignalKind, signal};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::info;

fn main() -> ExitCode {
    let mut cli = Cli::parse();
    if let Some(Command::CheckConfig { settings }) = &cli.command {
        cli.settings = settings.clone().or(cli.settings);
    }
    // check-config's standard output is the TOML alone, so it can be saved and read back.
    let check_config = matches!(cli.command, Some(Command::CheckConfig { .. }));
    cli::logging::init(cli.log_format, check_config);
    if cli.demo && cli.settings.engine_url.is_some() {
        eprintln!("bff: --demo polls the built-in simulator; drop --engine-url or --demo");
        return ExitCode::from(2);
    }
    let (result, code) = match &cli.command {
        Some(Command::Token(args)) => (token::run(args), 2),
        Some(Command::DemoEngine(args)) => (demo_engine(args, &cli.settings), 1),
        Some(Command::CheckConfig { .. }) => match check_config::run(&cli.settings) {
            Ok(()) => return ExitCode::SUCCESS,
            Err(err) => return fail(err, 2),
        },
        None => match reload::load(&cli.settings) {
            Ok(config) => (daemon(cli, config), 1),
            Err(err) => return fail(err, 2),
        },
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => fail(format_args!("{err:#}"), code),
    }
}

/// Says why on standard error and exits with `code` (2 for what the command line or the config
/// got wrong).
fn fail(why: impl std::fmt::Display, code: u8) -> ExitCode {
    eprintln!("bff: {why}");
    ExitCode::from(code)
}

#[tokio::main]
async fn demo_engine(args: &demo_engine::Args, outer: &cli::Settings) -> anyhow::Result<()> {
    // `bff --redis-url URL demo-engine`, as before the flag was demo-engine's own, too.
    demo_engine::run(args, outer.redis_url.as_deref(), bff::shutdown_signal()).await
}

#[tokio::main]
async fn daemon(cli: Cli, config: Config) -> anyhow::Result<()> {
    let shutdown = CancellationToken::new();
    let demo = if cli.demo {
        let publish_to = cli.settings.redis_url.as_ref().map(|_| &config.redis.url);
        Some(demo_engine::beside_daemon(&config, publish_to, shutdown.clone()).await?)
    } else {
        None
    };
    let config = reload::with_demo_engine(config, demo);
    let listen = config.server.listen;
    bff::raise_file_limit(config.server.max_connections);
    let listener = bff::listen(listen).map_err(|err| {
        anyhow::anyhow!(
            "cannot listen on {listen}: {err}; is another process using it? Pick another address with --listen or server.listen"
        )
    })?;
    let stop = shutdown.clone();
    tokio::spawn(async move {
        bff::shutdown_signal().await;
        stop.cancel();
        info!("Signal received");
    });
    let (settings, running) = watch::channel(Arc::new(config));
    // Installed before the daemon starts: SIGHUP's default action would end the process.
    let hangups = signal(SignalKind::hangup()).context("installing the SIGHUP handler")?;
    tokio::spawn(reload_on_hangup(hangups, cli, demo, settings));
    bff::run(running, listener, shutdown).await
}

/// On every SIGHUP, [`reload::reload`]: the file again, with the same command-line overrides,
/// handed to the running daemon; a file with problems is reported and the running config stays.
async fn reload_on_hangup(
    mut hangups: Signal,
    cli: Cli,
    demo: Option<SocketAddr>,
    settings: watch::Sender<Arc<Config>>,
) {
    while hangups.recv().await.is_some() {
        // Both outcomes are logged by `reload`; the daemon goes on either way.
        let _ = reload::reload(&cli.settings, demo, &settings);
    }
}
