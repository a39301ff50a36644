//! Single sign-on: OpenID Connect providers (`oidc.rs`) and an LDAP
//! directory (`ldap.rs`), and the one set of rules both follow to turn an
//! outside identity into a confab account (this file).
//!
//! Accounts are linked by (issuer, subject) in the store, never by an
//! e-mail address. A link is made when a signed-in user links an identity
//! from their settings, or when a provider allows automatic creation (and
//! the identity passes its domain and group rules). A provider's admin
//! groups give or take the admin role at every sign-in. Every decision is
//! audited (`sso.*` actions), never with a token, a code or a password.

pub mod ldap;
pub mod oidc;

use std::sync::Arc;

use uuid::Uuid;

use crate::config::Config;
use crate::store::identities::IdentityLink;
use crate::store::{AuditEntry, Role, SharedStore, StoreError, User, UserPatch, UserStatus};
use crate::users::Actor;

/// Why a single sign-on was refused; each has a stable code.
#[derive(Debug, thiserror::Error)]
pub enum SsoError {
    #[error("No single sign-on provider of that name is configured.")]
    UnknownProvider,
    #[error("This sign-in link is invalid, expired or was already used; start again.")]
    StateInvalid,
    #[error("The identity provider refused the sign-in: {0}")]
    ProviderRefused(String),
    #[error("The identity provider could not be reached or answered wrongly: {0}")]
    ProviderUnavailable(String),
    #[error("The identity provider's token was issued for another application.")]
    TokenAudience,
    #[error("The identity provider's token has expired.")]
    TokenExpired,
    #[error("The identity provider's token names another issuer.")]
    TokenIssuer,
    #[error("The identity provider's token signature is not valid.")]
    TokenSignature,
    #[error("The identity provider's token does not belong to this sign-in.")]
    NonceMismatch,
    #[error("The identity provider's token is not valid: {0}")]
    TokenInvalid(String),
    #[error("No confab account is linked to this identity; ask an administrator.")]
    NotLinked,
    #[error("This identity may not sign in to this server.")]
    NotAllowed,
    #[error("This identity is already linked to another account.")]
    AlreadyLinked,
    #[error(
        "An account with this username exists and is not linked to the directory; ask an administrator."
    )]
    AccountExists,
    #[error(
        "This is the last way to sign in to this account; set a password or link another identity first."
    )]
    LastSignIn,
    #[error("identity not found")]
    IdentityNotFound,
    #[error("this account is disabled")]
    Inactive,
    #[error("{0}")]
    Store(#[from] StoreError),
}

impl SsoError {
    pub fn code(&self) -> &'static str {
        use SsoError::*;
        match self {
            UnknownProvider => "SSO_UNKNOWN_PROVIDER",
            StateInvalid => "SSO_STATE_INVALID",
            ProviderRefused(_) => "SSO_PROVIDER_REFUSED",
            ProviderUnavailable(_) => "SSO_PROVIDER_UNAVAILABLE",
            TokenAudience => "SSO_TOKEN_AUDIENCE",
            TokenExpired => "SSO_TOKEN_EXPIRED",
            TokenIssuer => "SSO_TOKEN_ISSUER",
            TokenSignature => "SSO_TOKEN_SIGNATURE",
            NonceMismatch => "SSO_NONCE_MISMATCH",
            TokenInvalid(_) => "SSO_TOKEN_INVALID",
            NotLinked => "SSO_NOT_LINKED",
            NotAllowed => "SSO_NOT_ALLOWED",
            AlreadyLinked => "SSO_ALREADY_LINKED",
            AccountExists => "SSO_ACCOUNT_EXISTS",
            LastSignIn => "SSO_LAST_SIGN_IN",
            IdentityNotFound => "NOT_FOUND",
            Inactive => "USER_INACTIVE",
            Store(_) => "INTERNAL",
        }
    }
}

pub type SsoResult<T> = Result<T, SsoError>;

/// What a provider says about the person signing in.
#[derive(Debug, Clone, Default)]
pub struct OutsideIdentity {
    /// The configured provider's name.
    pub provider: String,
    pub issuer: String,
    pub subject: String,
    pub email: Option<String>,
    pub email_verified: bool,
    /// Where a new account's username comes from.
    pub username_hint: Option<String>,
    pub groups: Vec<String>,
}

