//! `[http]`: connection deadlines and caps.

use serde::{Deserialize, Serialize};

use super::{ConfigError, err};

/// `[http]`: how long a client may take to send a request, how long an
/// unused connection stays open, and how many connections may be open.
/// Responses are never timed: answers stream for as long as they run, and
/// open answer streams (SSE) and WebSockets are not idle connections.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpConfig {
    /// A new connection must deliver its first complete request head within
    /// this time (covers slow headers and connections that send nothing).
    pub header_timeout_secs: u64,
    /// Longest silence between two chunks of a request body.
    pub body_timeout_secs: u64,
    /// After the first `body_timeout_secs`, a request body must keep
    /// arriving at this average rate (bytes per second); 0 = no minimum.
    pub body_min_bytes_per_sec: u64,
    /// A connection with no request in progress is closed after this long.
    pub keep_alive_secs: u64,
    /// HTTPS: time allowed for the TLS handshake.
    pub tls_handshake_timeout_secs: u64,
    /// Connections open at once; more are closed as soon as accepted.
    pub max_connections: usize,
    /// Connections open at once from one client address (addresses in
    /// `trusted_proxies` count only towards `max_connections`).
    pub max_connections_per_ip: usize,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            header_timeout_secs: 10,
            body_timeout_secs: 30,
            body_min_bytes_per_sec: 1024,
            keep_alive_secs: 60,
            tls_handshake_timeout_secs: 10,
            max_connections: 10_000,
            max_connections_per_ip: 256,
        }
    }
}

impl HttpConfig {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        for (name, v, max) in [
            ("header_timeout_secs", self.header_timeout_secs, 300),
            ("body_timeout_secs", self.body_timeout_secs, 3600),
            ("keep_alive_secs", self.keep_alive_secs, 3600),
            (
                "tls_handshake_timeout_secs",
                self.tls_handshake_timeout_secs,
                300,
            ),
        ] {
            if v == 0 || v > max {
                return Err(err(format!(
                    "http.{name} must be between 1 and {max} seconds, got {v}"
                )));
            }
        }
        if self.body_min_bytes_per_sec > 1 << 30 {
            return Err(err(format!(
                "http.body_min_bytes_per_sec must be between 0 (no minimum) and 1073741824, got {}",
                self.body_min_bytes_per_sec
            )));
        }
        if self.max_connections == 0 || self.max_connections > 1_000_000 {
            return Err(err(format!(
                "http.max_connections must be between 1 and 1000000, got {}",
                self.max_connections
            )));
        }
        if self.max_connections_per_ip == 0 || self.max_connections_per_ip > self.max_connections {
            return Err(err(format!(
                "http.max_connections_per_ip must be between 1 and http.max_connections ({}), got {}",
                self.max_connections, self.max_connections_per_ip
            )));
        }
        Ok(())
    }
}
