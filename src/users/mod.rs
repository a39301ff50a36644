//! Accounts: the rules for creating and changing users, shared by every
//! front end (the HTTP API and the command line).
//!
//! The "keep one active administrator" rule is enforced by the store
//! ([`Store::update_user`]) inside the write transaction that makes the
//! change; signing a user out everywhere (sessions, refresh tokens and, on a
//! new password, API keys) happens in that same transaction. Nothing here
//! knows about HTTP: errors are a [`UserError`] the caller maps.

pub mod invites;
pub mod keys;
pub mod login;
pub mod reset;
pub mod setup;
pub mod tokens;
pub mod twofactor;

use uuid::Uuid;

use crate::auth::password::{self, Hasher};
use crate::auth::throttle::LoginThrottle;
use crate::config::RegistrationMode;
use crate::store::{
    AuditEntry, QuotaOverride, Revoked, Role, SharedStore, SignOut, StoreError, User, UserPatch,
    UserStatus,
};

/// Why an account operation was refused.
#[derive(Debug, thiserror::Error)]
pub enum UserError {
    #[error("{0}")]
    Validation(String),
    /// The setup token is wrong or setup is done.
    #[error("{0}")]
    Forbidden(String),
    #[error("registration is closed on this server")]
    RegistrationClosed,
    #[error("{0}")]
    InvalidInvite(String),
    #[error("username already taken")]
    UsernameExists,
    /// What was not found ("user", "invite").
    #[error("{0} not found")]
    NotFound(&'static str),
    /// The change would break an account rule (e.g. leave no active admin).
    #[error("{0}")]
    Rule(String),
    #[error("invalid username or password")]
    InvalidCredentials,
    /// The account is disabled.
    #[error("this account is disabled")]
    Inactive,
    /// The refresh token is unknown, expired or was spent.
    #[error("session expired")]
    SessionExpired,
    #[error("The current password is not correct.")]
    WrongPassword,
    #[error("two-factor code required")]
    TwoFactorRequired,
    #[error("invalid two-factor code")]
    InvalidCode,
    #[error("sign-in step expired")]
    ChallengeExpired,
    /// A reset or verification link that is unknown, used or expired.
    #[error("{0}")]
    InvalidLink(String),
    /// The change conflicts with the account's state (e.g. two-factor
    /// sign-in is already on).
    #[error("{0}")]
    Conflict(String),
    #[error("mail is not configured")]
    MailNotConfigured,
    /// Too many wrong current passwords; retry after this many seconds.
    #[error("too many attempts")]
    Throttled(u64),
    /// `auth.local_passwords = false`: only single sign-on.
    #[error("Sign-in with a confab password is turned off on this server; use single sign-on.")]
    LocalPasswordsDisabled,
    /// The directory or provider proved the identity, its rules refused it.
    #[error("{message}")]
    SsoRefused { code: &'static str, message: String },
    #[error("The sign-in directory cannot be reached; try again later.")]
    DirectoryUnavailable,
    #[error(transparent)]
    Store(StoreError),
}

impl From<StoreError> for UserError {
    fn from(e: StoreError) -> Self {
        UserError::Store(e)
    }
}

pub type UserResult<T> = Result<T, UserError>;

/// Who does something, for the audit log.
#[derive(Debug, Clone, Default)]
pub struct Actor {
    pub id: Option<Uuid>,
    pub name: Option<String>,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
}

impl Actor {
    /// The command line (`confab user …`, `confab invite …`).
    pub fn cli() -> Actor {
        Actor {
            name: Some("cli".into()),
            ..Actor::default()
        }
    }

    /// `user`, acting from where `client` says.
    pub fn of(user: &User, client: &Actor) -> Actor {
        Actor {
            id: Some(user.id),
            name: Some(user.username.clone()),
            ..client.clone()
        }
    }

    pub fn entry(&self, action: &str, target: Option<String>, outcome: &str) -> AuditEntry {
        AuditEntry {
            id: Uuid::now_v7(),
            at: crate::clock::now(),
            actor: self.id,
            actor_name: self.name.clone(),
            action: action.into(),
            target,
            ip: self.ip.clone(),
            user_agent: self.user_agent.clone(),
            outcome: outcome.into(),
        }
    }
}

/// A new account made by an administrator (API or command line).
pub struct NewUser {
    pub username: String,
    pub password: String,
    pub email: Option<String>,
    pub role: Role,
}

/// Someone signing up (setup or registration).
pub struct SignUp {
    pub username: String,
    pub password: String,
    pub email: Option<String>,
}

/// What a registration must satisfy, from the server's state.
pub struct RegistrationRules {
    pub mode: RegistrationMode,
    /// Setup is not done yet: nobody registers before the first admin.
    pub setup_pending: bool,
}

const SETUP_REFUSED: &str = "the setup token is invalid or setup was already completed";
const INVITE_REFUSED: &str = "the invite code is invalid, used up or expired";

/// An administrator's change to an account.
#[derive(Default)]
pub struct UserChange {
    pub role: Option<Role>,
    pub status: Option<UserStatus>,
    /// A new password: signs the user out everywhere, API keys included.
    pub password: Option<String>,
    /// `Some(None)` returns the user to the server default.
    pub quota: Option<Option<QuotaOverride>>,
}

/// The accounts service: what it needs, borrowed from the caller.
pub struct Users<'a> {
    pub store: &'a SharedStore,
    pub hasher: &'a Hasher,
    /// Budgets wrong current passwords on a password change (none on the
    /// command line).
    pub throttle: Option<&'a LoginThrottle>,
}

/// How a quota change reads in the audit log.
pub fn describe_quota(q: Option<&QuotaOverride>) -> String {
    let f = |v: Option<u64>| v.map_or("default".to_string(), |n| n.to_string());
    match q {
        None => "server default".into(),
        Some(q) => format!(
            "messages_per_day={} tokens_per_day={} storage_bytes={}",
            f(q.messages_per_day),
            f(q.tokens_per_day),
            f(q.storage_bytes)
        ),
    }
}

/// The audit target of a sign-out.
pub fn revoked_note(r: &Revoked) -> String {
    format!("revoked {} sessions, {} API keys", r.sessions, r.api_keys)
}

fn validation(e: crate::error::AppError) -> UserError {
    UserError::Validation(e.public_message())
}

/// Writes an audit entry. A failure to audit is logged, not surfaced: the
/// action itself already happened.
async fn audit(store: &SharedStore, e: AuditEntry) {
    let action = e.action.clone();
    if let Err(err) = store.append_audit(&e).await {
        tracing::error!(%action, error = %err, "failed to write audit entry");
    }
}

impl Users<'_> {
    async fn audit(&self, e: AuditEntry) {
        audit(self.store, e).await
    }

