//! Two-factor sign-in (set-up, the second sign-in step, turning it off),
//! password reset links and mail, the account's email address and its
//! verification, and the admins' two-factor policy. Thin: the rules are in
//! `users::twofactor` and `users::reset`.

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, put};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::auth::{UserView, actor, audit, remember_device, start_session, users};
use super::{Json, parse_id};
use crate::auth::{Admin, ClientInfo, CurrentUser};
use crate::clock::rfc3339;
use crate::error::{AppError, AppResult};
use crate::state::AppState;
use crate::store::security::TwoFactorPolicy;
use crate::users::UserError;
use crate::users::twofactor::SecondFactor;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/auth/two-factor", get(two_factor_status))
        .route("/auth/two-factor/setup", post(two_factor_setup))
        .route("/auth/two-factor/confirm", post(two_factor_confirm))
        .route("/auth/two-factor/disable", post(two_factor_disable))
        .route("/auth/login/two-factor", post(login_second_step))
        .route("/auth/password-reset", post(reset_password))
        .route("/auth/password-reset/request", post(request_reset))
        .route("/auth/email", put(set_email))
        .route("/auth/email/verification", post(send_verification))
        .route("/auth/email/verify", post(verify_email))
        .route("/admin/users/{id}/reset-link", post(create_reset_link))
        .route("/admin/users/{id}/two-factor", delete(reset_two_factor))
        .route("/admin/security", get(read_policy).put(update_policy))
}

#[derive(Serialize, ToSchema)]
pub struct TwoFactorStatus {
    pub enabled: bool,
    /// Recovery codes not used yet (0 when not enabled).
    pub recovery_codes_left: usize,
    /// The admins' policy requires a second factor of this user.
    pub required: bool,
}

#[utoipa::path(get, path = "/api/auth/two-factor", tag = "two-factor", operation_id = "two_factor_status",
    responses((status = 200, body = TwoFactorStatus)))]
pub async fn two_factor_status(
    State(state): State<AppState>,
    user: CurrentUser,
) -> AppResult<Json<TwoFactorStatus>> {
    let t = users(&state).two_factor(user.id()).await?;
    let policy = state.two_factor_policy.get(&state.store).await?;
    Ok(Json(TwoFactorStatus {
        enabled: t.is_some(),
        recovery_codes_left: t.map_or(0, |t| t.recovery_left()),
        required: policy.requires(user.user.role),
    }))
}

#[derive(Serialize, ToSchema)]
pub struct TwoFactorSetup {
    /// The secret, base32, for typing into an authenticator app.
    pub secret: String,
    /// The `otpauth://` URI the QR code holds.
    pub otpauth_uri: String,
    /// The QR code as an SVG `data:` URL.
    pub qr_svg: Option<String>,
}

/// Starts set-up with a new secret; nothing changes at sign-in until a code
/// confirms it (`/api/auth/two-factor/confirm`). Starting again replaces a
/// secret not yet confirmed.
#[utoipa::path(post, path = "/api/auth/two-factor/setup", tag = "two-factor", operation_id = "two_factor_setup",
    responses((status = 200, body = TwoFactorSetup), (status = 409, description = "Already on", body = crate::error::ErrorBody)))]
pub async fn two_factor_setup(
    State(state): State<AppState>,
    user: CurrentUser,
) -> AppResult<Json<TwoFactorSetup>> {
    let issuer = state
        .store
        .get_branding()
        .await?
        .server_name
        .unwrap_or_else(|| "confab".into());
    let e = users(&state).begin_enrolment(&user.user, &issuer).await?;
    Ok(Json(TwoFactorSetup {
        secret: e.secret,
        otpauth_uri: e.uri,
        qr_svg: e.qr,
    }))
}

#[derive(Deserialize, ToSchema)]
pub struct CodeRequest {
    /// The 6-digit code the authenticator app shows.
    pub code: String,
}

#[derive(Serialize, ToSchema)]
pub struct RecoveryCodes {
    /// Ten one-time codes, shown only now: each signs in once in place of
    /// the app.
    pub recovery_codes: Vec<String>,
}

#[utoipa::path(post, path = "/api/auth/two-factor/confirm", tag = "two-factor", operation_id = "two_factor_confirm",
    request_body = CodeRequest,
    responses((status = 200, body = RecoveryCodes), (status = 401, description = "INVALID_TWO_FACTOR_CODE", body = crate::error::ErrorBody),
    (status = 409, body = crate::error::ErrorBody)))]
