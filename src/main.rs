//! The `bff` command line: reads the config, sets up logging, and runs the daemon library.

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;
use bff::config::{Config, ConfigError};
use clap::{Args, Parser, Subcommand, ValueEnum};
use tokio::signal::unix::{Signal, SignalKind, signal};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::writer::BoxMakeWriter;

/// Polls a trading engine and streams one TELEMETRY packet a second to WebSocket dashboards.
#[derive(Debug, Clone, Parser)]
#[command(version, about)]
struct Cli {
    #[command(flatten)]
    settings: Settings,
    /// Poll an embedded engine simulator instead of a real engine
    #[arg(long)]
    demo: bool,
    /// Log lines for people (coloured on a terminal) or one JSON object per line for collectors
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Pretty)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Option<Command>,
}

/// The config file and the flags overriding it: the daemon's and `check-config`'s own, so other
/// subcommands' `--help` does not list them.
#[derive(Debug, Clone, Default, Args)]
struct Settings {
    /// Config file [default: ./bff.toml when present, else built-in defaults]
    #[arg(long, value_name = "PATH")]
    config: Option<PathBuf>,
    /// Address to listen on, overriding server.listen (e.g. 0.0.0.0:3000, 127.0.0.1:0,
    /// localhost:3000)
    #[arg(long, value_name = "ADDR", value_parser = bff::config::listen_addr)]
    listen: Option<SocketAddr>,
    /// Engine base URL, overriding engine.url (endpoint paths are appended to its path)
    #[arg(long, value_name = "URL")]
    engine_url: Option<String>,
    /// Redis URL, overriding redis.url: merge the engine's events and relay channels (with
    /// --demo, the simulator publishes its events there too; a redis.url from the config file
    /// never gets them)
    #[arg(long, value_name = "URL")]
    redis_url: Option<String>,
    /// Redis shared by several daemons, overriding cluster.url: one of them polls, all serve
    #[arg(long, value_name = "URL")]
    cluster: Option<String>,
    /// File holding the token secret, overriding auth.secret_file (see `bff token`)
    #[arg(long, value_name = "PATH")]
    auth_secret_file: Option<PathBuf>,
}

