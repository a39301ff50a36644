//! Sign-in against an LDAP directory: find the user's entry (a search with
//! a service account, or a DN template), bind as it with the password
//! typed, read its mail and groups, then link or create the confab account
//! by the entry's DN (`super::resolve_account`). The sign-in form is the
//! one for local passwords: the directory is asked first.

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use ldap3::{Ldap, LdapConnAsync, LdapConnSettings, LdapError, Scope, SearchEntry};

use super::{AccountRules, OutsideIdentity, resolve_account};
use crate::config::LdapConfig;
use crate::store::SharedStore;
use crate::users::Actor;
use crate::users::login::{DirectoryOutcome, PasswordDirectory};

/// The provider name directory identities are linked under.
pub const PROVIDER: &str = "ldap";
/// LDAP's invalidCredentials result code.
const INVALID_CREDENTIALS: u32 = 49;

/// The configured directory.
pub struct Directory {
    cfg: LdapConfig,
}

enum Fail {
    NoSuchUser,
    WrongPassword,
    Unavailable(String),
}

impl From<LdapError> for Fail {
    fn from(e: LdapError) -> Self {
        match e {
            LdapError::LdapResult { result } if result.rc == INVALID_CREDENTIALS => {
                Fail::WrongPassword
            }
            LdapError::LdapResult { result } => Fail::Unavailable(format!(
                "the directory answered with result code {}",
                result.rc
            )),
            other => Fail::Unavailable(other.to_string()),
        }
    }
}

fn first(attrs: &HashMap<String, Vec<String>>, name: &str) -> Option<String> {
    attrs
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .and_then(|(_, v)| v.first().cloned())
}

fn all(attrs: &HashMap<String, Vec<String>>, name: &str) -> Vec<String> {
    attrs
        .iter()
        .filter(|(k, _)| k.eq_ignore_ascii_case(name))
        .flat_map(|(_, v)| v.iter().cloned())
        .collect()
}

impl Directory {
    pub fn new(cfg: LdapConfig) -> Directory {
        Directory { cfg }
    }

    /// The issuer directory identities are linked under.
    pub fn issuer(&self) -> String {
        format!("ldap:{}", self.cfg.url.trim_end_matches('/'))
    }