pub async fn two_factor_confirm(
    State(state): State<AppState>,
    client: ClientInfo,
    user: CurrentUser,
    Json(req): Json<CodeRequest>,
) -> AppResult<Json<RecoveryCodes>> {
    let codes = users(&state)
        .confirm_enrolment(&actor(&client, Some(&user.user)), &user.user, &req.code)
        .await?;
    Ok(Json(RecoveryCodes {
        recovery_codes: codes,
    }))
}

#[derive(Deserialize, ToSchema)]
pub struct DisableRequest {
    pub current_password: String,
    /// A current code from the app, or a recovery code.
    pub code: String,
}

#[utoipa::path(post, path = "/api/auth/two-factor/disable", tag = "two-factor", operation_id = "two_factor_disable",
    request_body = DisableRequest,
    responses((status = 204), (status = 401, description = "INVALID_TWO_FACTOR_CODE", body = crate::error::ErrorBody),
    (status = 403, description = "WRONG_PASSWORD", body = crate::error::ErrorBody),
    (status = 409, description = "CONFLICT: two-factor sign-in is not on", body = crate::error::ErrorBody)))]
pub async fn two_factor_disable(
    State(state): State<AppState>,
    client: ClientInfo,
    user: CurrentUser,
    Json(req): Json<DisableRequest>,
) -> AppResult<StatusCode> {
    users(&state)
        .disable_two_factor(
            &actor(&client, Some(&user.user)),
            &user.user,
            req.current_password,
            &req.code,
        )
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize, ToSchema)]
pub struct SecondStep {
    /// From the `202` answer of `/api/auth/login`.
    pub challenge: String,
    /// The app's current code, or a recovery code.
    pub code: String,
}

/// The second sign-in step: answers as `/api/auth/login` does when it
/// signs in. The challenge takes a few wrong codes; the account's wrong
/// codes are budgeted on their own (`auth.two_factor_failures_per_hour`),
/// then refused with 429 until the hour is over.
#[utoipa::path(post, path = "/api/auth/login/two-factor", tag = "auth", operation_id = "login_two_factor",
    request_body = SecondStep,
    responses((status = 200, body = super::auth::LoginResponse),
    (status = 401, description = "INVALID_TWO_FACTOR_CODE or CHALLENGE_EXPIRED", body = crate::error::ErrorBody),
    (status = 429, body = crate::error::ErrorBody)))]
pub async fn login_second_step(
    State(state): State<AppState>,
    client: ClientInfo,
    headers: HeaderMap,
    Json(req): Json<SecondStep>,
) -> AppResult<Response> {
    let passed = match users(&state)
        .finish_challenge(&actor(&client, None), &req.challenge, &req.code)
        .await
    {
        Ok(p) => p,
        Err(UserError::Throttled(secs)) => {
            state.limits.metrics.rate_limited("auth");
            return Err(AppError::RateLimited {
                message: format!("too many wrong codes; try again in {secs} s"),
                retry_after: secs,
            });
        }
        Err(e) => return Err(e.into()),
    };
    let user = passed.user;
    let mut resp = start_session(&state, &user, &client, StatusCode::OK).await?;
    let t = &state.throttle;
    let device = t
        .devices
        .from_headers(&headers, user.id, crate::clock::now(), t.device_max_age);
    remember_device(&state, &mut resp, user.id, device);
    let via = match passed.used {
        SecondFactor::Totp => "totp",
        SecondFactor::Recovery { .. } => "recovery code",
    };
    audit(
        &state,
        &client,
        Some(&user),
        None,
        "login",
        Some(via.into()),
        "ok",
    )
    .await;
    Ok(resp)
}

#[derive(Deserialize, ToSchema)]
pub struct ResetRequest {
    /// The token from the link (`/reset-password#token=…`).
    pub token: String,
    pub new_password: String,
}

#[derive(Serialize, ToSchema)]
pub struct ResetDone {
    /// What the reset ended: every session and API key of the account.
    pub revoked: crate::store::Revoked,
}

/// Spends a reset link: sets the new password and signs the account out
/// everywhere. Invalid, used and expired links answer `INVALID_LINK`.
#[utoipa::path(post, path = "/api/auth/password-reset", tag = "auth", operation_id = "password_reset",
    request_body = ResetRequest,
    responses((status = 200, body = ResetDone), (status = 400, description = "INVALID_LINK or VALIDATION_FAILED", body = crate::error::ErrorBody)))]
