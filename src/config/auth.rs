//! `[auth]`: sessions, tokens and sign-in throttling.

use serde::{Deserialize, Serialize};

use super::Secret;

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    pub session_idle_hours: u64,
    pub session_absolute_hours: u64,
    pub access_token_minutes: u64,
    pub refresh_token_days: u64,
    /// Failed login/token/register/refresh/setup attempts per client IP:
    /// a burst of `login_burst`, refilling at this rate. Successes are free.
    pub login_per_ip_per_minute: u32,
    pub login_burst: u32,
    /// Failed sign-ins per account per hour from sources that are not a
    /// known device of the account (all of them together), before such
    /// sources are refused; known devices keep signing in.
    pub login_failures_per_account_per_hour: u32,
    /// Failed sign-ins per account per hour from one client address.
    pub login_failures_per_source_per_hour: u32,
    /// Failed sign-ins per hour from one known device (a device cookie),
    /// and wrong current passwords per user per hour on password change.
    pub login_failures_per_device_per_hour: u32,
    /// The first delay of the answer to a failed sign-in from an unknown
    /// source, once that address has failed 3 times on the account; it
    /// doubles with each further failure (at most 30 s). 0 turns it off.
    pub login_failure_delay_ms: u64,
    /// Wrong second-factor codes (TOTP or recovery) per account per hour
    /// before the second sign-in step is locked for the rest of the hour.
    pub two_factor_failures_per_hour: u32,
    /// How long a device cookie keeps a browser a known device.
    pub device_cookie_days: u64,
    /// Overrides the generated JWT signing key (useful when several
    /// instances must accept each other's tokens).
    pub jwt_secret: Option<Secret>,
    /// Whether accounts may sign in and register with a confab password.
    /// Off (single sign-on only), the password form is refused except for
    /// `confab user` commands on the server (the break-glass path).
    pub local_passwords: bool,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            session_idle_hours: 24 * 7,
            session_absolute_hours: 24 * 30,
            access_token_minutes: 15,
            refresh_token_days: 30,
            login_per_ip_per_minute: 10,
            login_burst: 5,
            login_failures_per_account_per_hour: 100,
            login_failures_per_source_per_hour: 10,
            login_failures_per_device_per_hour: 10,
            login_failure_delay_ms: 500,
            two_factor_failures_per_hour: 10,
            device_cookie_days: 365,
            jwt_secret: None,
            local_passwords: true,
        }
    }
}