    fn rules(&self) -> AccountRules<'_> {
        AccountRules {
            auto_create: self.cfg.auto_create,
            allowed_domains: &[],
            required_groups: &self.cfg.required_groups,
            admin_groups: &self.cfg.admin_groups,
            group_map: &self.cfg.group_map,
            keep_username: true,
        }
    }

    async fn connect(&self) -> Result<Ldap, Fail> {
        let timeout = Duration::from_secs(self.cfg.timeout_secs);
        let settings = LdapConnSettings::new()
            .set_conn_timeout(timeout)
            .set_starttls(self.cfg.starttls);
        let (conn, mut ldap) = LdapConnAsync::with_settings(settings, &self.cfg.url).await?;
        ldap3::drive!(conn);
        ldap.with_timeout(timeout);
        Ok(ldap)
    }

    async fn service_bind(&self, ldap: &mut Ldap) -> Result<(), Fail> {
        if let Some(dn) = &self.cfg.bind_dn {
            let pw = self
                .cfg
                .bind_password
                .as_ref()
                .map(|s| s.expose())
                .unwrap_or("");
            ldap.simple_bind(dn, pw)
                .await?
                .success()
                .map_err(|e| match Fail::from(e) {
                    Fail::WrongPassword => Fail::Unavailable(
                        "the directory refused the service account (ldap.bind_dn)".into(),
                    ),
                    f => f,
                })?;
        }
        Ok(())
    }

    /// Checks `name` and `password` against the directory; the identity it
    /// proves.
    async fn verify(&self, name: &str, password: &str) -> Result<OutsideIdentity, Fail> {
        let mut ldap = self.connect().await?;
        let attrs = vec![
            self.cfg.email_attribute.as_str(),
            "memberOf",
            self.cfg.group_name_attribute.as_str(),
        ];
        let dn = if self.cfg.bind_dn.is_some() {
            self.service_bind(&mut ldap).await?;
            let filter = self
                .cfg
                .user_filter
                .replace("{username}", &ldap3::ldap_escape(name));
            let (found, _) = ldap
                .search(&self.cfg.user_base, Scope::Subtree, &filter, vec!["1.1"])
                .await?
                .success()?;
            if found.len() != 1 {
                if found.len() > 1 {
                    tracing::warn!(
                        count = found.len(),
                        "ldap.user_filter matched several entries for one username; refused"
                    );
                }
                let _ = ldap.unbind().await;
                return Err(Fail::NoSuchUser);
            }
            SearchEntry::construct(found.into_iter().next().expect("one entry")).dn
        } else {
            let t = self.cfg.user_dn_template.as_deref().unwrap_or("");
            t.replace("{username}", &ldap3::dn_escape(name))
        };
        ldap.simple_bind(&dn, password).await?.success()?;
        // The entry as the user sees it: its canonical DN and attributes.
        let (found, _) = ldap
            .search(&dn, Scope::Base, "(objectClass=*)", attrs)
            .await?
            .success()?;
        let Some(entry) = found.into_iter().next().map(SearchEntry::construct) else {
            let _ = ldap.unbind().await;
            return Err(Fail::NoSuchUser);
        };
        let mut groups = all(&entry.attrs, "memberOf");
        if let Some(base) = &self.cfg.group_base {
            self.service_bind(&mut ldap).await?;
            let filter = self
                .cfg
                .group_filter
                .replace("{dn}", &ldap3::ldap_escape(entry.dn.as_str()))
                .replace("{username}", &ldap3::ldap_escape(name));
            let (rs, _) = ldap
                .search(
                    base,
                    Scope::Subtree,
                    &filter,
                    vec![self.cfg.group_name_attribute.as_str()],
                )
                .await?
                .success()?;
            for g in rs.into_iter().map(SearchEntry::construct) {
                groups.extend(all(&g.attrs, &self.cfg.group_name_attribute));
                groups.push(g.dn);
            }
        }
        let _ = ldap.unbind().await;
        Ok(OutsideIdentity {
            provider: PROVIDER.into(),
            issuer: self.issuer(),
            subject: entry.dn.to_lowercase(),
            email: first(&entry.attrs, &self.cfg.email_attribute),
            // The directory is the organisation's own record.
            email_verified: true,
            username_hint: Some(name.to_string()),
            groups,
        })
    }
}

#[async_trait]
impl PasswordDirectory for Directory {
    async fn check(
        &self,
        store: &SharedStore,
        client: &Actor,
        name: &str,
        password: &str,
    ) -> DirectoryOutcome {
        // An empty password is an anonymous bind, which "succeeds".
        if password.is_empty() || name.trim().is_empty() || name.len() > 256 {
            return DirectoryOutcome::NoSuchUser;
        }
        match self.verify(name, password).await {
            Ok(id) => match resolve_account(store, client, &id, self.rules(), None).await {
                Ok(user) => DirectoryOutcome::Verified(user),
                Err(e) => {
                    super::audit_refusal(
                        store,
                        client,
                        "sso.login",
                        Some(super::describe(&id)),
                        &e,
                    )
                    .await;
                    DirectoryOutcome::Refused {
                        code: e.code(),
                        message: e.to_string(),
                    }
                }
            },
            Err(Fail::NoSuchUser) => DirectoryOutcome::NoSuchUser,
            Err(Fail::WrongPassword) => DirectoryOutcome::WrongPassword,
            Err(Fail::Unavailable(why)) => {
                tracing::warn!(error = %why, "the LDAP directory could not check a sign-in");
                DirectoryOutcome::Unavailable
            }
        }
    }
}