/// A provider's rules for accounts.
#[derive(Debug, Clone, Copy)]
pub struct AccountRules<'a> {
    pub auto_create: bool,
    pub allowed_domains: &'a [String],
    pub required_groups: &'a [String],
    pub admin_groups: &'a [String],
    /// Provider group → confab group (`group_map`).
    pub group_map: &'a std::collections::BTreeMap<String, String>,
    /// Directory users keep their name: a taken name is refused, not
    /// changed (they type it at every sign-in).
    pub keep_username: bool,
}

fn member(groups: &[String], wanted: &[String]) -> bool {
    groups
        .iter()
        .any(|g| wanted.iter().any(|w| w.eq_ignore_ascii_case(g)))
}

/// What the audit log says about an identity (no secrets: provider and
/// subject only).
pub fn describe(id: &OutsideIdentity) -> String {
    let sub: String = id.subject.chars().take(200).collect();
    format!("{}: {sub}", id.provider)
}

/// A valid confab username made of `hint` (letters, digits, underscore;
/// 3 to 50 characters), with `suffix` when the plain one is taken.
fn username_from(hint: &str, suffix: u32) -> String {
    let local = hint.split('@').next().unwrap_or(hint);
    let mut base: String = local
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .take(44)
        .collect();
    while base.len() < 3 {
        base.push('_');
    }
    if suffix == 0 {
        base
    } else {
        format!("{base}_{suffix}")
    }
}

/// The single sign-on services of this server.
pub struct Sso {
    pub providers: Vec<Arc<oidc::OidcClient>>,
    pub ldap: Option<Arc<ldap::Directory>>,
    pub local_passwords: bool,
}

impl Sso {
    /// From the configuration; `public_base` is where browsers reach the
    /// server (the redirect URIs are under it).
    pub fn new(cfg: &Config, public_base: &str) -> Sso {
        if cfg.auth.local_passwords && (!cfg.oidc.is_empty() || cfg.ldap.is_some()) {
            tracing::info!(
                oidc = cfg.oidc.len(),
                ldap = cfg.ldap.is_some(),
                "single sign-on configured; confab passwords are accepted too (auth.local_passwords)"
            );
        } else if !cfg.auth.local_passwords {
            tracing::warn!(
                oidc = cfg.oidc.len(),
                ldap = cfg.ldap.is_some(),
                "auth.local_passwords = false: confab passwords are refused at sign-in"
            );
        }
        Sso {
            providers: cfg
                .oidc
                .iter()
                .map(|e| Arc::new(oidc::OidcClient::new(e.clone(), public_base)))
                .collect(),
            ldap: cfg.ldap.clone().map(|l| Arc::new(ldap::Directory::new(l))),
            local_passwords: cfg.auth.local_passwords,
        }
    }

    pub fn provider(&self, name: &str) -> SsoResult<&Arc<oidc::OidcClient>> {
        self.providers
            .iter()
            .find(|p| p.cfg.name == name)
            .ok_or(SsoError::UnknownProvider)
    }

    /// The display name of a configured provider (for the identities list).
    pub fn display_name(&self, name: &str) -> Option<String> {
        if name == ldap::PROVIDER {
            return self.ldap.as_ref().map(|_| "Directory (LDAP)".to_string());
        }
        self.providers
            .iter()
            .find(|p| p.cfg.name == name)
            .map(|p| p.display_name())
    }
}

async fn audit(store: &SharedStore, e: AuditEntry) {
    let action = e.action.clone();
    if let Err(err) = store.append_audit(&e).await {
        tracing::error!(%action, error = %err, "failed to write audit entry");
    }
}

/// Audits a refused sign-in (`action`) of `who` with the error's code.
pub async fn audit_refusal(
    store: &SharedStore,
    client: &Actor,
    action: &str,
    target: Option<String>,
    e: &SsoError,
) {
    audit(store, client.entry(action, target, e.code())).await;
}

