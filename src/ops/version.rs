//! What `confab version` prints: facts recorded by `build.rs`.

pub const VERSION: &str = env!("CARGO_PKG_VERSION");
/// Short git commit the binary was built from, or "unknown".
pub const GIT_COMMIT: &str = env!("CONFAB_GIT_COMMIT");
/// RFC 3339 UTC (SOURCE_DATE_EPOCH when set, for reproducible builds).
pub const BUILD_DATE: &str = env!("CONFAB_BUILD_DATE");
/// The target triple, e.g. `x86_64-unknown-linux-gnu`.
pub const TARGET: &str = env!("CONFAB_TARGET");
/// Cargo profile family: `debug` or `release`.
pub const PROFILE: &str = env!("CONFAB_PROFILE");
/// `static` when built with `+crt-static` (no shared libraries at all).
pub const LINKAGE: &str = env!("CONFAB_LINKAGE");
/// Enabled cargo features, comma-separated (empty when none).
pub const FEATURES: &str = env!("CONFAB_FEATURES");

/// The multi-line text of `confab version`.
pub fn long() -> String {
    let features = if FEATURES.is_empty() {
        "none (default build)"
    } else {
        FEATURES
    };
    format!(
        "confab {VERSION}\n\
         commit:   {GIT_COMMIT}\n\
         built:    {BUILD_DATE}\n\
         target:   {TARGET} ({LINKAGE}, {PROFILE})\n\
         features: {features}\n\
         schema:   {}\n",
        crate::store::SCHEMA_VERSION
    )
}

/// The same facts as JSON, for scripts (`confab version --json`).
pub fn json() -> serde_json::Value {
    serde_json::json!({
        "version": VERSION,
        "commit": GIT_COMMIT,
        "build_date": BUILD_DATE,
        "target": TARGET,
        "linkage": LINKAGE,
        "profile": PROFILE,
        "features": FEATURES.split(',').filter(|f| !f.is_empty()).collect::<Vec<_>>(),
        "schema_version": crate::store::SCHEMA_VERSION,
    })
}