pub async fn reset_password(
    State(state): State<AppState>,
    client: ClientInfo,
    Json(req): Json<ResetRequest>,
) -> AppResult<Json<ResetDone>> {
    // Guessing tokens spends the address's budget of failed credentials.
    let per_ip = &state.limits.rate.auth;
    let ip = crate::limits::ip::limiter_key(client.ip);
    let attempt = per_ip.begin(&ip).await.map_err(|d| AppError::RateLimited {
        message: format!("too many attempts; try again in {} s", d.reset_secs),
        retry_after: d.reset_secs,
    })?;
    match users(&state)
        .reset_password(&actor(&client, None), &req.token, req.new_password)
        .await
    {
        Ok((_, revoked)) => {
            attempt.succeed();
            Ok(Json(ResetDone { revoked }))
        }
        Err(e @ UserError::InvalidLink(_)) => {
            attempt.fail();
            Err(e.into())
        }
        Err(e) => Err(e.into()),
    }
}

#[derive(Deserialize, ToSchema)]
pub struct ResetMailRequest {
    /// The account's username or email address.
    pub username: String,
}

#[derive(Serialize, ToSchema)]
pub struct Accepted {
    pub message: &'static str,
}

const RESET_ACCEPTED: &str = "If an account with a verified email address matches, a link to reset its password is on its way. It works for 30 minutes.";

/// Asks for a reset mail. The answer is the same whether or not an account
/// matches (the lookup and the mail happen after it is sent), and only a
/// verified address receives mail.
#[utoipa::path(post, path = "/api/auth/password-reset/request", tag = "auth", operation_id = "password_reset_request",
    request_body = ResetMailRequest,
    responses((status = 202, body = Accepted), (status = 409, description = "MAIL_NOT_CONFIGURED", body = crate::error::ErrorBody),
    (status = 429, body = crate::error::ErrorBody)))]
pub async fn request_reset(
    State(state): State<AppState>,
    client: ClientInfo,
    Json(req): Json<ResetMailRequest>,
) -> AppResult<Response> {
    let Some(mailer) = state.mailer.clone() else {
        return Err(AppError::MailNotConfigured);
    };
    // Every request spends the address's budget, found or not.
    let ip = crate::limits::ip::limiter_key(client.ip);
    match state.limits.rate.auth.begin(&ip).await {
        Ok(a) => {
            a.fail();
        }
        Err(d) => {
            return Err(AppError::RateLimited {
                message: format!("too many requests; try again in {} s", d.reset_secs),
                retry_after: d.reset_secs,
            });
        }
    }
    let st = state.clone();
    let who = req.username;
    let client_actor = actor(&client, None);
    tokio::spawn(async move {
        users(&st)
            .request_reset(&client_actor, &who, &mailer, &st.public_base)
            .await;
    });
    Ok((
        StatusCode::ACCEPTED,
        axum::Json(Accepted {
            message: RESET_ACCEPTED,
        }),
    )
        .into_response())
}

#[derive(Deserialize, ToSchema)]
pub struct EmailChange {
    /// The new address; null or empty removes it.
    pub email: Option<String>,
}

/// Sets the caller's email address. A new address is unverified; when the
/// server sends mail, a verification link goes to it.
#[utoipa::path(put, path = "/api/auth/email", tag = "auth", operation_id = "set_email",
    request_body = EmailChange,
    responses((status = 200, body = UserView), (status = 400, body = crate::error::ErrorBody)))]
pub async fn set_email(
    State(state): State<AppState>,
    client: ClientInfo,
    user: CurrentUser,
    Json(req): Json<EmailChange>,
) -> AppResult<Json<UserView>> {
    let u = users(&state)
        .set_email(
            &actor(&client, Some(&user.user)),
            &user.user,
            req.email,
            state.mailer.as_deref(),
            &state.public_base,
        )
        .await?;
    Ok(Json(UserView::from(&u)))
}

/// Mails a new verification link to the caller's unverified address.
#[utoipa::path(post, path = "/api/auth/email/verification", tag = "auth", operation_id = "send_email_verification",
    responses((status = 204), (status = 409, description = "MAIL_NOT_CONFIGURED, or already verified", body = crate::error::ErrorBody)))]