/// Turns a verified outside identity into the account it signs in to:
/// the linked one, the signed-in user linking it (`link_user`), or a new
/// one when the rules allow; keeps the admin role in step with the admin
/// groups. Audited.
pub async fn resolve_account(
    store: &SharedStore,
    client: &Actor,
    id: &OutsideIdentity,
    rules: AccountRules<'_>,
    link_user: Option<Uuid>,
) -> SsoResult<User> {
    let target = Some(describe(id));
    if !rules.required_groups.is_empty() && !member(&id.groups, rules.required_groups) {
        return Err(SsoError::NotAllowed);
    }
    let now = crate::clock::now();
    let user = match store.find_identity(&id.issuer, &id.subject).await? {
        Some(link) => {
            if link_user.is_some_and(|u| u != link.user_id) {
                return Err(SsoError::AlreadyLinked);
            }
            match store.get_user(link.user_id).await {
                Ok(u) => u,
                Err(StoreError::NotFound) => return Err(SsoError::NotLinked),
                Err(e) => return Err(e.into()),
            }
        }
        None => {
            let link = |user_id| IdentityLink {
                id: Uuid::now_v7(),
                user_id,
                provider: id.provider.clone(),
                issuer: id.issuer.clone(),
                subject: id.subject.clone(),
                email: id.email.clone(),
                created_at: now,
            };
            if let Some(uid) = link_user {
                let user = store.get_user(uid).await?;
                match store.link_identity(&link(uid), None).await {
                    Ok(()) => {}
                    Err(StoreError::Conflict(_)) => return Err(SsoError::AlreadyLinked),
                    Err(e) => return Err(e.into()),
                }
                let who = Actor::of(&user, client);
                audit(store, who.entry("sso.link", target.clone(), "ok")).await;
                return Ok(user);
            }
            if !rules.auto_create {
                return Err(SsoError::NotLinked);
            }
            let domain_ok = !rules.allowed_domains.is_empty()
                && id.email_verified
                && id.email.as_deref().is_some_and(|e| {
                    e.rsplit_once('@').is_some_and(|(_, d)| {
                        rules
                            .allowed_domains
                            .iter()
                            .any(|a| a.trim_start_matches('@').eq_ignore_ascii_case(d))
                    })
                });
            let group_ok = !rules.required_groups.is_empty();
            let open = rules.allowed_domains.is_empty() && rules.required_groups.is_empty();
            if !(open || domain_ok || group_ok) {
                return Err(SsoError::NotAllowed);
            }
            create_linked(store, client, id, rules, &link).await?
        }
    };
    if user.status != UserStatus::Active {
        return Err(SsoError::Inactive);
    }
    let user = sync_admin(store, client, user, id, rules).await?;
    sync_groups(store, client, &user, id, rules).await?;
    Ok(user)
}

/// Puts the user in the confab groups their provider groups map to, and
/// takes them out of the other mapped ones; groups no mapping names are
/// left as admins set them. Audited per change (`sso.group.add`/`remove`).
async fn sync_groups(
    store: &SharedStore,
    client: &Actor,
    user: &User,
    id: &OutsideIdentity,
    rules: AccountRules<'_>,
) -> SsoResult<()> {
    if rules.group_map.is_empty() {
        return Ok(());
    }
    let mapped = rules.group_map.values().cloned().collect();
    let granted = rules
        .group_map
        .iter()
        .filter(|(from, _)| id.groups.iter().any(|g| g.eq_ignore_ascii_case(from)))
        .map(|(_, to)| to.clone())
        .collect();
    let who = Actor::of(user, client);
    crate::groups::Groups { store }
        .sync_sso(&who, user.id, &mapped, &granted)
        .await
        .map_err(|e| {
            tracing::error!(error = %e, "single sign-on could not update the user's groups");
            SsoError::Store(StoreError::Backend("updating groups failed".into()))
        })
}

