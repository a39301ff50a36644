//! Loading: defaults → TOML file → `CONFAB_*` environment → flags, merged
//! into one table and deserialized once.

use std::path::{Path, PathBuf};

use super::env::{ENV_OTHER, ENV_VARS, env_value};
use super::{Config, ConfigError, SYSTEM_CONFIG_PATH, TlsFlags, err};

/// Flags given on the command line; `None` means "not given".
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    pub data_dir: Option<PathBuf>,
    pub listen: Option<String>,
    pub public_url: Option<String>,
    pub log_format: Option<String>,
    pub registration: Option<String>,
    pub metrics_listen: Option<String>,
    /// `serve --allow-local-passwords` (break glass).
    pub local_passwords: Option<bool>,
    /// `serve --domain/--tls-cert/...`.
    pub tls: TlsFlags,
}

fn set_path(table: &mut toml::Table, path: &str, value: toml::Value) {
    let mut parts: Vec<&str> = path.split('.').collect();
    let last = parts.pop().expect("non-empty path");
    let mut t = table;
    for p in parts {
        t = t
            .entry(p.to_string())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()))
            .as_table_mut()
            .expect("config sections are tables");
    }
    t.insert(last.to_string(), value);
}

/// Which file to read: the explicit one (must exist) or the system one when present.
pub fn config_path(explicit: Option<&Path>) -> Option<PathBuf> {
    if let Some(p) = explicit {
        return Some(p.to_path_buf());
    }
    if let Ok(p) = std::env::var("CONFAB_CONFIG")
        && !p.is_empty()
    {
        return Some(PathBuf::from(p));
    }
    let sys = Path::new(SYSTEM_CONFIG_PATH);
    sys.exists().then(|| sys.to_path_buf())
}

impl Config {
    /// Load with all layers from the real process environment.
    pub fn load(
        explicit: Option<&Path>,
        flags: &Overrides,
    ) -> Result<(Config, Vec<String>), ConfigError> {
        let env: Vec<(String, String)> = std::env::vars().collect();
        Self::load_from(config_path(explicit).as_deref(), &env, flags)
    }

    /// Load from a given file, environment and flags. Returns the config and
    /// warnings (unknown `CONFAB_*` variables) to log once logging is up.
    pub fn load_from(
        file: Option<&Path>,
        env: &[(String, String)],
        flags: &Overrides,
    ) -> Result<(Config, Vec<String>), ConfigError> {
        let mut table = match file {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| err(format!("cannot read config file {}: {e}", path.display())))?;
                toml::from_str::<toml::Table>(&text).map_err(|e| {
                    err(format!(
                        "config file {} is not valid TOML: {}",
                        path.display(),
                        e.message()
                    ))
                })?
            }
            None => toml::Table::new(),
        };

        let mut warnings = Vec::new();
        for (name, raw) in env {
            if !name.starts_with("CONFAB_") {
                continue;
            }
            let (lookup, from_file) = match name.strip_suffix("_FILE") {
                Some(base) if ENV_VARS.iter().any(|v| v.0 == base && v.3) => (base, true),
                _ => (name.as_str(), false),
            };
            let Some(&(_, path, kind, _)) = ENV_VARS.iter().find(|v| v.0 == lookup) else {
                if !ENV_OTHER.contains(&name.as_str()) {
                    warnings.push(format!("ignoring unknown environment variable {name}"));
                }
                continue;
            };
            let value = if from_file {
                std::fs::read_to_string(raw)
                    .map_err(|e| err(format!("cannot read {name} file {raw}: {e}")))?
                    .trim_end_matches(['\n', '\r'])
                    .to_string()
            } else {
                raw.clone()
            };
            set_path(&mut table, path, env_value(name, &value, kind)?);
        }

        let s = |v: &String| toml::Value::String(v.clone());
        if let Some(v) = &flags.data_dir {
            set_path(
                &mut table,
                "data_dir",
                toml::Value::String(v.to_string_lossy().into_owned()),
            );
        }
        if let Some(v) = &flags.listen {
            set_path(&mut table, "listen", s(v));
        }
        if let Some(v) = &flags.public_url {
            set_path(&mut table, "public_url", s(v));
        }
        if let Some(v) = &flags.log_format {
            set_path(&mut table, "log_format", s(v));
        }
        if let Some(v) = &flags.registration {
            set_path(&mut table, "registration", s(v));
        }
        if let Some(v) = &flags.metrics_listen {
            set_path(&mut table, "metrics_listen", s(v));
        }
        if let Some(v) = flags.local_passwords {
            set_path(&mut table, "auth.local_passwords", toml::Value::Boolean(v));
        }
        flags
            .tls
            .apply(&mut |path, v| set_path(&mut table, path, v));

        let cfg: Config = serde_path_to_error::deserialize(toml::Value::Table(table)).map_err(
            |e: serde_path_to_error::Error<toml::de::Error>| {
                let setting = e.path().to_string();
                let inner = e.into_inner();
                let msg = inner.message().trim().to_string();
                if let Some(rest) = msg.strip_prefix("unknown field ") {
                    err(format!("unknown setting {rest}"))
                } else if setting == "listen" {
                    err(format!(
                        "invalid value for setting `listen`: {msg}; expected an address like 127.0.0.1:8080 or 0.0.0.0:8080"
                    ))
                } else if setting == "." || setting.is_empty() {
                    err(format!("invalid configuration: {msg}"))
                } else {
                    err(format!("invalid value for setting `{setting}`: {msg}"))
                }
            },
        )?;
        let mut cfg = cfg;
        for (i, p) in cfg.providers.iter_mut().enumerate() {
            if p.api_key.is_some() && p.api_key_file.is_some() {
                return Err(err(format!(
                    "providers[{i}] (provider \"{}\") sets both api_key and api_key_file; keep one",
                    p.name
                )));
            }
            p.load_key_file(i)?;
        }
        super::sso::load_sso_secrets(&mut cfg.oidc, cfg.ldap.as_mut())?;
        if let Some(s) = &mut cfg.smtp {
            s.load_password_file()?;
        }
        cfg.validate()?;
        Ok((cfg, warnings))
    }
}