pub async fn send_verification(
    State(state): State<AppState>,
    client: ClientInfo,
    user: CurrentUser,
) -> AppResult<StatusCode> {
    let Some(mailer) = state.mailer.as_deref() else {
        return Err(AppError::MailNotConfigured);
    };
    users(&state)
        .send_verification(
            &actor(&client, Some(&user.user)),
            &user.user,
            mailer,
            &state.public_base,
        )
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize, ToSchema)]
pub struct TokenRequest {
    /// The token from the link (`/verify-email#token=…`).
    pub token: String,
}

/// Spends a verification link (no sign-in needed: the link proves it).
#[utoipa::path(post, path = "/api/auth/email/verify", tag = "auth", operation_id = "verify_email",
    request_body = TokenRequest,
    responses((status = 200, body = UserView), (status = 400, description = "INVALID_LINK", body = crate::error::ErrorBody)))]
pub async fn verify_email(
    State(state): State<AppState>,
    client: ClientInfo,
    Json(req): Json<TokenRequest>,
) -> AppResult<Json<UserView>> {
    let u = users(&state)
        .verify_email(&actor(&client, None), &req.token)
        .await?;
    Ok(Json(UserView::from(&u)))
}

#[derive(Serialize, ToSchema)]
pub struct ResetLink {
    /// Hand this to the user: it sets a new password once, within a day.
    pub url: String,
    pub expires_at: String,
}

/// Makes a one-time password reset link for a user (no mail needed); an
/// earlier link of theirs stops working.
#[utoipa::path(post, path = "/api/admin/users/{id}/reset-link", tag = "admin", operation_id = "admin_create_reset_link",
    responses((status = 201, body = ResetLink), (status = 404, body = crate::error::ErrorBody)))]
pub async fn create_reset_link(
    State(state): State<AppState>,
    client: ClientInfo,
    Admin(admin): Admin,
    Path(id): Path<String>,
) -> AppResult<Response> {
    let uid = parse_id(&id, "user")?;
    let link = users(&state)
        .create_reset_link(&actor(&client, Some(&admin.user)), uid, &state.public_base)
        .await?;
    Ok(super::created(ResetLink {
        url: link.url,
        expires_at: rfc3339(link.expires_at),
    }))
}

/// Turns a user's two-factor sign-in off (a lost phone and lost recovery
/// codes); the policy may ask them to set it up again at their next
/// sign-in.
#[utoipa::path(delete, path = "/api/admin/users/{id}/two-factor", tag = "admin", operation_id = "admin_reset_two_factor",
    responses((status = 204), (status = 404, body = crate::error::ErrorBody)))]
pub async fn reset_two_factor(
    State(state): State<AppState>,
    client: ClientInfo,
    Admin(admin): Admin,
    Path(id): Path<String>,
) -> AppResult<StatusCode> {
    let uid = parse_id(&id, "user")?;
    users(&state)
        .reset_two_factor(&actor(&client, Some(&admin.user)), uid)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Serialize, Deserialize, ToSchema)]
pub struct SecuritySettings {
    /// Who must use two-factor sign-in: `optional`, `admins` or
    /// `everyone`. Those who must and have not set it up are sent to set-up
    /// after signing in and can do nothing else until done.
    pub two_factor: TwoFactorPolicy,
}

#[utoipa::path(get, path = "/api/admin/security", tag = "admin", operation_id = "admin_read_security",
    responses((status = 200, body = SecuritySettings)))]
pub async fn read_policy(
    State(state): State<AppState>,
    _admin: Admin,
) -> AppResult<Json<SecuritySettings>> {
    Ok(Json(SecuritySettings {
        two_factor: state.store.two_factor_policy().await?,
    }))
}

#[utoipa::path(put, path = "/api/admin/security", tag = "admin", operation_id = "admin_update_security",
    request_body = SecuritySettings,
    responses((status = 200, body = SecuritySettings)))]
pub async fn update_policy(
    State(state): State<AppState>,
    client: ClientInfo,
    Admin(admin): Admin,
    Json(req): Json<SecuritySettings>,
) -> AppResult<Json<SecuritySettings>> {
    state.store.set_two_factor_policy(req.two_factor).await?;
    state.two_factor_policy.set(req.two_factor);
    let note = serde_json::to_value(req.two_factor)
        .ok()
        .and_then(|v| v.as_str().map(|s| format!("two_factor={s}")));
    audit(
        &state,
        &client,
        Some(&admin.user),
        None,
        "admin.security",
        note,
        "ok",
    )
    .await;
    Ok(Json(req))
}
