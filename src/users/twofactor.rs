//! Two-factor sign-in (TOTP) for an account: enrolment, the second sign-in
//! step (a single-use challenge kept in the store, so any instance can
//! finish what another began), turning it off, and an admin's reset.
//! Audited as `2fa.*`, never with a secret, code or token in the entry.

use uuid::Uuid;

use super::{Actor, UserError, UserResult, Users};
use crate::auth::{password, tokens, totp};
use crate::store::security::{OneTimeKind, OneTimeToken, RecoveryCode, TwoFactor};
use crate::store::{User, UserStatus};

/// How long the second sign-in step stays open after the password.
pub const CHALLENGE_SECS: i64 = 300;
/// Wrong codes one challenge takes before it is spent (the account's own
/// budget, `auth.two_factor_failures_per_hour`, limits the rest).
pub const CHALLENGE_ATTEMPTS: u32 = 5;

/// What the app shows to enrol: the secret to type, the URI and its QR code.
pub struct Enrolment {
    pub secret: String,
    pub uri: String,
    pub qr: Option<String>,
}

/// Which kind of code proved the second factor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecondFactor {
    Totp,
    /// A recovery code; this many are left.
    Recovery {
        left: usize,
    },
}

/// A second sign-in step that passed: who, and what the first step asked
/// for (`login` or `token`).
pub struct Passed {
    pub user: User,
    pub purpose: String,
    pub used: SecondFactor,
}

