//! `[[oidc]]` providers and `[ldap]`: single sign-on (see `crate::sso`).

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::PathBuf;

use super::{ConfigError, Secret, err};

/// One OpenID Connect provider.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct OidcEntry {
    /// In URLs and records: 1-32 of lowercase letters, digits, '-', '_'.
    pub name: String,
    /// On the sign-in button ("Sign in with …"); defaults to `name`.
    pub display_name: Option<String>,
    /// The issuer URL; discovery reads `<issuer>/.well-known/openid-configuration`.
    pub issuer: String,
    pub client_id: String,
    pub client_secret: Option<Secret>,
    /// A file holding the client secret, read at start-up.
    pub client_secret_file: Option<PathBuf>,
    /// Scopes asked for besides `openid`.
    pub scopes: Vec<String>,
    /// Create an account on first sign-in (restricted by
    /// `allowed_domains` or `required_groups` when set).
    pub auto_create: bool,
    /// Verified e-mail domains whose users may get an account created.
    pub allowed_domains: Vec<String>,
    /// The claim that lists the user's groups (ID token or userinfo).
    pub groups_claim: String,
    /// When set, only members of one of these groups may sign in.
    pub required_groups: Vec<String>,
    /// Members of one of these groups are administrators (checked at every
    /// sign-in: leaving the group demotes, unless they are the last admin).
    pub admin_groups: Vec<String>,
    /// Provider group (a value of `groups_claim`) → confab group name: at
    /// every sign-in the user is put in the confab groups their provider
    /// groups map to and taken out of the other mapped ones.
    pub group_map: BTreeMap<String, String>,
    /// The claim a new account's username comes from.
    pub username_claim: String,
}

impl Default for OidcEntry {
    fn default() -> Self {
        OidcEntry {
            name: String::new(),
            display_name: None,
            issuer: String::new(),
            client_id: String::new(),
            client_secret: None,
            client_secret_file: None,
            scopes: vec!["email".into(), "profile".into()],
            auto_create: false,
            allowed_domains: Vec::new(),
            groups_claim: "groups".into(),
            required_groups: Vec::new(),
            admin_groups: Vec::new(),
            group_map: BTreeMap::new(),
            username_claim: "preferred_username".into(),
        }
    }
}

/// An LDAP directory to check passwords against.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct LdapConfig {
    /// `ldap://host:389` or `ldaps://host:636`.
    pub url: String,
    /// Upgrade `ldap://` with StartTLS.
    pub starttls: bool,
    /// The service account that searches for users (leave unset to use
    /// `user_dn_template` instead).
    pub bind_dn: Option<String>,
    pub bind_password: Option<Secret>,
    pub bind_password_file: Option<PathBuf>,
    /// Where users are searched, and how (`{username}` is replaced, escaped).
    pub user_base: String,
    pub user_filter: String,
    /// Without a service account: the user's DN, e.g.
    /// `uid={username},ou=people,dc=example,dc=org`.
    pub user_dn_template: Option<String>,
    /// Where groups are searched, and how (`{dn}` is the user's DN).
    pub group_base: Option<String>,
    pub group_filter: String,
    /// The group attribute matched against `admin_groups`/`required_groups`
    /// (besides the group's DN).
    pub group_name_attribute: String,
    pub email_attribute: String,
    pub required_groups: Vec<String>,
    pub admin_groups: Vec<String>,
    /// Directory group (its DN or `group_name_attribute`) → confab group
    /// name, refreshed at every sign-in as for `[[oidc]] group_map`.
    pub group_map: BTreeMap<String, String>,
    /// Create an account on a directory user's first sign-in.
    pub auto_create: bool,
    pub timeout_secs: u64,
}

impl Default for LdapConfig {
    fn default() -> Self {
        LdapConfig {
            url: String::new(),
            starttls: false,
            bind_dn: None,
            bind_password: None,
            bind_password_file: None,
            user_base: String::new(),
            user_filter: "(uid={username})".into(),
            user_dn_template: None,
            group_base: None,
            group_filter: "(|(member={dn})(uniqueMember={dn}))".into(),
            group_name_attribute: "cn".into(),
            email_attribute: "mail".into(),
            required_groups: Vec::new(),
            admin_groups: Vec::new(),
            group_map: BTreeMap::new(),
            auto_create: true,
            timeout_secs: 10,
        }
    }
}