    fn check_sign_up(&self, req: &SignUp) -> UserResult<String> {
        let username = crate::auth::validate_username(&req.username).map_err(validation)?;
        password::validate("password", &req.password).map_err(UserError::Validation)?;
        if let Some(e) = &req.email {
            crate::auth::validate_email(e).map_err(validation)?;
        }
        Ok(username)
    }

    async fn new_user(&self, username: String, req: SignUp, role: Role, now: i64) -> User {
        User {
            id: Uuid::now_v7(),
            username,
            email: req.email,
            email_verified: false,
            password_hash: self.hasher.hash(req.password).await,
            role,
            status: UserStatus::Active,
            created_at: now,
            updated_at: now,
            quota: None,
        }
    }

    /// Creates the first admin with the one-time setup token; the token
    /// stops working once used. Audited as `setup` (a wrong token too).
    pub async fn setup(
        &self,
        client: &Actor,
        setup_token: &setup::SetupGate,
        token: &str,
        req: SignUp,
    ) -> UserResult<User> {
        if !setup_token.check(token).await? {
            let who = Actor {
                name: Some(req.username.chars().take(64).collect()),
                ..client.clone()
            };
            self.audit(who.entry("setup", None, "FORBIDDEN")).await;
            return Err(UserError::Forbidden(SETUP_REFUSED.into()));
        }
        let username = self.check_sign_up(&req)?;
        let now = crate::clock::now();
        let user = self.new_user(username, req, Role::Admin, now).await;
        let u2 = user.clone();
        match self.store.create_user(&u2, true, None, now).await {
            Ok(()) => {}
            Err(StoreError::Conflict(_)) => return Err(UserError::Forbidden(SETUP_REFUSED.into())),
            Err(e) => return Err(e.into()),
        }
        setup_token.finish().await;
        let who = Actor::of(&user, client);
        self.audit(who.entry("setup", Some(user.id.to_string()), "ok"))
            .await;
        tracing::info!(user_id = %user.id, "setup complete: first admin created");
        Ok(user)
    }

    /// Self-service registration, open or with an invite (whose role the
    /// account gets; one use is consumed in the transaction that creates
    /// the account).
    pub async fn register(
        &self,
        rules: RegistrationRules,
        req: SignUp,
        invite_code: Option<&str>,
    ) -> UserResult<User> {
        if rules.setup_pending {
            return Err(UserError::RegistrationClosed);
        }
        match (rules.mode, invite_code) {
            (RegistrationMode::Closed, _) => return Err(UserError::RegistrationClosed),
            (RegistrationMode::Invite, None) => {
                return Err(UserError::InvalidInvite(
                    "an invite code is required to register on this server".into(),
                ));
            }
            _ => {}
        }
        let username = self.check_sign_up(&req)?;
        let now = crate::clock::now();
        let mut role = Role::User;
        if let Some(code) = invite_code {
            match self.store.get_invite(code).await? {
                Some(inv) if inv.uses_left > 0 && inv.expires_at > now => role = inv.role,
                _ => return Err(UserError::InvalidInvite(INVITE_REFUSED.into())),
            }
        }
        // Cheap pre-check so a taken name does not cost an argon2 hash; the
        // authoritative check is inside the write transaction.
        if self.store.find_user_by_name(&username).await?.is_some() {
            return Err(UserError::UsernameExists);
        }
        let user = self.new_user(username, req, role, now).await;
        let u2 = user.clone();
        let code = invite_code.map(str::to_string);
        match self
            .store
            .create_user(&u2, false, code.as_deref(), now)
            .await
        {
            Ok(()) => Ok(user),
            Err(StoreError::Conflict(_)) => Err(UserError::UsernameExists),
            Err(StoreError::NotFound) => Err(UserError::InvalidInvite(INVITE_REFUSED.into())),
            Err(e) => Err(e.into()),
        }
    }

