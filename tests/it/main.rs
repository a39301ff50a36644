//! The integration tests, one test binary: each former `tests/*.rs` crate is
//! a module here, so the library (tantivy, rustls, …) is linked once instead
//! of once per file. nextest lists a test as `<module>::<test>` in binary
//! `it` and runs each in its own process; `cargo test` runs them as threads
//! of this one process, so a test must not change process-global state
//! (environment, current directory, signal dispositions): child processes
//! get their own instead.
//!
//! Shared helpers: `common` (the in-process server and its client, the
//! `confab` binary as a child process), `common_upstream` (the fake LLM
//! upstream), `ops_support` (the operations tests' process helpers) and
//! `pebble` (the ACME CA and TLS clients).

mod common;
mod common_upstream;
mod ops_support;
mod pebble;

mod attachments;
mod binary;
mod chat;
mod chat_crash;
mod chat_params;
mod cluster;
mod export_import;
mod files;
mod groups;
mod http_surface;
mod identity;
mod imports;
mod knowledge;
mod limits;
mod metrics;
mod models_admin;
mod ops_backup;
mod ops_crash;
mod ops_packages;
mod ops_signals;
mod ops_static;
mod ops_systemd;
mod ops_upgrade;
mod own_keys;
mod postgres;
mod presets;
mod providers_admin;
mod providers_wire;
mod routing;
mod search;
mod search_crash;
mod security;
mod shares;
mod sso_ldap;
mod sso_oidc;
mod store_contract;
mod tls_acme;
mod tls_static;
mod usage;
mod v1;
mod v1_sdk;
