//! Getting an account back without the old password, and proving an email
//! address: one-time links (their tokens stored hashed, single use, short
//! lived). An admin makes a reset link for anyone; with `[smtp]`, people ask
//! for one by mail themselves, to a verified address only, and the answer
//! never says whether the account exists. Using a link sets the password and
//! signs the account out everywhere in one store transaction.

use uuid::Uuid;

use super::{Actor, UserError, UserResult, Users, revoked_note};
use crate::auth::{password, tokens};
use crate::mail::Mailer;
use crate::store::security::{OneTimeKind, OneTimeToken};
use crate::store::{Revoked, SignOut, StoreError, User, UserPatch, UserStatus};

/// How long a link an admin makes stays valid (they hand it over by hand).
pub const ADMIN_LINK_SECS: i64 = 24 * 3600;
/// How long a mailed reset link stays valid.
pub const MAILED_LINK_SECS: i64 = 30 * 60;
/// How long an address-verification link stays valid.
pub const VERIFY_LINK_SECS: i64 = 24 * 3600;

const LINK_REFUSED: &str =
    "This link is not valid: it was already used, has expired, or was replaced by a newer one.";

/// A link made for someone.
pub struct Link {
    pub url: String,
    pub expires_at: i64,
}

impl Users<'_> {
    async fn new_link(
        &self,
        kind: OneTimeKind,
        user: Uuid,
        ttl: i64,
        email: Option<String>,
    ) -> UserResult<(String, i64)> {
        // Only the newest link of a kind works.
        self.store.delete_one_time_of_user(user, kind).await?;
        let token = tokens::random_token();
        let now = crate::clock::now();
        let t = OneTimeToken {
            kind,
            user_id: user,
            created_at: now,
            expires_at: now + ttl,
            email,
            attempts: 0,
            purpose: None,
        };
        self.store
            .put_one_time(&tokens::hash_token(&token), &t)
            .await?;
        Ok((token, t.expires_at))
    }

    /// An administrator's (or the command line's) reset link for `user_id`.
    pub async fn create_reset_link(
        &self,
        actor: &Actor,
        user_id: Uuid,
        base: &str,
    ) -> UserResult<Link> {
        let user = match self.store.get_user(user_id).await {
            Ok(u) => u,
            Err(StoreError::NotFound) => return Err(UserError::NotFound("user")),
            Err(e) => return Err(e.into()),
        };
        let (token, expires_at) = self
            .new_link(OneTimeKind::PasswordReset, user.id, ADMIN_LINK_SECS, None)
            .await?;
        self.audit(actor.entry("password.reset_link", Some(user.id.to_string()), "ok"))
            .await;
        Ok(Link {
            url: format!("{base}/reset-password#token={token}"),
            expires_at,
        })
    }

    /// Someone asks for a reset mail for `who` (a username or an address).
    /// Mails the account's verified address, if there is such an active
    /// account; does nothing otherwise. The caller answers the same either
    /// way (and should not wait for this).
    pub async fn request_reset(&self, client: &Actor, who: &str, mailer: &Mailer, base: &str) {
        let who = who.trim();
        let user = match self.find_for_reset(who).await {
            Ok(u) => u,
            Err(e) => {
                tracing::warn!(error = %e, "password reset request: lookup failed");
                None
            }
        };
        let Some(user) = user else {
            let a = Actor {
                name: Some(who.chars().take(64).collect()),
                ..client.clone()
            };
            self.audit(a.entry("password.reset_request", None, "NO_MATCH"))
                .await;
            return;
        };
        let actor = Actor::of(&user, client);
        let throttle = self.throttle.expect("reset mail is throttled");
        let Ok(attempt) = throttle.reset_mail.begin(&user.id).await else {
            self.audit(actor.entry("password.reset_request", None, "RATE_LIMITED"))
                .await;
            return;
        };
        // Every mail spends one of the account's mails this hour.
        attempt.fail();
        let email = user.email.clone().unwrap_or_default();
        let res = match self
            .new_link(OneTimeKind::PasswordReset, user.id, MAILED_LINK_SECS, None)
            .await
        {
            Ok((token, _)) => {
                let body = format!(
                    "Someone (hopefully you) asked to reset the password of the account \"{}\".\n\n\
                     To choose a new password, open this link within 30 minutes:\n\n\
                     {base}/reset-password#token={token}\n\n\
                     The link works once. Using it signs the account out everywhere.\n\
                     If you did not ask for this, ignore this message: nothing changes.\n",
                    user.username
                );
                mailer
                    .send(&email, "Reset your password", body)
                    .await
                    .map_err(|e| e.to_string())
            }
            Err(e) => Err(e.to_string()),
        };
        let outcome = match &res {
            Ok(()) => "ok",
            Err(e) => {
                tracing::warn!(user_id = %user.id, error = %e, "password reset mail not sent");
                "MAIL_FAILED"
            }
        };
        self.audit(actor.entry("password.reset_request", None, outcome))
            .await;
    }

    /// The active account with a verified address that `who` names.
    async fn find_for_reset(&self, who: &str) -> UserResult<Option<User>> {
        let ok = |u: &User| u.status == UserStatus::Active && u.email_verified && u.email.is_some();
        if who.is_empty() || who.chars().count() > 254 {
            return Ok(None);
        }
        if !who.contains('@') {
            return Ok(self.store.find_user_by_name(who).await?.filter(ok));
        }
        // Addresses are not indexed: walk the accounts (a small server's
        // few hundred), matching case-insensitively.
        let mut cursor = None;
        loop {
            let page = self.store.list_users(cursor, 500).await?;
            let Some(last) = page.last() else {
                return Ok(None);
            };
            cursor = Some(last.id);
            if let Some(u) = page.into_iter().find(|u| {
                ok(u)
                    && u.email
                        .as_deref()
                        .is_some_and(|e| e.eq_ignore_ascii_case(who))
            }) {
                return Ok(Some(u));
            }
        }
    }

    /// Spends a reset link: sets `new_password` and signs the account out
    /// everywhere (sessions, refresh tokens, API keys) in one transaction.
    pub async fn reset_password(
        &self,
        client: &Actor,
        token: &str,
        new_password: String,
    ) -> UserResult<(User, Revoked)> {
        // A weak password does not burn the link.
        password::validate("new_password", &new_password).map_err(UserError::Validation)?;
        let now = crate::clock::now();
        let Some(t) = self
            .store
            .take_one_time(OneTimeKind::PasswordReset, &tokens::hash_token(token), now)
            .await?
        else {
            self.audit(client.entry("password.reset", None, "INVALID_LINK"))
                .await;
            return Err(UserError::InvalidLink(LINK_REFUSED.into()));
        };
        let patch = UserPatch {
            password_hash: Some(self.hasher.hash(new_password).await),
            updated_at: now,
            ..UserPatch::default()
        };
        let end = SignOut {
            keep_session: None,
            api_keys: true,
        };
        let (user, revoked) = match self.store.update_user(t.user_id, patch, Some(end)).await {
            Ok(r) => r,
            Err(StoreError::NotFound) => return Err(UserError::InvalidLink(LINK_REFUSED.into())),
            Err(e) => return Err(e.into()),
        };
        let revoked = revoked.unwrap_or_default();
        let actor = Actor::of(&user, client);
        self.audit(actor.entry("password.reset", Some(revoked_note(&revoked)), "ok"))
            .await;
        Ok((user, revoked))
    }

    /// The user sets (or, with None, removes) their address. A new address
    /// is unverified; with a mailer, a verification link goes to it.
    pub async fn set_email(
        &self,
        actor: &Actor,
        user: &User,
        email: Option<String>,
        mailer: Option<&Mailer>,
        base: &str,
    ) -> UserResult<User> {
        let email = email
            .map(|e| e.trim().to_string())
            .filter(|e| !e.is_empty());
        if let Some(e) = &email {
            crate::auth::validate_email(e).map_err(super::validation)?;
        }
        let changed = email != user.email;
        let patch = UserPatch {
            email: Some(email),
            updated_at: crate::clock::now(),
            ..UserPatch::default()
        };
        let (updated, _) = self.store.update_user(user.id, patch, None).await?;
        if changed {
            self.store
                .delete_one_time_of_user(user.id, OneTimeKind::EmailVerification)
                .await?;
            self.audit(actor.entry("email.change", None, "ok")).await;
            if let (Some(m), Some(_)) = (mailer, &updated.email) {
                self.send_verification(actor, &updated, m, base).await?;
            }
        }
        Ok(updated)
    }

    /// Mails a verification link to the user's (unverified) address.
    pub async fn send_verification(
        &self,
        actor: &Actor,
        user: &User,
        mailer: &Mailer,
        base: &str,
    ) -> UserResult<()> {
        let Some(email) = user.email.clone() else {
            return Err(UserError::Validation("add an email address first".into()));
        };
        if user.email_verified {
            return Err(UserError::Conflict(
                "this address is already verified".into(),
            ));
        }
        let throttle = self.throttle.expect("verification mail is throttled");
        let attempt = throttle
            .reset_mail
            .begin(&user.id)
            .await
            .map_err(|d| UserError::Throttled(d.reset_secs))?;
        attempt.fail();
        let (token, _) = self
            .new_link(
                OneTimeKind::EmailVerification,
                user.id,
                VERIFY_LINK_SECS,
                Some(email.clone()),
            )
            .await?;
        let body = format!(
            "To confirm that {email} is the address of the account \"{}\", open this link within 24 hours:\n\n\
             {base}/verify-email#token={token}\n\n\
             If you did not add this address, ignore this message.\n",
            user.username
        );
        if let Err(e) = mailer
            .send(&email, "Confirm your email address", body)
            .await
        {
            tracing::warn!(user_id = %user.id, error = %e, "verification mail not sent");
            self.audit(actor.entry("email.verification_sent", None, "MAIL_FAILED"))
                .await;
            return Err(UserError::Store(StoreError::Backend(
                "the verification mail could not be sent".into(),
            )));
        }
        self.audit(actor.entry("email.verification_sent", None, "ok"))
            .await;
        Ok(())
    }

    /// Spends a verification link: the address it was sent to is verified,
    /// if it is still the account's.
    pub async fn verify_email(&self, client: &Actor, token: &str) -> UserResult<User> {
        let now = crate::clock::now();
        let Some(t) = self
            .store
            .take_one_time(
                OneTimeKind::EmailVerification,
                &tokens::hash_token(token),
                now,
            )
            .await?
        else {
            self.audit(client.entry("email.verify", None, "INVALID_LINK"))
                .await;
            return Err(UserError::InvalidLink(LINK_REFUSED.into()));
        };
        let patch = UserPatch {
            verify_email: t.email.clone(),
            updated_at: now,
            ..UserPatch::default()
        };
        let (user, _) = match self.store.update_user(t.user_id, patch, None).await {
            Ok(r) => r,
            Err(StoreError::NotFound) => return Err(UserError::InvalidLink(LINK_REFUSED.into())),
            Err(e) => return Err(e.into()),
        };
        let actor = Actor::of(&user, client);
        if !user.email_verified {
            self.audit(actor.entry("email.verify", None, "ADDRESS_CHANGED"))
                .await;
            return Err(UserError::InvalidLink(LINK_REFUSED.into()));
        }
        self.audit(actor.entry("email.verify", None, "ok")).await;
        Ok(user)
    }
}