fn read_secret(what: &str, path: &PathBuf) -> Result<Secret, ConfigError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| err(format!("cannot read {what} {}: {e}", path.display())))?;
    let s = text.trim();
    if s.is_empty() {
        return Err(err(format!("{what} {} is empty", path.display())));
    }
    Ok(Secret(s.to_string()))
}

fn valid_name(n: &str) -> bool {
    (1..=32).contains(&n.len())
        && n.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

/// Reads the `*_file` secrets (at load, like providers' key files).
pub fn load_sso_secrets(
    oidc: &mut [OidcEntry],
    ldap: Option<&mut LdapConfig>,
) -> Result<(), ConfigError> {
    for (i, o) in oidc.iter_mut().enumerate() {
        if let Some(p) = &o.client_secret_file {
            if o.client_secret.is_some() {
                return Err(err(format!(
                    "oidc[{i}] sets both client_secret and client_secret_file; keep one"
                )));
            }
            o.client_secret = Some(read_secret(&format!("oidc[{i}].client_secret_file"), p)?);
        }
    }
    if let Some(l) = ldap
        && let Some(p) = &l.bind_password_file
    {
        if l.bind_password.is_some() {
            return Err(err(
                "ldap sets both bind_password and bind_password_file; keep one",
            ));
        }
        l.bind_password = Some(read_secret("ldap.bind_password_file", p)?);
    }
    Ok(())
}

/// Checks `[[oidc]]` and `[ldap]`; each message names the setting.
pub fn validate_sso(oidc: &[OidcEntry], ldap: Option<&LdapConfig>) -> Result<(), ConfigError> {
    let mut names = std::collections::HashSet::new();
    for (i, o) in oidc.iter().enumerate() {
        if !valid_name(&o.name) {
            return Err(err(format!(
                "oidc[{i}].name must be 1-32 of lowercase letters, digits, '-' and '_', got {:?}",
                o.name
            )));
        }
        if !names.insert(o.name.as_str()) {
            return Err(err(format!(
                "oidc[{i}].name {:?} is used twice; each provider needs its own name",
                o.name
            )));
        }
        if super::parse_origin(&o.issuer).is_none() {
            return Err(err(format!(
                "oidc[{i}].issuer (provider {:?}) must be an http(s) URL like https://id.example.com/realms/main, got {:?}",
                o.name, o.issuer
            )));
        }
        if o.client_id.trim().is_empty() {
            return Err(err(format!(
                "oidc[{i}].client_id (provider {:?}) must be set",
                o.name
            )));
        }
        if o.groups_claim.trim().is_empty() || o.username_claim.trim().is_empty() {
            return Err(err(format!(
                "oidc[{i}].groups_claim and username_claim (provider {:?}) must not be empty",
                o.name
            )));
        }
    }
    let maps = oidc
        .iter()
        .enumerate()
        .map(|(i, o)| (format!("oidc[{i}].group_map"), &o.group_map))
        .chain(ldap.map(|l| ("ldap.group_map".to_string(), &l.group_map)));
    for (what, map) in maps {
        for (from, to) in map {
            if from.trim().is_empty() || to.trim().is_empty() {
                return Err(err(format!(
                    "{what} maps {from:?} to {to:?}: neither side may be empty (the right side is a confab group name)"
                )));
            }
        }
    }
    if let Some(l) = ldap {
        if !(l.url.starts_with("ldap://") || l.url.starts_with("ldaps://")) {
            return Err(err(format!(
                "ldap.url must start with ldap:// or ldaps://, got {:?}",
                l.url
            )));
        }
        match (&l.bind_dn, &l.user_dn_template) {
            (Some(_), _) if l.user_base.trim().is_empty() => {
                return Err(err(
                    "ldap.user_base must be set when ldap.bind_dn is (users are searched there)",
                ));
            }
            (None, None) => {
                return Err(err(
                    "ldap needs either bind_dn (and bind_password) to search for users, or user_dn_template",
                ));
            }
            (None, Some(t)) if !t.contains("{username}") => {
                return Err(err("ldap.user_dn_template must contain {username}"));
            }
            _ => {}
        }
        if !l.user_filter.contains("{username}") {
            return Err(err("ldap.user_filter must contain {username}"));
        }
        if !(1..=120).contains(&l.timeout_secs) {
            return Err(err("ldap.timeout_secs must be between 1 and 120"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::{Config, Overrides};

    fn load(file: &str, env: &[(&str, &str)], flags: Overrides) -> Result<Config, String> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(&path, file).unwrap();
        let secret = dir.path().join("oidc.secret");
        std::fs::write(&secret, "from-a-file\n").unwrap();
        let file = file.replace("SECRET_FILE", &secret.display().to_string());
        std::fs::write(&path, file).unwrap();
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect();
        Config::load_from(Some(path.as_path()), &env, &flags)
            .map(|(c, _)| c)
            .map_err(|e| e.0)
    }

    const OIDC: &str = "[[oidc]]\nname = \"corp\"\nissuer = \"https://id.example.com/realms/main\"\nclient_id = \"confab\"\nclient_secret_file = \"SECRET_FILE\"\n";

    #[test]
    fn providers_and_directory_parse_with_secret_files() {
        let ldap =
            "[ldap]\nurl = \"ldap://127.0.0.1:389\"\nuser_dn_template = \"uid={username},dc=x\"\n";
        let c = load(&format!("{OIDC}\n{ldap}"), &[], Overrides::default()).unwrap();
        assert_eq!(
            c.oidc[0].client_secret.as_ref().unwrap().expose(),
            "from-a-file"
        );
        assert_eq!(c.oidc[0].scopes, ["email", "profile"]);
        assert_eq!(format!("{:?}", c.oidc[0].client_secret), "Some(\"***\")");
        assert!(c.ldap.unwrap().auto_create);
        assert!(c.auth.local_passwords);
    }

    #[test]
    fn bad_settings_name_the_setting() {
        let cases = [
            (OIDC.replace("corp", "Corp!"), "oidc[0].name"),
            (format!("{OIDC}{OIDC}"), "used twice"),
            (
                OIDC.replace("https://id.example.com/realms/main", "id.example.com"),
                "oidc[0].issuer",
            ),
            (
                OIDC.replace("client_id = \"confab\"", "client_id = \" \""),
                "client_id",
            ),
            (
                format!("{OIDC}client_secret = \"x\"\n"),
                "both client_secret and client_secret_file",
            ),
            (
                "[ldap]\nurl = \"http://x\"\nuser_dn_template = \"uid={username}\"\n".into(),
                "ldap.url",
            ),
            ("[ldap]\nurl = \"ldap://x\"\n".into(), "bind_dn"),
            (
                "[ldap]\nurl = \"ldap://x\"\nbind_dn = \"cn=a\"\n".into(),
                "user_base",
            ),
            (
                "[ldap]\nurl = \"ldap://x\"\nuser_dn_template = \"uid=a\"\n".into(),
                "{username}",
            ),
        ];
        for (file, want) in cases {
            let e = load(&file, &[], Overrides::default()).unwrap_err();
            assert!(e.contains(want), "{file}: {e}");
        }
    }

    #[test]
    fn local_passwords_off_and_the_break_glass_overrides() {
        let file = "[auth]\nlocal_passwords = false\n";
        assert!(
            !load(file, &[], Overrides::default())
                .unwrap()
                .auth
                .local_passwords
        );
        let env = [("CONFAB_AUTH_LOCAL_PASSWORDS", "true")];
        assert!(
            load(file, &env, Overrides::default())
                .unwrap()
                .auth
                .local_passwords
        );
        let flag = Overrides {
            local_passwords: Some(true),
            ..Overrides::default()
        };
        assert!(load(file, &[], flag).unwrap().auth.local_passwords);
    }
}
