//! Log setup: pretty on a terminal, JSON lines otherwise, always on stderr.

use std::io::IsTerminal;
use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

/// Installs the global subscriber. `CONFAB_LOG` (a tracing filter) wins over
/// the configured level, for debugging one module.
pub fn init(format: LogFormat, level: &str) {
    let filter = std::env::var("CONFAB_LOG")
        .ok()
        .and_then(|f| EnvFilter::try_new(f).ok())
        .unwrap_or_else(|| EnvFilter::new(level));
    let json = match format {
        LogFormat::Json => true,
        LogFormat::Pretty => false,
        LogFormat::Auto => !std::io::stderr().is_terminal(),
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    // try_init: tests may have installed a subscriber already.
    let _ = if json {
        builder.json().with_current_span(false).try_init()
    } else {
        builder.with_target(false).try_init()
    };
}
