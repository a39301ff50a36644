//! confab: a self-hosted AI chat appliance in one binary.
//!
//! The library holds everything; `main.rs` only parses the command line and
//! dispatches. Tests use [`app::serve`] with a listener bound to `127.0.0.1:0`.
#![forbid(unsafe_code)]

pub mod app;
#[cfg(test)]
mod architecture_tests;
pub mod assets;
pub mod auth;
pub mod chat;
pub mod cli;
pub mod clock;
pub mod cluster;
pub mod config;
pub mod error;
pub mod files;
pub mod groups;
pub mod http;
pub mod imaging;
pub mod keyfile;
pub mod knowledge;
pub mod limits;
pub mod logging;
pub mod mail;
pub mod model_settings;
pub mod ops;
pub mod presets;
pub mod provider_admin;
pub mod providers;
pub mod search;
pub mod server;
pub mod shares;
pub mod sso;
pub mod state;
pub mod store;
pub mod tls;
pub mod transfer;
pub mod username;
pub mod users;

pub const VERSION: &str = env!("CARGO_PKG_VERSION");
