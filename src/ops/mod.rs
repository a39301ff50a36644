//! Operations: build and version facts, systemd readiness and watchdog,
//! live configuration reload (SIGHUP), and backup / restore of the data
//! directory. The store-level copy lives in `store::backup`; this module
//! holds the parts around it (files, HTTP, progress, swapping files).

pub mod backup;
pub mod reload;
pub mod systemd;
pub mod version;