impl Users<'_> {
    /// Whether `user` has a confirmed second factor.
    pub async fn two_factor_enabled(&self, user: Uuid) -> UserResult<bool> {
        Ok(self
            .store
            .get_two_factor(user)
            .await?
            .is_some_and(|t| t.enabled))
    }

    /// The user's enrolment, if confirmed.
    pub async fn two_factor(&self, user: Uuid) -> UserResult<Option<TwoFactor>> {
        Ok(self.store.get_two_factor(user).await?.filter(|t| t.enabled))
    }

    /// Starts (or restarts) enrolment with a new secret, not in force until
    /// a code confirms it. Conflict when two-factor sign-in is already on.
    pub async fn begin_enrolment(&self, user: &User, issuer: &str) -> UserResult<Enrolment> {
        if self.two_factor_enabled(user.id).await? {
            return Err(UserError::Conflict(
                "two-factor sign-in is already on; turn it off first to set it up again".into(),
            ));
        }
        let secret = totp::new_secret();
        let rec = TwoFactor {
            user_id: user.id,
            secret: secret.clone(),
            enabled: false,
            created_at: crate::clock::now(),
            enabled_at: None,
            last_step: 0,
            recovery: Vec::new(),
        };
        self.store.put_two_factor(&rec).await?;
        let uri = totp::uri(&secret, issuer, &user.username);
        Ok(Enrolment {
            secret: totp::base32(&secret),
            qr: totp::qr_data_url(&uri),
            uri,
        })
    }

    /// Confirms enrolment with a code from the app; returns the recovery
    /// codes, shown this once (only their hashes are kept).
    pub async fn confirm_enrolment(
        &self,
        actor: &Actor,
        user: &User,
        code: &str,
    ) -> UserResult<Vec<String>> {
        let codes: Vec<String> = (0..totp::RECOVERY_CODES)
            .map(|_| totp::new_recovery_code())
            .collect();
        let recovery: Vec<RecoveryCode> = codes
            .iter()
            .map(|c| RecoveryCode {
                hash: totp::recovery_hash(c),
                used_at: None,
            })
            .collect();
        let now = crate::clock::now();
        let code = code.to_string();
        let res = self
            .store
            .update_two_factor(
                user.id,
                Box::new(move |t| {
                    if t.enabled {
                        return false;
                    }
                    match totp::verify(&t.secret, &code, now, t.last_step) {
                        Some(step) => {
                            t.enabled = true;
                            t.enabled_at = Some(now);
                            t.last_step = step;
                            t.recovery = recovery;
                            true
                        }
                        None => false,
                    }
                }),
            )
            .await?;
        match res {
            Some((_, true)) => {
                self.audit(actor.entry("2fa.enrol", None, "ok")).await;
                Ok(codes)
            }
            Some((t, false)) if t.enabled => Err(UserError::Conflict(
                "two-factor sign-in is already on".into(),
            )),
            Some(_) => {
                self.audit(actor.entry("2fa.enrol", None, "INVALID_TWO_FACTOR_CODE"))
                    .await;
                Err(UserError::InvalidCode)
            }
            None => Err(UserError::Conflict(
                "start the set-up first: no two-factor set-up is waiting for a code".into(),
            )),
        }
    }

    /// Checks a TOTP or recovery code of `user` on the account's own
    /// budget of wrong codes (its lockout). A TOTP code is accepted once
    /// (its step must be newer than the last accepted one); a recovery code
    /// is spent. `action` names the attempt in the audit log.
    pub async fn check_second_factor(
        &self,
        actor: &Actor,
        user: &User,
        code: &str,
        action: &str,
    ) -> UserResult<SecondFactor> {
        let throttle = self.throttle.expect("codes are checked with a throttle");
        let attempt = match throttle.second_factor.begin(&user.id).await {
            Ok(a) => a,
            Err(d) => return Err(UserError::Throttled(d.reset_secs)),
        };
        let now = crate::clock::now();
        let given = code.trim().to_string();
        let recovery = totp::looks_like_recovery(&given);
        let hash = totp::recovery_hash(&given);
        let res = self
            .store
            .update_two_factor(
                user.id,
                Box::new(move |t| {
                    if !t.enabled {
                        return false;
                    }
                    if recovery {
                        match t
                            .recovery
                            .iter_mut()
                            .find(|c| c.used_at.is_none() && c.hash == hash)
                        {
                            Some(c) => {
                                c.used_at = Some(now);
                                true
                            }
                            None => false,
                        }
                    } else {
                        match totp::verify(&t.secret, &given, now, t.last_step) {
                            Some(step) => {
                                t.last_step = step;
                                true
                            }
                            None => false,
                        }
                    }
                }),
            )
            .await?;
        match res {
            Some((t, true)) => {
                attempt.succeed();
                if recovery {
                    let left = t.recovery_left();
                    self.audit(actor.entry(
                        "2fa.recovery_used",
                        Some(format!("{left} recovery codes left")),
                        "ok",
                    ))
                    .await;
                    Ok(SecondFactor::Recovery { left })
                } else {
                    Ok(SecondFactor::Totp)
                }
            }
            Some((t, false)) if t.enabled => {
                let d = attempt.fail();
                self.audit(actor.entry(action, None, "INVALID_TWO_FACTOR_CODE"))
                    .await;
                if d.remaining == 0 {
                    self.audit(actor.entry(
                        "2fa.lockout",
                        Some(format!("second step locked for {} s", d.reset_secs)),
                        "RATE_LIMITED",
                    ))
                    .await;
                }
                Err(UserError::InvalidCode)
            }
            // Not enrolled: nothing to check (not a guess; no charge).
            _ => {
                drop(attempt);
                Err(UserError::InvalidCode)
            }
        }
    }

    /// Opens the second sign-in step for `user` after a correct password;
    /// returns the challenge token (its hash is stored).
    pub async fn start_challenge(&self, user: &User, purpose: &str) -> UserResult<String> {
        let token = tokens::random_token();
        let now = crate::clock::now();
        let t = OneTimeToken {
            kind: OneTimeKind::LoginChallenge,
            user_id: user.id,
            created_at: now,
            expires_at: now + CHALLENGE_SECS,
            email: None,
            attempts: 0,
            purpose: Some(purpose.to_string()),
        };
        self.store
            .put_one_time(&tokens::hash_token(&token), &t)
            .await?;
        Ok(token)
    }

    /// The second sign-in step: spends the challenge and checks the code.
    /// A wrong code keeps the challenge open (a fresh record under the same
    /// token) for up to [`CHALLENGE_ATTEMPTS`] tries.
    pub async fn finish_challenge(
        &self,
        client: &Actor,
        challenge: &str,
        code: &str,
    ) -> UserResult<Passed> {
        let hash = tokens::hash_token(challenge);
        let now = crate::clock::now();
        let Some(mut ch) = self
            .store
            .take_one_time(OneTimeKind::LoginChallenge, &hash, now)
            .await?
        else {
            return Err(UserError::ChallengeExpired);
        };
        let user = match self.store.get_user(ch.user_id).await {
            Ok(u) => u,
            Err(crate::store::StoreError::NotFound) => return Err(UserError::ChallengeExpired),
            Err(e) => return Err(e.into()),
        };
        let who = Actor::of(&user, client);
        if user.status != UserStatus::Active {
            self.audit(who.entry("login", None, "USER_INACTIVE")).await;
            return Err(UserError::Inactive);
        }
        match self
            .check_second_factor(&who, &user, code, "login.2fa")
            .await
        {
            Ok(used) => Ok(Passed {
                purpose: ch.purpose.clone().unwrap_or_else(|| "login".into()),
                user,
                used,
            }),
            Err(UserError::InvalidCode) => {
                ch.attempts += 1;
                if ch.attempts < CHALLENGE_ATTEMPTS {
                    self.store.put_one_time(&hash, &ch).await?;
                }
                Err(UserError::InvalidCode)
            }
            Err(e) => Err(e),
        }
    }

    /// Turns two-factor sign-in off: needs the password and a current code
    /// (or a recovery code).
    pub async fn disable_two_factor(
        &self,
        actor: &Actor,
        user: &User,
        current_password: String,
        code: &str,
    ) -> UserResult<()> {
        if !self.two_factor_enabled(user.id).await? {
            return Err(UserError::Conflict("two-factor sign-in is not on".into()));
        }
        let throttle = self
            .throttle
            .expect("passwords are checked with a throttle");
        let attempt = throttle
            .begin_password_check(user.id)
            .await
            .map_err(|d| UserError::Throttled(d.reset_secs))?;
        let ok = current_password.chars().count() <= password::MAX_LEN
            && self
                .hasher
                .verify(current_password, Some(user.password_hash.clone()))
                .await;
        if !ok {
            attempt.fail();
            self.audit(actor.entry("2fa.disable", None, "WRONG_PASSWORD"))
                .await;
            return Err(UserError::WrongPassword);
        }
        attempt.succeed();
        self.check_second_factor(actor, user, code, "2fa.disable")
            .await?;
        self.store.delete_two_factor(user.id).await?;
        self.audit(actor.entry("2fa.disable", None, "ok")).await;
        Ok(())
    }

    /// An administrator (or the command line) turns a user's two-factor
    /// sign-in off, e.g. after a lost phone and lost recovery codes.
    pub async fn reset_two_factor(&self, actor: &Actor, user_id: Uuid) -> UserResult<bool> {
        self.store.get_user(user_id).await.map_err(|e| match e {
            crate::store::StoreError::NotFound => UserError::NotFound("user"),
            e => e.into(),
        })?;
        let had = self.store.delete_two_factor(user_id).await?;
        self.audit(actor.entry(
            "admin.2fa.reset",
            Some(user_id.to_string()),
            if had { "ok" } else { "NOT_ENROLLED" },
        ))
        .await;
        Ok(had)
    }
}
