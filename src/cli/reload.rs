//! The config as the command line makes it: the file, the flags over it, validated and
//! normalised; at start, and again on every reload (`SIGHUP`), which hands the running daemon
//! the new config or, when the file has problems, reports them and keeps the running one.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::sync::watch;
use tracing::{error, info, warn};

use crate::config::{Config, ConfigError, RedisUrl};

use super::Settings;

/// The config file with the command line's overrides, validated, and set to the values that
/// apply. A problem with a value a flag gave names the flag.
pub fn load(settings: &Settings) -> Result<Config, ConfigError> {
    let (mut config, origin) = Config::load(settings.config.as_deref())?;
    // The keys the command line set, and the flag that set each.
    let mut flags = Vec::new();
    if let Some(listen) = settings.listen {
        config.server.listen = listen;
        flags.push(("server.listen", "--listen"));
    }
    if let Some(url) = &settings.engine_url {
        config.engine.url = url.clone();
        flags.push(("engine.url", "--engine-url"));
    }
    if let Some(url) = &settings.redis_url {
        config.redis.url = RedisUrl::new(url.clone());
        flags.push(("redis.url", "--redis-url"));
    }
    if let Some(url) = &settings.cluster {
        config.cluster.url = RedisUrl::new(url.clone());
        flags.push(("cluster.url", "--cluster"));
    }
    if let Some(path) = &settings.auth_secret_file {
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

/// Reads the config again, as [`load`] does at start, points it at the demo simulator on
/// `demo` when `--demo` started one ([`with_demo_engine`]), and sends it to the running
/// daemon through `running`. Returns the changed keys that apply only after a restart (each
/// also logged as a warning). A config with problems is logged on one line and returned as the
/// error; `running` keeps the config it had.
pub fn reload(
    settings: &Settings,
    demo: Option<SocketAddr>,
    running: &watch::Sender<Arc<Config>>,
) -> Result<Vec<&'static str>, ConfigError> {
    let config = match load(settings) {
        Ok(config) => with_demo_engine(config, demo),
        Err(err) => {
            let one_line = err
                .to_string()
                .lines()
                .map(str::trim)
                .collect::<Vec<_>>()
                .join(" ");
            error!("Config not reloaded; the running config stays. {one_line}");
            return Err(err);
        }
    };
    let restart = running.borrow().restart_needed(&config);
    for key in &restart {
        warn!(key, "Changed in the file, but applies only after a restart");
    }
    running.send_replace(Arc::new(config));
    info!("Config reloaded");
    Ok(restart)
}

/// `config` with its engine settings pointed at the demo simulator on `demo`, when there is one.
pub fn with_demo_engine(mut config: Config, demo: Option<SocketAddr>) -> Config {
    if let Some(addr) = demo {
        let defaults = Config::default().engine;
        config.engine.url = format!("http://{addr}");
        (
            config.engine.state,
            config.engine.agents,
            config.engine.models,
        ) = (defaults.state, defaults.agents, defaults.models);
        // Every --demo daemon polls the same simulated engine, whatever port its simulator
        // drew: a restarted one carries on in its cluster's epoch.
        if config.cluster.engine_id.is_empty() {
            config.cluster.engine_id = "demo".into();
        }
    }
    config
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
