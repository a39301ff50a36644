//! What the TLS side reports: `GET /api/admin/tls`, the certificate part
//! of `/health/deep` and the problems an operator should know about.

use serde::Serialize;
use utoipa::ToSchema;

use super::certs::{CertInfo, CertSource};
use crate::config::TlsMode;

/// A problem the operator should know about.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct TlsProblem {
    /// RFC 3339.
    pub at: String,
    pub message: String,
    /// What to do about it.
    pub hint: Option<String>,
    /// When confab tries again (RFC 3339), for ACME.
    pub retry_at: Option<String>,
}

/// `GET /api/admin/tls`.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct TlsStatus {
    pub mode: TlsMode,
    /// ACME: the names the certificate is for.
    pub domains: Vec<String>,
    pub acme_directory: Option<String>,
    /// The certificate being served.
    pub certificate: Option<CertInfo>,
    /// An ACME order is in progress.
    pub issuing: bool,
    /// The challenge type that got the current certificate.
    pub challenge: Option<String>,
    /// When the certificate will be renewed (RFC 3339).
    pub renew_at: Option<String>,
    /// The last time a certificate was obtained or reloaded (RFC 3339).
    pub last_renewal_at: Option<String>,
    /// Failed attempts since the last success.
    pub consecutive_failures: u32,
    /// The latest failure since the last success.
    pub last_error: Option<TlsProblem>,
}

impl TlsStatus {
    pub fn off() -> TlsStatus {
        TlsStatus {
            mode: TlsMode::Off,
            domains: Vec::new(),
            acme_directory: None,
            certificate: None,
            issuing: false,
            challenge: None,
            renew_at: None,
            last_renewal_at: None,
            consecutive_failures: 0,
            last_error: None,
        }
    }
}

/// The certificate part of `/health/deep`.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct TlsHealth {
    pub mode: TlsMode,
    pub source: Option<CertSource>,
    /// RFC 3339.
    pub not_after: Option<String>,
    pub days_left: Option<i64>,
    pub issuing: bool,
    /// The last renewal or reload error since the last success.
    pub last_error: Option<String>,
}