impl Settings {
    /// These settings, each one not given taken from `outer` (`bff --config x check-config`
    /// and `bff check-config --config x` mean the same).
    fn or(self, outer: Settings) -> Settings {
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

#[derive(Debug, Clone, Copy, ValueEnum)]
enum LogFormat {
    Pretty,
    Json,
}

#[derive(Debug, Clone, Subcommand)]
enum Command {
    /// Check a config file and print the effective config
    CheckConfig {
        #[command(flatten)]
        settings: Settings,
    },
    /// Run only the engine simulator that --demo polls, for testing against a separate engine
    DemoEngine {
        /// Address to serve the engine API on
        #[arg(long = "on", value_name = "ADDR", default_value = "127.0.0.1:8000")]
        addr: SocketAddr,
        /// Redis URL to publish the simulator's events to (market ticks, system_events, …)
        #[arg(long, value_name = "URL")]
        redis_url: Option<String>,
    },
    /// Print a token (an HS256 JWT) signed with the secret in a file, creating the file with a
    /// random secret when it does not exist yet
    Token {
        /// The secret's file, the same the daemon reads (auth.secret_file, --auth-secret-file,
        /// which is accepted here too)
        #[arg(long, visible_alias = "auth-secret-file", value_name = "PATH")]
        secret_file: PathBuf,
        /// Who the token is for (required, and one per person or script): the command rate,
        /// repeats and the log go by it, so tokens sharing one would share them
        #[arg(long)]
        sub: String,
        /// `operator` may send every action; the only role there is, so any other is refused
        /// rather than minting a token that only watches
        #[arg(long, value_parser = [bff::edge::auth::OPERATOR])]
        role: Option<String>,
        /// Actions it may send (halt, resume, rebalance, export-logs), comma-separated
        #[arg(long, value_delimiter = ',')]
        actions: Vec<String>,
        /// How long it is valid: 90s, 30m, 1h, 7d
        #[arg(long, default_value = "1h", value_parser = parse_ttl)]
        ttl: i64,
    },
}

fn main() -> ExitCode {
    let mut cli = Cli::parse();
    if let Some(Command::CheckConfig { settings }) = &cli.command {
        cli.settings = settings.clone().or(cli.settings);
    }
    // check-config's standard output is the TOML alone, so it can be saved and read back.
    let check_config = matches!(cli.command, Some(Command::CheckConfig { .. }));
    init_logging(cli.log_format, check_config);
    if cli.demo && cli.settings.engine_url.is_some() {
        eprintln!("bff: --demo polls the built-in simulator; drop --engine-url or --demo");
        return ExitCode::from(2);
    }
    if let Some(Command::Token {
        secret_file,
        sub,
        role,
        actions,
        ttl,
    }) = &cli.command
    {
        return match token(secret_file, sub, role.as_deref(), actions, *ttl) {
            Ok(()) => ExitCode::SUCCESS,
            Err(err) => {
                eprintln!("bff: {err:#}");
                ExitCode::from(2)
            }
        };
    }
    if let Some(Command::DemoEngine { addr, redis_url }) = &cli.command {
        // `bff --redis-url URL demo-engine`, as before the flag was demo-engine's own, too.
        let redis = redis_url.as_deref().or(cli.settings.redis_url.as_deref());
        return match demo_engine(*addr, redis) {
            Ok(()) => ExitCode::SUCCESS,
            Err(err) => {
                eprintln!("bff: {err:#}");
                ExitCode::FAILURE
            }
        };
    }
    match load(&cli) {
        Ok(config) if check_config => {
            print!("{}", config.to_toml());
            ExitCode::SUCCESS
        }
        Ok(config) => match daemon(cli, config) {
            Ok(()) => ExitCode::SUCCESS,
            Err(err) => {
                eprintln!("bff: {err:#}");
                ExitCode::FAILURE
            }
        },
        Err(err) => {
            eprintln!("bff: {err}");
            ExitCode::from(2)
        }
    }
}

/// Logs at `RUST_LOG`'s levels (default `info`): the daemon to standard output, `check-config`
/// (`to_stderr`) to standard error, as its standard output is the effective config.
fn init_logging(format: LogFormat, to_stderr: bool) {
    let (writer, terminal) = if to_stderr {
        (
            BoxMakeWriter::new(std::io::stderr),
            std::io::stderr().is_terminal(),
        )
    } else {
        (
            BoxMakeWriter::new(std::io::stdout),
            std::io::stdout().is_terminal(),
        )
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(writer)
        // A closed stdout (`bff | head`) must not turn every log line into a panic on stderr.
        .log_internal_errors(false);
    match format {
        LogFormat::Pretty => builder.with_ansi(terminal).init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .init(),
    }
}

/// The config file with the command line's overrides, validated, and set to the values that
/// apply. A problem with a value a flag gave names the flag.
fn load(cli: &Cli) -> Result<Config, ConfigError> {
    let cli = &cli.settings;
    let (mut config, origin) = Config::load(cli.config.as_deref())?;
    // The keys the command line set, and the flag that set each.
    let mut flags = Vec::new();
    if let Some(listen) = cli.listen {
        config.server.listen = listen;
        flags.push(("server.listen", "--listen"));
    }
    if let Some(url) = &cli.engine_url {
        config.engine.url = url.clone();
        flags.push(("engine.url", "--engine-url"));
    }
    if let Some(url) = &cli.redis_url {
        config.redis.url = bff::config::RedisUrl::new(url.clone());
        flags.push(("redis.url", "--redis-url"));
    }
    if let Some(url) = &cli.cluster {
        config.cluster.url = bff::config::RedisUrl::new(url.clone());
        flags.push(("cluster.url", "--cluster"));
    }
    if let Some(path) = &cli.auth_secret_file {
        config.auth.secret_file = Some(path.clone());
        flags.push(("auth.secret_file", "--auth-secret-file"));
    }
    let origin = if flags.is_empty() {
        origin
    } else {
        let names: Vec<&str> = flags.iter().map(|(_, flag)| *flag).collect();
        format!("{origin} with {}", names.join(", "))
    };
    config
        .read_secret_file(&origin)
        .and_then(|()| config.validate(&origin))
        .map_err(|err| name_flags(err, &flags))?;
    for note in config.normalise() {
        warn!("{note}");
    }
    info!(config = %origin, "Config loaded");
    Ok(config)
}

/// `err` with each problem about a key the command line set naming the flag that set it.
fn name_flags(err: ConfigError, flags: &[(&str, &str)]) -> ConfigError {
    let ConfigError::Invalid { origin, problems } = err else {
        return err;
    };
    let problems = problems
        .into_iter()
        .map(|problem| {
            for (key, flag) in flags {
                if let Some(rest) = problem.strip_prefix(&format!("{key}:")) {
                    return format!("{key} (from {flag}):{rest}");
                }
            }
            problem
        })
        .collect();
    ConfigError::Invalid { origin, problems }
}

/// `bff token`: prints a token signed with the secret in `secret_file`, which it creates (32
/// random bytes, hex, readable by its owner only) when it does not exist.
fn token(
    secret_file: &std::path::Path,
    sub: &str,
    role: Option<&str>,
    actions: &[String],
    ttl_s: i64,
) -> anyhow::Result<()> {
    if !secret_file.exists() {
        let mut bytes = [0u8; 32];
        std::io::Read::read_exact(&mut std::fs::File::open("/dev/urandom")?, &mut bytes)
            .context("reading /dev/urandom for a new secret")?;
        let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        use std::os::unix::fs::OpenOptionsExt;
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(secret_file)
            .with_context(|| format!("cannot create {}", secret_file.display()))?;
        std::io::Write::write_all(&mut file, format!("{hex}\n").as_bytes())?;
        eprintln!(
            "bff: created {} with a new random secret; start the daemon with \
             --auth-secret-file {0} (or auth.secret_file) to accept this token",
            secret_file.display()
        );
    }
    let secret = std::fs::read_to_string(secret_file)
        .with_context(|| format!("cannot read {}", secret_file.display()))?;
    let secret = secret.trim();
    if secret.len() < 32 {
        anyhow::bail!(
            "{} holds {} bytes; a secret needs at least 32",
            secret_file.display(),
            secret.len()
        );
    }
    for action in actions {
        if bff::engine::action::Action::parse(action).is_none() {
            anyhow::bail!(
                "--actions: {action:?} is not an action; use halt, resume, rebalance, export-logs"
            );
        }
    }
    println!(
        "{}",
        bff::edge::auth::mint(secret, sub, ttl_s, role, actions)
    );
    Ok(())
}

/// A duration for `--ttl`: a number with `s`, `m`, `h` or `d`, in seconds.
fn parse_ttl(text: &str) -> Result<i64, String> {
    let (number, unit) = text.split_at(text.len().saturating_sub(1));
    let scale = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err("write a number and a unit: 90s, 30m, 1h, 7d".into()),
    };
    match number.parse::<i64>() {
        Ok(n) if n > 0 => Ok(n * scale),
        _ => Err("write a number and a unit: 90s, 30m, 1h, 7d".into()),
    }
}

/// `bff demo-engine`: the simulator alone, until SIGINT or SIGTERM; with `--redis-url`, it
/// publishes its events there.
#[tokio::main]
async fn demo_engine(addr: SocketAddr, redis: Option<&str>) -> anyhow::Result<()> {
    let shutdown = CancellationToken::new();
    let bound = bff::demo::start(addr, redis, shutdown.clone())
        .await
        .with_context(|| format!("cannot serve the demo engine on {addr}"))?;
    info!(addr = %bound, "Demo engine simulator running");
    if let Some(url) = redis {
        log_demo_publishing(&bff::config::RedisUrl::new(url));
    }
    bff::shutdown_signal().await;
    shutdown.cancel();
    Ok(())
}

#[tokio::main]
async fn daemon(cli: Cli, config: Config) -> anyhow::Result<()> {
    let shutdown = CancellationToken::new();
    let demo = if cli.demo {
        // Only a Redis named on the command line gets the simulator's events: a redis.url in the
        // config file may be a real engine's.
        let publish_to = cli.settings.redis_url.as_ref().map(|_| &config.redis.url);
        let addr = bff::demo::start(
            ([127, 0, 0, 1], 0).into(),
            publish_to.map(|url| url.expose()),
            shutdown.clone(),
        )
        .await
        .context("starting the demo engine")?;
        info!(%addr, "Demo engine simulator running");
        match publish_to {
            Some(url) => log_demo_publishing(url),
            None if config.redis.enabled() => info!(
                "The demo engine publishes nothing to redis.url from the config file; \
                 give --redis-url for it to publish its events"
            ),
            None => {}
        }
        if config.auth.secret.expose().is_empty() && !config.commands.allow_without_auth {
            info!(
                "Commands (HALT, RESUME) need a token. To try them: \
                 `bff token --secret-file demo.secret --sub me --role operator --ttl 1h` prints one \
                 (and creates demo.secret); restart with `--demo --auth-secret-file demo.secret` \
                 and open http://{}/?token=<the token>",
                config.server.listen
            );
        }
        Some(addr)
    } else {
        None
    };
    let config = with_demo_engine(config, demo);
    let listen = config.server.listen;
    bff::os::raise_file_limit(config.server.max_connections);
    let listener = bff::os::listen(listen).map_err(|err| {
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

/// The line that says where the demo engine publishes, and what.
fn log_demo_publishing(url: &bff::config::RedisUrl) {
    info!(
        redis = %url.masked(),
        "Demo engine publishing to Redis: market.tick.SPY {} times a second; physics.forces, \
         strategy.signals, forecast.signals, agent.updates, risk.state, trade.results every \
         second; system_events on HALT and RESUME",
        bff::demo::TICKS_PER_STEP
    );
}

/// `config` with its engine settings pointed at the demo simulator on `demo`, when there is one.
fn with_demo_engine(mut config: Config, demo: Option<SocketAddr>) -> Config {
    if let Some(addr) = demo {
        let defaults = Config::default().engine;
        config.engine.url = format!("http://{addr}");
        (
            config.engine.state,
            config.engine.agents,
            config.engine.models,
        ) = (defaults.state, defaults.agents, defaults.models);
    }
    config
}

/// On every SIGHUP, reads the config file again (with the same command-line overrides) and hands
/// it to the running daemon; a file with problems is reported and the running config stays.
async fn reload_on_hangup(
    mut hangups: Signal,
    cli: Cli,
    demo: Option<SocketAddr>,
    settings: watch::Sender<Arc<Config>>,
) {
    while hangups.recv().await.is_some() {
        let config = match load(&cli) {
            Ok(config) => with_demo_engine(config, demo),
            Err(err) => {
                let err = err
                    .to_string()
                    .lines()
                    .map(str::trim)
                    .collect::<Vec<_>>()
                    .join(" ");
                error!("Config not reloaded; the running config stays. {err}");
                continue;
            }
        };
        for key in settings.borrow().restart_needed(&config) {
            warn!(key, "Changed in the file, but applies only after a restart");
        }
        settings.send_replace(Arc::new(config));
        info!("Config reloaded");
    }
}