async fn create_linked(
    store: &SharedStore,
    client: &Actor,
    id: &OutsideIdentity,
    rules: AccountRules<'_>,
    link: &(dyn Fn(Uuid) -> IdentityLink + Sync),
) -> SsoResult<User> {
    let hint = id
        .username_hint
        .as_deref()
        .or(id.email.as_deref())
        .unwrap_or("user");
    let now = crate::clock::now();
    let role = if member(&id.groups, rules.admin_groups) {
        Role::Admin
    } else {
        Role::User
    };
    let email = id
        .email
        .clone()
        .filter(|e| id.email_verified && crate::auth::validate_email(e).is_ok());
    let tries = if rules.keep_username { 1 } else { 20 };
    for n in 0..tries {
        let username = username_from(hint, n);
        let user = User {
            id: Uuid::now_v7(),
            username,
            email: email.clone(),
            // Kept only when the provider vouches for it (above).
            email_verified: email.is_some(),
            // No password: this account signs in through its provider.
            password_hash: String::new(),
            role,
            status: UserStatus::Active,
            created_at: now,
            updated_at: now,
            quota: None,
        };
        match store.link_identity(&link(user.id), Some(&user)).await {
            Ok(()) => {
                let who = Actor::of(&user, client);
                let note = format!("{} as {}", describe(id), user.username);
                audit(store, who.entry("sso.create", Some(note), "ok")).await;
                return Ok(user);
            }
            Err(StoreError::Conflict(m)) if m.contains("username") => continue,
            Err(StoreError::Conflict(_)) => return Err(SsoError::AlreadyLinked),
            Err(e) => return Err(e.into()),
        }
    }
    Err(SsoError::AccountExists)
}

/// Gives or takes the admin role by the admin groups (when any are set).
/// Taking it from the last active admin is refused by the store; they stay
/// an admin and the log says why.
async fn sync_admin(
    store: &SharedStore,
    client: &Actor,
    user: User,
    id: &OutsideIdentity,
    rules: AccountRules<'_>,
) -> SsoResult<User> {
    if rules.admin_groups.is_empty() {
        return Ok(user);
    }
    let want = if member(&id.groups, rules.admin_groups) {
        Role::Admin
    } else {
        Role::User
    };
    if want == user.role {
        return Ok(user);
    }
    let patch = UserPatch {
        role: Some(want),
        updated_at: crate::clock::now(),
        ..UserPatch::default()
    };
    let who = Actor::of(&user, client);
    let note = format!("{} role={want:?}", describe(id)).to_lowercase();
    match store.update_user(user.id, patch, None).await {
        Ok((u, _)) => {
            audit(store, who.entry("sso.role", Some(note), "ok")).await;
            Ok(u)
        }
        Err(StoreError::Conflict(_)) => {
            tracing::warn!(user_id = %user.id, "single sign-on would demote the last active admin; the role is kept");
            audit(store, who.entry("sso.role", Some(note), "LAST_ADMIN")).await;
            Ok(user)
        }
        Err(e) => Err(e.into()),
    }
}

/// Removes one of the user's linked identities, unless it is their last
/// way to sign in (no usable password and no other identity). Audited.
pub async fn unlink(
    store: &SharedStore,
    sso: &Sso,
    actor: &Actor,
    user: &User,
    id: Uuid,
) -> SsoResult<IdentityLink> {
    let links = store.list_identities(user.id).await?;
    if !links.iter().any(|l| l.id == id) {
        return Err(SsoError::IdentityNotFound);
    }
    let password = sso.local_passwords && !user.password_hash.is_empty();
    if !password && links.len() < 2 {
        audit(
            store,
            actor.entry("sso.unlink", Some(id.to_string()), "SSO_LAST_SIGN_IN"),
        )
        .await;
        return Err(SsoError::LastSignIn);
    }
    let link = match store.unlink_identity(user.id, id).await {
        Ok(l) => l,
        Err(StoreError::NotFound) => return Err(SsoError::IdentityNotFound),
        Err(e) => return Err(e.into()),
    };
    let note = format!(
        "{}: {}",
        link.provider,
        link.subject.chars().take(200).collect::<String>()
    );
    audit(store, actor.entry("sso.unlink", Some(note), "ok")).await;
    Ok(link)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usernames_from_hints_are_valid() {
        for (hint, n) in [
            ("alice", 0),
            ("Alice.Smith@example.com", 0),
            ("é", 0),
            ("x", 3),
            (
                "a-very-long-name-that-goes-on-and-on-and-on-and-on-and-on",
                19,
            ),
        ] {
            let u = username_from(hint, n);
            assert!(crate::username::normalize(&u).is_some(), "{hint} → {u}");
        }
        assert_eq!(username_from("Alice.Smith@example.com", 0), "alice_smith");
        assert_eq!(username_from("bob", 2), "bob_2");
    }

    #[test]
    fn group_membership_ignores_case() {
        let g = vec!["Confab-Admins".to_string()];
        assert!(member(&g, &["confab-admins".to_string()]));
        assert!(!member(&g, &["other".to_string()]));
    }
}
