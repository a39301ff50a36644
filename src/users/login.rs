//! Signing in with a username and password, throttled (see
//! `auth::throttle` for the budgets) and audited. The password is checked
//! by a directory first when one is configured (LDAP, see `sso::ldap`),
//! then against the account's own hash unless local passwords are off.

use std::net::IpAddr;

use uuid::Uuid;

use super::{Actor, UserError, UserResult, Users};
use crate::auth::device::DeviceId;
use crate::auth::throttle::Source;
use crate::auth::{password, username};
use crate::limits::failures::FailureLimiter;
use crate::limits::rate::Decision;
use crate::store::{SharedStore, User, UserStatus};

/// What a directory says of a username and password.
#[derive(Debug)]
pub enum DirectoryOutcome {
    /// The password is right; the account it signs in to (linked or
    /// created by the directory's rules).
    Verified(User),
    /// The directory has no such user: the local password may still apply.
    NoSuchUser,
    WrongPassword,
    /// The password is right but the rules refuse the sign-in.
    Refused {
        code: &'static str,
        message: String,
    },
    /// The directory did not answer.
    Unavailable,
}

/// A directory that checks passwords (LDAP).
#[async_trait::async_trait]
pub trait PasswordDirectory: Send + Sync {
    async fn check(
        &self,
        store: &SharedStore,
        client: &Actor,
        name: &str,
        password: &str,
    ) -> DirectoryOutcome;
}

/// How a sign-in attempt is throttled and reported, from the front end.
pub struct LoginContext<'a> {
    /// The per-address budget of failed sign-ins.
    pub per_ip: &'a FailureLimiter<IpAddr>,
    pub ip: IpAddr,
    /// The device of `user` this request proves (a signed cookie), if any:
    /// a known device signs in on its own budget.
    pub device: &'a (dyn Fn(Uuid) -> Option<DeviceId> + Sync),
    /// Told every throttle decision (a front end may report it).
    pub note: &'a (dyn Fn(Decision) + Sync),
    /// Asked first, when configured.
    pub directory: Option<&'a dyn PasswordDirectory>,
    /// Whether the account's own password may be used.
    pub local_passwords: bool,
}

impl Users<'_> {
    /// Checks a username and password: the common part of a browser login
    /// and a token request (`action` names it in the audit log). Returns
    /// the user and the device the request came from, if it is a known
    /// device of theirs. Wrong credentials cost a delay, then a refusal
    /// once the budget is spent ([`UserError::Throttled`]).
    pub async fn check_credentials(
        &self,
        client: &Actor,
        cx: LoginContext<'_>,
        name: &str,
        secret: &str,
        action: &str,
    ) -> UserResult<(User, Option<DeviceId>)> {
        let throttle = self.throttle.expect("sign-ins are checked with a throttle");
        if cx.directory.is_none() && !cx.local_passwords {
            return Err(UserError::LocalPasswordsDisabled);
        }
        // Oversized inputs cannot match; bound the work before hashing.
        let plausible = name.chars().count() <= username::MAX_LEN
            && secret.chars().count() <= password::MAX_LEN;
        let user = if plausible {
            self.store.find_user_by_name(name).await?
        } else {
            None
        };
        let device = user.as_ref().and_then(|u| (cx.device)(u.id));
        let source = match device {
            Some(d) => Source::Known(d),
            None => Source::Unknown(cx.ip),
        };
        let account = username::key(name);
        let gate = match throttle.begin(cx.per_ip, &account, source).await {
            Ok(g) => g,
            Err(d) => {
                // Not audited: the failure that spent the budget was
                // (below), and a refusal must not cost a write.
                (cx.note)(d);
                return Err(UserError::Throttled(d.reset_secs));
            }
        };
        let mut verified = None;
        if let Some(dir) = cx.directory {
            match dir.check(self.store, client, name, secret).await {
                DirectoryOutcome::Verified(u) => verified = Some(u),
                DirectoryOutcome::NoSuchUser | DirectoryOutcome::WrongPassword => {}
                DirectoryOutcome::Refused { code, message } => {
                    // The password was right: not a guess to budget.
                    (cx.note)(gate.succeed());
                    return Err(UserError::SsoRefused { code, message });
                }
                DirectoryOutcome::Unavailable if !cx.local_passwords => {
                    (cx.note)(gate.succeed());
                    return Err(UserError::DirectoryUnavailable);
                }
                DirectoryOutcome::Unavailable => {}
            }
        }
        let user = match verified {
            Some(u) => Some(u),
            None if cx.local_passwords => {
                let ok = self
                    .hasher
                    .verify(
                        secret.to_string(),
                        user.as_ref().map(|u| u.password_hash.clone()),
                    )
                    .await;
                user.filter(|_| ok)
            }
            None => None,
        };
        let Some(user) = user else {
            let failed = gate.fail();
            (cx.note)(failed.decision);
            let who = Actor {
                name: Some(name.chars().take(64).collect()),
                ..client.clone()
            };
            let target = failed.spent.map(|what| format!("throttled: {what}"));
            self.audit(who.entry(action, target, "INVALID_CREDENTIALS"))
                .await;
            // Slow guessing down before refusing it outright.
            tokio::time::sleep(failed.delay).await;
            return Err(UserError::InvalidCredentials);
        };
        (cx.note)(gate.succeed());
        if user.status != UserStatus::Active {
            let who = Actor::of(&user, client);
            self.audit(who.entry(action, None, "USER_INACTIVE")).await;
            return Err(UserError::Inactive);
        }
        Ok((user, device))
    }
}