    /// An account created directly by an administrator.
    pub async fn create_user(&self, actor: &Actor, req: NewUser) -> UserResult<User> {
        let (role, req) = (
            req.role,
            SignUp {
                username: req.username,
                password: req.password,
                email: req.email,
            },
        );
        let username = self.check_sign_up(&req)?;
        if self.store.find_user_by_name(&username).await?.is_some() {
            return Err(UserError::UsernameExists);
        }
        let now = crate::clock::now();
        let user = self.new_user(username, req, role, now).await;
        let u2 = user.clone();
        match self.store.create_user(&u2, false, None, now).await {
            Ok(()) => {}
            Err(StoreError::Conflict(_)) => return Err(UserError::UsernameExists),
            Err(e) => return Err(e.into()),
        }
        self.audit(actor.entry("admin.user.create", Some(user.id.to_string()), "ok"))
            .await;
        Ok(user)
    }

    /// An administrator's change: role, status, a new password, quotas. A
    /// new password signs the user out everywhere (API keys too: the account
    /// may have been compromised); disabling ends sessions and refresh
    /// tokens (a disabled user's keys already stop working). Audited as
    /// `admin.user.update` (and `admin.user.quota` for a quota change).
    pub async fn update_user(
        &self,
        actor: &Actor,
        id: Uuid,
        change: UserChange,
    ) -> UserResult<(User, Option<Revoked>)> {
        if let Some(p) = &change.password {
            password::validate("password", p).map_err(UserError::Validation)?;
        }
        let password_hash = match change.password {
            Some(p) => Some(self.hasher.hash(p).await),
            None => None,
        };
        let sign_out = (password_hash.is_some() || change.status == Some(UserStatus::Disabled))
            .then_some(SignOut {
                keep_session: None,
                api_keys: password_hash.is_some(),
            });
        let quota_note = change
            .quota
            .as_ref()
            .map(|q| format!("{id}: {}", describe_quota(q.as_ref())));
        let patch = UserPatch {
            role: change.role,
            status: change.status,
            password_hash,
            quota: change.quota,
            updated_at: crate::clock::now(),
            ..UserPatch::default()
        };
        let res = self.store.update_user(id, patch, sign_out).await;
        let outcome = match &res {
            Ok(_) => "ok",
            Err(StoreError::NotFound) => "NOT_FOUND",
            Err(StoreError::Conflict(_)) => "VALIDATION_FAILED",
            Err(_) => "INTERNAL",
        };
        let target = match &res {
            Ok((_, Some(r))) => format!("{id}: {}", revoked_note(r)),
            _ => id.to_string(),
        };
        self.audit(actor.entry("admin.user.update", Some(target), outcome))
            .await;
        if let Some(note) = quota_note {
            self.audit(actor.entry("admin.user.quota", Some(note), outcome))
                .await;
        }
        match res {
            Ok(r) => Ok(r),
            Err(StoreError::NotFound) => Err(UserError::NotFound("user")),
            Err(StoreError::Conflict(m)) => Err(UserError::Rule(m)),
            Err(e) => Err(e.into()),
        }
    }

    /// A signed-in user changes their own password: the current one is
    /// checked (throttled), then every other session, every refresh token
    /// and every API key of the user end in the same transaction as the
    /// new password (issue 13).
    pub async fn change_password(
        &self,
        actor: &Actor,
        user: &User,
        keep_session: Option<Uuid>,
        current: String,
        new: String,
    ) -> UserResult<Revoked> {
        let attempt = match self.throttle {
            Some(t) => Some(
                t.begin_password_check(user.id)
                    .await
                    .map_err(|d| UserError::Throttled(d.reset_secs))?,
            ),
            None => None,
        };
        password::validate("new_password", &new).map_err(UserError::Validation)?;
        let ok = current.chars().count() <= password::MAX_LEN
            && self
                .hasher
                .verify(current, Some(user.password_hash.clone()))
                .await;
        if !ok {
            if let Some(a) = attempt {
                a.fail();
            }
            self.audit(actor.entry("password.change", None, "WRONG_PASSWORD"))
                .await;
            return Err(UserError::WrongPassword);
        }
        if let Some(a) = attempt {
            a.succeed();
        }
        let patch = UserPatch {
            password_hash: Some(self.hasher.hash(new).await),
            updated_at: crate::clock::now(),
            ..UserPatch::default()
        };
        let end = SignOut {
            keep_session,
            api_keys: true,
        };
        let uid = user.id;
        let (_, revoked) = self.store.update_user(uid, patch, Some(end)).await?;
        let revoked = revoked.unwrap_or_default();
        self.audit(actor.entry("password.change", Some(revoked_note(&revoked)), "ok"))
            .await;
        Ok(revoked)
    }
}
