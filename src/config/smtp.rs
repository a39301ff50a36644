//! `[smtp]`: the mail server confab sends password-reset and
//! address-verification messages through. Unset: no mail is sent (admins
//! still make reset links).

use serde::{Deserialize, Serialize};
use std::path::PathBuf;

use super::{ConfigError, Secret, err};

#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum SmtpSecurity {
    /// Plain connection upgraded with STARTTLS (refused if the server does
    /// not offer it). Port 587 by default.
    #[default]
    Starttls,
    /// TLS from the first byte ("SMTPS"). Port 465 by default.
    Tls,
    /// No encryption: only for a relay on the same host or network.
    /// Port 25 by default.
    None,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SmtpConfig {
    pub host: String,
    #[serde(default)]
    pub port: Option<u16>,
    #[serde(default)]
    pub security: SmtpSecurity,
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub password: Option<Secret>,
    /// A file holding the password (read at start-up).
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    /// The sender, e.g. `confab <chat@example.com>`.
    pub from: String,
}

impl SmtpConfig {
    pub fn port(&self) -> u16 {
        self.port.unwrap_or(match self.security {
            SmtpSecurity::Starttls => 587,
            SmtpSecurity::Tls => 465,
            SmtpSecurity::None => 25,
        })
    }

    /// Reads `password_file` into `password`.
    pub(super) fn load_password_file(&mut self) -> Result<(), ConfigError> {
        if self.password.is_some() && self.password_file.is_some() {
            return Err(err("smtp sets both password and password_file; keep one"));
        }
        let Some(path) = &self.password_file else {
            return Ok(());
        };
        let text = std::fs::read_to_string(path).map_err(|e| {
            err(format!(
                "cannot read smtp.password_file {}: {e}",
                path.display()
            ))
        })?;
        let text = text.trim_end_matches(['\n', '\r']);
        if text.is_empty() {
            return Err(err(format!(
                "smtp.password_file {} is empty",
                path.display()
            )));
        }
        self.password = Some(Secret(text.to_string()));
        Ok(())
    }

    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        let h = self.host.trim();
        if h.is_empty() || h.contains(char::is_whitespace) || h.contains('/') {
            return Err(err(format!(
                "smtp.host must be a host name or address like mail.example.com, got {:?}",
                self.host
            )));
        }
        if self.port == Some(0) {
            return Err(err("smtp.port must be between 1 and 65535"));
        }
        if self.from.parse::<lettre::message::Mailbox>().is_err() {
            return Err(err(format!(
                "smtp.from must be an address like chat@example.com or \"confab <chat@example.com>\", got {:?}",
                self.from
            )));
        }
        if self.password.is_some() && self.username.is_none() {
            return Err(err("smtp.password is set without smtp.username; set both"));
        }
        Ok(())
    }
}
