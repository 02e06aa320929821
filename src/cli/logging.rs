//! Where log lines go and how they look: `RUST_LOG`'s levels, for people or for collectors.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::writer::BoxMakeWriter;

use super::LogFormat;

/// Logs at `RUST_LOG`'s levels (default `info`): the daemon to standard output, `check-config`
/// (`to_stderr`) to standard error, as its standard output is the effective config.
pub fn init(format: LogFormat, to_stderr: bool) {
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
