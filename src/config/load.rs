//! Reading a config: from a file (or the defaults), from TOML text, and the secret files it
//! names; [`ConfigError`] says what is wrong, where, and what to do.

use std::path::{Path, PathBuf};

use super::{Config, DEFAULT_PATH, Secret, keys, mask_config_message, mask_credentials};

/// Why a configuration could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why it could not be read.
        source: std::io::Error,
    },
    #[error(
        "{} has {} problem(s):\n{}\nfix these keys and run `bff check-config` again",
        .origin, .problems.len(), .problems.iter().map(|p| format!("  - {}", mask_credentials(p))).collect::<Vec<_>>().join("\n")
    )]
    /// The file is not TOML of the config's shape (every unknown key, every value of the
    /// wrong kind), or values are wrong.
    Invalid {
        /// Where the config came from (a path, or the built-in defaults), and the flags over it.
        origin: String,
        /// Every problem, each starting with its key path (or, for a TOML syntax error, its
        /// line).
        problems: Vec<String>,
    },
}

impl Config {
    /// Reads `path`, or `./bff.toml` when none is given and it exists, or else the defaults.
    /// Returns the config and where it came from, for the start-up log.
    pub fn load(path: Option<&Path>) -> Result<(Self, String), ConfigError> {
        let path = match path {
            Some(p) => p.to_path_buf(),
            None if Path::new(DEFAULT_PATH).exists() => PathBuf::from(DEFAULT_PATH),
            None => return Ok((Self::default(), "built-in defaults".into())),
        };
        let text = std::fs::read_to_string(&path).map_err(|source| ConfigError::Read {
            path: path.clone(),
            source,
        })?;
        let config = Self::parse(&text).map_err(|problems| ConfigError::Invalid {
            origin: path.display().to_string(),
            problems,
        })?;
        Ok((config, path.display().to_string()))
    }

    /// Reads `auth.secret_file`, when one is named, into `auth.secret`, and
    /// `auth.previous_secret_file` into `auth.previous_secret`, and `cluster.secret_file` into the
    /// cluster's secret. `origin` is where the config came from, for the message when one cannot
    /// be used: every such problem at once, each naming its key.
    pub fn read_secret_file(&mut self, origin: &str) -> Result<(), ConfigError> {
        let mut problems = Vec::new();
        if let Err(problem) = self.cluster.read_secret_file() {
            problems.push(problem);
        }
        let read = |key: &str, path: &PathBuf, what: &str| {
            std::fs::read_to_string(path)
                .map(|text| Secret::new(text.trim()))
                .map_err(|err| {
                    format!(
                        "{key}: cannot read {}: {err}; name a readable file holding {what}",
                        path.display()
                    )
                })
        };
        if let Some(path) = &self.auth.previous_secret_file {
            match read("auth.previous_secret_file", path, "the old secret") {
                Ok(secret) => self.auth.previous_secret = secret,
                Err(problem) => problems.push(problem),
            }
        }
        if let Some(path) = &self.auth.secret_file {
            if !self.auth.secret.expose().is_empty() {
                problems.push(
                    "auth.secret_file: auth.secret is set too; keep one of the two".to_owned(),
                );
            } else {
                let what = format!(
                    "the secret (`bff token --secret-file {} --sub NAME` creates one)",
                    path.display()
                );
                match read("auth.secret_file", path, &what) {
                    Ok(secret) => self.auth.secret = secret,
                    Err(problem) => problems.push(problem),
                }
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(ConfigError::Invalid {
                origin: origin.to_owned(),
                problems,
            })
        }
    }

    /// Parses TOML text. The problems: a syntax error with its line, or else every unknown key
    /// (with the nearest known one) and every value of the wrong kind (with what to write),
    /// each with its key path and line; the values of secret-bearing keys and URL passwords
    /// masked (they go to logs on a reload).
    pub fn parse(text: &str) -> Result<Self, Vec<String>> {
        let masked =
            |e: toml::de::Error| vec![mask_config_message(text, &Self::parse_error(text, &e))];
        let doc: toml::Table = toml::from_str(text).map_err(masked)?;
        let problems = keys::problems(text, &doc);
        if !problems.is_empty() {
            return Err(problems);
        }
        // The backstop: `deny_unknown_fields` and every type, read from the text for its lines.
        toml::from_str(text).map_err(masked)
    }

    /// The parse error on one line, so it reads as well in a log (a reload) as on a terminal.
    fn parse_error(text: &str, e: &toml::de::Error) -> String {
        let message = e.message().trim_end();
        match e.span() {
            Some(span) => {
                let line = text[..span.start].matches('\n').count() + 1;
                let source = text.lines().nth(line - 1).unwrap_or_default().trim();
                format!("line {line} `{source}`: {message}")
            }
            None => message.to_owned(),
        }
    }
}
