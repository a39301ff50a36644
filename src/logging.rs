//! Log setup: pretty on a terminal, JSON lines otherwise, always on stderr.

use std::io::IsTerminal;
use std::sync::OnceLock;
use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

type SetFilter = Box<dyn Fn(EnvFilter) -> Result<(), String> + Send + Sync>;

/// Swaps the level filter of the installed subscriber (SIGHUP reload).
static RELOAD: OnceLock<SetFilter> = OnceLock::new();

/// Installs the global subscriber. `CONFAB_LOG` (a tracing filter) wins over
/// the configured level, for debugging one module.
pub fn init(format: LogFormat, level: &str) {
    let filter = std::env::var("CONFAB_LOG")
        .ok()
        .and_then(|f| EnvFilter::try_new(f).ok())
        .unwrap_or_else(|| {
            // tantivy's INFO lines are about segment merges (and carry build
            // paths); keep them out unless asked for.
            if level.contains("tantivy") {
                EnvFilter::new(level)
            } else {
                EnvFilter::new(format!("{level},tantivy=warn"))
            }
        });
    let json = match format {
        LogFormat::Json => true,
        LogFormat::Pretty => false,
        LogFormat::Auto => !std::io::stderr().is_terminal(),
    };
    let builder = tracing_subscriber::fmt().with_writer(std::io::stderr);
    // try_init: tests may have installed a subscriber already.
    let installed = if json {
        let b = builder
            .json()
            .with_current_span(false)
            .with_env_filter(filter)
            .with_filter_reloading();
        let handle = b.reload_handle();
        b.try_init()
            .map(|_| Box::new(move |f| handle.reload(f).map_err(|e| e.to_string())) as SetFilter)
    } else {
        let b = builder
            .with_target(false)
            .with_env_filter(filter)
            .with_filter_reloading();
        let handle = b.reload_handle();
        b.try_init()
            .map(|_| Box::new(move |f| handle.reload(f).map_err(|e| e.to_string())) as SetFilter)
    };
    if let Ok(set) = installed {
        let _ = RELOAD.set(set);
    }
}

/// Applies a new `log_level` to the running process. Ignored (Ok) while
/// `CONFAB_LOG` overrides the level, as it did at start-up.
pub fn set_level(level: &str) -> Result<(), String> {
    if std::env::var("CONFAB_LOG").is_ok_and(|f| EnvFilter::try_new(f).is_ok()) {
        return Ok(());
    }
    let filter = EnvFilter::try_new(level).map_err(|e| e.to_string())?;
    match RELOAD.get() {
        Some(set) => set(filter),
        None => Ok(()),
    }
}
