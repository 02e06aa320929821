//! `bff check-config`: the effective config, as TOML on standard output so it can be saved and
//! read back, or the problems that stop it.

use crate::config::ConfigError;

use super::{Settings, reload};

/// Prints the config `settings` give (the file with the flags over it), validated and
/// normalised exactly as the daemon would start with it.
pub fn run(settings: &Settings) -> Result<(), ConfigError> {
    let config = reload::load(settings)?;
    print!("{}", config.to_toml());
    Ok(())
}
