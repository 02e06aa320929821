//! `bff token`: mints a token signed with the secret in a file, creating the file with a new
//! random secret the first time.

use std::path::{Path, PathBuf};

use anyhow::Context as _;

use crate::edge::admission::auth;
use crate::engine::action::Action;

/// What `bff token` takes.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// The secret's file, the same the daemon reads (auth.secret_file, --auth-secret-file,
    /// which is accepted here too)
    #[arg(long, visible_alias = "auth-secret-file", value_name = "PATH")]
    pub secret_file: PathBuf,
    /// Who the token is for (required, and one per person or script): the command rate,
    /// repeats and the log go by it, so tokens sharing one would share them
    #[arg(long)]
    pub sub: String,
    /// `operator` may send every action; the only role there is, so any other is refused
    /// rather than minting a token that only watches
    #[arg(long, value_parser = [auth::OPERATOR])]
    pub role: Option<String>,
    /// Actions it may send (halt, resume, rebalance, export-logs), comma-separated
    #[arg(long, value_delimiter = ',')]
    pub actions: Vec<String>,
    /// How long it is valid: 90s, 30m, 1h, 7d
    #[arg(long, default_value = "1h", value_parser = parse_ttl)]
    pub ttl: i64,
}

/// Prints a token signed with the secret in `args.secret_file`, which it creates (32 random
/// bytes, hex, readable by its owner only) when it does not exist.
pub fn run(args: &Args) -> anyhow::Result<()> {
    let secret_file = &args.secret_file;
    if !secret_file.exists() {
        create_secret(secret_file)?;
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
    for action in &args.actions {
        if Action::parse(action).is_none() {
            anyhow::bail!(
                "--actions: {action:?} is not an action; use halt, resume, rebalance, export-logs"
            );
        }
    }
    let role = args.role.as_deref();
    println!(
        "{}",
        auth::mint(secret, &args.sub, args.ttl, role, &args.actions)
    );
    Ok(())
}

/// Writes 32 random bytes, hex, to a new file at `path` that only its owner may read; an
/// existing file is never overwritten.
fn create_secret(path: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut bytes = [0u8; 32];
    std::io::Read::read_exact(&mut std::fs::File::open("/dev/urandom")?, &mut bytes)
        .context("reading /dev/urandom for a new secret")?;
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    std::io::Write::write_all(&mut file, format!("{hex}\n").as_bytes())?;
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
