//! Setup, registration, sign-in (cookie sessions and bearer tokens),
//! sessions and password changes.

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::{Json, created, parse_id};
use crate::auth::device::{self, DeviceId};
use crate::auth::{AuthVia, ClientInfo, CurrentUser, SESSION_COOKIE, tokens};
use crate::clock::{self, rfc3339};
use crate::config::RegistrationMode;
use crate::error::{AppError, AppResult};
use crate::limits::rate::note_decision;
use crate::state::AppState;
use crate::store::{Role, Session, StoreError, User, UserStatus};
use crate::users::login::LoginContext;
use crate::users::tokens::{TokenPair, Tokens};
use crate::users::{Actor, RegistrationRules, SignUp, UserError, Users};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/setup", get(setup_status).post(setup))
        .route("/server", get(server_info))
        .route("/auth/register", post(register))
        .route("/auth/login", post(login))
        .route("/auth/logout", post(logout))
        .route("/auth/me", get(me))
        .route("/auth/sessions", get(list_sessions))
        .route("/auth/sessions/{id}", delete(revoke_session))
        .route("/auth/sessions/revoke-others", post(revoke_other_sessions))
        .route("/auth/password", post(change_password))
        .route("/auth/token", post(token))
        .route("/auth/refresh", post(refresh))
}

#[derive(Serialize, ToSchema)]
pub struct UserView {
    pub id: String,
    pub username: String,
    pub email: Option<String>,
    /// The owner followed a link mailed to `email`; only a verified
    /// address receives password-reset mail.
    pub email_verified: bool,
    pub role: Role,
    pub status: UserStatus,
    pub created_at: String,
}

impl From<&User> for UserView {
    fn from(u: &User) -> Self {
        UserView {
            id: u.id.to_string(),
            username: u.username.clone(),
            email: u.email.clone(),
            email_verified: u.email_verified,
            role: u.role,
            status: u.status,
            created_at: rfc3339(u.created_at),
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct LoginResponse {
    pub user: UserView,
    /// Send as `X-CSRF-Token` on every unsafe request made with the cookie.
    pub csrf_token: Option<String>,
    /// The caller's second factor (on `/api/auth/me` and sign-in).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub two_factor: Option<TwoFactorState>,
}

#[derive(Serialize, ToSchema)]
pub struct TwoFactorState {
    pub enabled: bool,
    /// The admins' policy requires a second factor this user has not set
    /// up: until they do, a browser session reaches only `/api/auth/me`,
    /// `/api/auth/logout` and `/api/auth/two-factor/*`
    /// (`TWO_FACTOR_ENROLMENT_REQUIRED`).
    pub enrolment_required: bool,
}

/// The second factor state of `user`, for the sign-in answers.
pub(crate) async fn two_factor_state(state: &AppState, user: &User) -> AppResult<TwoFactorState> {
    let enabled = users(state).two_factor_enabled(user.id).await?;
    let policy = state.two_factor_policy.get(&state.store).await?;
    Ok(TwoFactorState {
        enabled,
        enrolment_required: !enabled && policy.requires(user.role),
    })
}

/// Writes an audit entry for an auth event. `actor_name` names an actor
/// that is not (or not yet) a user, such as the username a failed sign-in
/// tried.
pub(crate) async fn audit(
    state: &AppState,
    client: &ClientInfo,
    user: Option<&User>,
    actor_name: Option<&str>,
    action: &str,
    target: Option<String>,
    outcome: &str,
) {
    let mut who = actor(client, user);
    if who.name.is_none() {
        who.name = actor_name.map(|s| s.chars().take(64).collect());
    }
    state.audit(who.entry(action, target, outcome)).await;
}

/// The accounts service over this server's store, hasher and throttle.
pub(crate) fn users(state: &AppState) -> Users<'_> {
    Users {
        store: &state.store,
        hasher: &state.hasher,
        throttle: Some(&state.throttle),
    }
}

/// Who makes a request, for the audit log.
pub(crate) fn actor(client: &ClientInfo, user: Option<&User>) -> Actor {
    Actor {
        id: user.map(|u| u.id),
        name: user.map(|u| u.username.clone()),
        ip: Some(client.ip.to_string()),
        user_agent: client.user_agent.clone(),
    }
}

impl From<UserError> for AppError {
    fn from(e: UserError) -> Self {
        match e {
            UserError::Validation(m) | UserError::Rule(m) => AppError::Validation(m),
            UserError::Forbidden(m) => AppError::Forbidden(m),
            UserError::RegistrationClosed => AppError::RegistrationClosed,
            UserError::InvalidInvite(m) => AppError::InvalidInvite(m),
            UserError::UsernameExists => AppError::UsernameExists,
            UserError::NotFound(what) => AppError::not_found(what),
            UserError::WrongPassword => AppError::WrongPassword,
            UserError::Inactive => AppError::UserInactive,
            UserError::InvalidCredentials => AppError::InvalidCredentials,
            UserError::SessionExpired => AppError::SessionExpired,
            UserError::Throttled(secs) => throttled(secs),
            UserError::LocalPasswordsDisabled => AppError::LocalPasswordsDisabled,
            UserError::SsoRefused { code, message } => AppError::Sso { code, message },
            UserError::DirectoryUnavailable => {
                AppError::Unavailable("the sign-in directory cannot be reached".into())
            }
            UserError::TwoFactorRequired => AppError::TwoFactorRequired,
            UserError::InvalidCode => AppError::InvalidTwoFactorCode,
            UserError::ChallengeExpired => AppError::ChallengeExpired,
            UserError::InvalidLink(m) => AppError::InvalidLink(m),
            UserError::Conflict(m) => AppError::Conflict(m),
            UserError::MailNotConfigured => AppError::MailNotConfigured,
            UserError::Store(e) => e.into(),
        }
    }
}

fn throttled(secs: u64) -> AppError {
    AppError::RateLimited {
        message: format!("too many sign-in attempts; try again in {secs} s"),
        retry_after: secs,
    }
}

pub(crate) fn session_cookie(state: &AppState, token: &str, max_age_secs: i64) -> HeaderValue {
    let c = cookie::Cookie::build((SESSION_COOKIE, token.to_string()))
        .http_only(true)
        .same_site(cookie::SameSite::Lax)
        .path("/")
        .secure(state.cfg.secure_cookies())
        .max_age(time::Duration::seconds(max_age_secs))
        .build();
    HeaderValue::from_str(&c.to_string()).expect("cookie is a valid header")
}

/// Creates a browser session for `user`: its cookie and CSRF token.
pub(crate) async fn new_session(
    state: &AppState,
    user: &User,
    client: &ClientInfo,
) -> AppResult<(HeaderValue, String)> {
    let now = clock::now();
    let token = tokens::random_token();
    let lifetime = state.cfg.auth.session_absolute_hours as i64 * 3600;
    let session = Session {
        id: Uuid::now_v7(),
        user_id: user.id,
        created_at: now,
        last_seen: now,
        expires_at: now + lifetime,
        ip: Some(client.ip.to_string()),
        user_agent: client.user_agent.clone(),
        csrf_secret: tokens::random_token(),
    };
    let hash = tokens::hash_token(&token);
    state.store.put_session(&hash, &session).await?;
    Ok((session_cookie(state, &token, lifetime), session.csrf_secret))
}

/// Creates a browser session and answers with the cookie and `{user, csrf_token}`.
pub(crate) async fn start_session(
    state: &AppState,
    user: &User,
    client: &ClientInfo,
    status: StatusCode,
) -> AppResult<Response> {
    let (cookie, csrf) = new_session(state, user, client).await?;
    let two_factor = Some(two_factor_state(state, user).await?);
    let mut resp = (
        status,
        axum::Json(LoginResponse {
            user: user.into(),
            csrf_token: Some(csrf),
            two_factor,
        }),
    )
        .into_response();
    resp.headers_mut().insert(header::SET_COOKIE, cookie);
    Ok(resp)
}

#[derive(Serialize, ToSchema)]
pub struct SetupStatus {
    /// True while no account exists and the setup link is valid.
    pub required: bool,
}

#[utoipa::path(get, path = "/api/setup", tag = "auth", responses((status = 200, body = SetupStatus)))]
pub async fn setup_status(State(state): State<AppState>) -> Json<SetupStatus> {
    Json(SetupStatus {
        required: state.setup.pending(&state.store).await,
    })
}

#[derive(Deserialize, ToSchema)]
pub struct SetupRequest {
    pub token: String,
    pub username: String,
    pub password: String,
    #[serde(default)]
    pub email: Option<String>,
}

/// Creates the first admin with the one-time token printed at start-up, and
/// signs them in. The token stops working once used.
#[utoipa::path(post, path = "/api/setup", tag = "auth", request_body = SetupRequest,
    responses((status = 201, body = LoginResponse), (status = 403, body = crate::error::ErrorBody)))]
pub async fn setup(
    State(state): State<AppState>,
    client: ClientInfo,
    Json(req): Json<SetupRequest>,
) -> AppResult<Response> {
    let sign_up = SignUp {
        username: req.username,
        password: req.password,
        email: req.email,
    };
    let user = users(&state)
        .setup(&actor(&client, None), &state.setup, &req.token, sign_up)
        .await?;
    let mut resp = start_session(&state, &user, &client, StatusCode::CREATED).await?;
    remember_device(&state, &mut resp, user.id, None);
    Ok(resp)
}

#[derive(Serialize, ToSchema)]
pub struct ServerInfo {
    pub version: &'static str,
    pub registration: RegistrationMode,
    pub setup_required: bool,
    /// Whether users may send their own provider key (`X-Provider-Key`).
    pub allow_user_keys: bool,
    /// Whether the sign-in form accepts confab passwords (or a directory's,
    /// see `ldap`).
    pub local_passwords: bool,
    /// Whether the sign-in form checks passwords against an LDAP directory.
    pub ldap: bool,
    /// The single sign-on providers, one sign-in button each.
    pub sso: Vec<SsoProviderView>,
    /// Whether people can ask for a password-reset mail (`[smtp]` is
    /// configured).
    pub password_reset_email: bool,
}

#[derive(Serialize, ToSchema)]
pub struct SsoProviderView {
    pub name: String,
    pub display_name: String,
    /// Where the button goes (a browser navigation, not a fetch).
    pub start_url: String,
}

#[utoipa::path(get, path = "/api/server", tag = "auth", responses((status = 200, body = ServerInfo)))]
pub async fn server_info(State(state): State<AppState>) -> Json<ServerInfo> {
    Json(ServerInfo {
        version: crate::VERSION,
        registration: state.settings().registration,
        setup_required: state.setup.pending(&state.store).await,
        allow_user_keys: state.settings().allow_user_keys,
        local_passwords: state.sso.local_passwords,
        ldap: state.sso.ldap.is_some(),
        sso: state
            .sso
            .providers
            .iter()
            .map(|p| SsoProviderView {
                name: p.cfg.name.clone(),
                display_name: p.display_name(),
                start_url: format!("/api/auth/oidc/{}/start", p.cfg.name),
            })
            .collect(),
        password_reset_email: state.mailer.is_some(),
    })
}

#[derive(Deserialize, ToSchema)]
pub struct RegisterRequest {
    pub username: String,
    #[serde(default)]
    pub email: Option<String>,
    pub password: String,
    #[serde(default)]
    pub invite_code: Option<String>,
}

#[utoipa::path(post, path = "/api/auth/register", tag = "auth", request_body = RegisterRequest,
    responses((status = 201, body = UserView), (status = 409, body = crate::error::ErrorBody),
    (status = 403, description = "INVALID_INVITE or REGISTRATION_CLOSED", body = crate::error::ErrorBody)))]
pub async fn register(
    State(state): State<AppState>,
    client: ClientInfo,
    Json(req): Json<RegisterRequest>,
) -> AppResult<Response> {
    if !state.sso.local_passwords {
        let e = AppError::LocalPasswordsDisabled;
        let name = req.username.as_str();
        audit(
            &state,
            &client,
            None,
            Some(name),
            "register",
            None,
            e.code(),
        )
        .await;
        return Err(e);
    }
    let rules = RegistrationRules {
        mode: state.settings().registration,
        setup_pending: state.setup.pending(&state.store).await,
    };
    let invite = req
        .invite_code
        .as_deref()
        .map(str::trim)
        .filter(|c| !c.is_empty());
    let name = req.username.clone();
    let sign_up = SignUp {
        username: req.username,
        password: req.password,
        email: req.email,
    };
    match users(&state).register(rules, sign_up, invite).await {
        Ok(user) => {
            let target = invite.map(|_| "invite".to_string());
            audit(&state, &client, Some(&user), None, "register", target, "ok").await;
            Ok(created(UserView::from(&user)))
        }
        Err(e) => {
            let e = AppError::from(e);
            audit(
                &state,
                &client,
                None,
                Some(&name),
                "register",
                None,
                e.code(),
            )
            .await;
            Err(e)
        }
    }
}

#[derive(Deserialize, ToSchema)]
pub struct Credentials {
    pub username: String,
    pub password: String,
    /// `/api/auth/token` only: the current code from the authenticator app
    /// (or a recovery code), required when the account uses two-factor
    /// sign-in (`TWO_FACTOR_REQUIRED` without it).
    #[serde(default)]
    pub totp_code: Option<String>,
}

/// The password was right and the account uses two-factor sign-in: send
/// the code with this challenge to `/api/auth/login/two-factor`.
#[derive(Serialize, ToSchema)]
pub struct ChallengeResponse {
    pub two_factor_required: bool,
    /// Single use; valid for `expires_in` seconds and a few wrong codes.
    pub challenge: String,
    pub expires_in: i64,
}

/// Checks credentials with throttling and audit; the common part of login
/// and token. Returns the user and, when the request came from a known
/// device of theirs, that device (see `auth::throttle` for the budgets).
pub(crate) async fn check_credentials(
    state: &AppState,
    client: &ClientInfo,
    headers: &HeaderMap,
    creds: &Credentials,
    action: &str,
) -> AppResult<(User, Option<DeviceId>)> {
    let t = &state.throttle;
    let device = |user| {
        t.devices
            .from_headers(headers, user, crate::clock::now(), t.device_max_age)
    };
    let cx = LoginContext {
        per_ip: &state.limits.rate.auth,
        ip: client.ip,
        device: &device,
        note: &note_decision,
        directory: state
            .sso
            .ldap
            .as_deref()
            .map(|d| d as &dyn crate::users::login::PasswordDirectory),
        local_passwords: state.sso.local_passwords,
    };
    let res = users(state)
        .check_credentials(
            &actor(client, None),
            cx,
            &creds.username,
            &creds.password,
            action,
        )
        .await;
    if let Err(UserError::Throttled(_)) = &res {
        state.limits.metrics.rate_limited("auth");
    }
    Ok(res?)
}

/// Makes (or keeps) this browser a known device of `user`: a fresh cookie,
/// with the device id it had if it had one.
pub(crate) fn remember_device(
    state: &AppState,
    resp: &mut Response,
    user: Uuid,
    device: Option<DeviceId>,
) {
    let device = device.unwrap_or_else(device::new_device_id);
    let value = state.throttle.devices.issue(user, &device, clock::now());
    let c = cookie::Cookie::build((device::cookie_name(user), value))
        .http_only(true)
        .same_site(cookie::SameSite::Strict)
        .path(device::COOKIE_PATH)
        .secure(state.cfg.secure_cookies())
        .max_age(time::Duration::seconds(state.throttle.device_max_age))
        .build();
    resp.headers_mut().append(
        header::SET_COOKIE,
        HeaderValue::from_str(&c.to_string()).expect("cookie is a valid header"),
    );
}

#[utoipa::path(post, path = "/api/auth/login", tag = "auth", request_body = Credentials,
    responses((status = 200, description = "Sets the confab_session cookie, and the confab_device_<user id> cookie that makes this browser a known device of the account", body = LoginResponse),
    (status = 202, description = "The password is right and the account uses two-factor sign-in: finish with the challenge at /api/auth/login/two-factor (no session yet)", body = ChallengeResponse),
    (status = 401, body = crate::error::ErrorBody), (status = 429, body = crate::error::ErrorBody)))]
pub async fn login(
    State(state): State<AppState>,
    client: ClientInfo,
    headers: HeaderMap,
    Json(creds): Json<Credentials>,
) -> AppResult<Response> {
    let (user, device) = check_credentials(&state, &client, &headers, &creds, "login").await?;
    if users(&state).two_factor_enabled(user.id).await? {
        let challenge = users(&state).start_challenge(&user, "login").await?;
        audit(
            &state,
            &client,
            Some(&user),
            None,
            "login",
            None,
            "TWO_FACTOR_PENDING",
        )
        .await;
        return Ok((
            StatusCode::ACCEPTED,
            axum::Json(ChallengeResponse {
                two_factor_required: true,
                challenge,
                expires_in: crate::users::twofactor::CHALLENGE_SECS,
            }),
        )
            .into_response());
    }
    let mut resp = start_session(&state, &user, &client, StatusCode::OK).await?;
    remember_device(&state, &mut resp, user.id, device);
    audit(&state, &client, Some(&user), None, "login", None, "ok").await;
    Ok(resp)
}

#[utoipa::path(post, path = "/api/auth/logout", tag = "auth", responses((status = 204)))]
pub async fn logout(
    State(state): State<AppState>,
    client: ClientInfo,
    user: CurrentUser,
) -> AppResult<Response> {
    if let Some(sid) = user.session_id() {
        let uid = user.id();
        match state.store.delete_session(uid, sid).await {
            Ok(()) | Err(StoreError::NotFound) => {}
            Err(e) => return Err(e.into()),
        }
    }
    audit(
        &state,
        &client,
        Some(&user.user),
        None,
        "logout",
        None,
        "ok",
    )
    .await;
    let mut resp = StatusCode::NO_CONTENT.into_response();
    resp.headers_mut()
        .insert(header::SET_COOKIE, session_cookie(&state, "", 0));
    Ok(resp)
}

#[utoipa::path(get, path = "/api/auth/me", tag = "auth", responses((status = 200, body = LoginResponse)))]
pub async fn me(
    State(state): State<AppState>,
    user: CurrentUser,
) -> AppResult<Json<LoginResponse>> {
    let csrf_token = match &user.via {
        AuthVia::Session { csrf, .. } => Some(csrf.clone()),
        _ => None,
    };
    Ok(Json(LoginResponse {
        user: (&user.user).into(),
        csrf_token,
        two_factor: Some(two_factor_state(&state, &user.user).await?),
    }))
}

#[derive(Serialize, ToSchema)]
pub struct SessionView {
    pub id: String,
    pub created_at: String,
    pub last_seen: String,
    pub expires_at: String,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    /// True for the session making this request.
    pub current: bool,
}

#[derive(Serialize, ToSchema)]
pub struct SessionList {
    pub items: Vec<SessionView>,
    pub next_cursor: Option<String>,
}

#[utoipa::path(get, path = "/api/auth/sessions", tag = "auth", responses((status = 200, body = SessionList)))]
pub async fn list_sessions(
    State(state): State<AppState>,
    user: CurrentUser,
) -> AppResult<Json<SessionList>> {
    let current = user.session_id();
    let mut items: Vec<SessionView> = state
        .store
        .list_sessions(user.id())
        .await?
        .into_iter()
        .filter(|s| {
            let now = clock::now();
            let idle = state.cfg.auth.session_idle_hours as i64 * 3600;
            s.expires_at > now && s.last_seen + idle > now
        })
        .map(|s| SessionView {
            id: s.id.to_string(),
            created_at: rfc3339(s.created_at),
            last_seen: rfc3339(s.last_seen),
            expires_at: rfc3339(s.expires_at),
            ip: s.ip,
            user_agent: s.user_agent,
            current: Some(s.id) == current,
        })
        .collect();
    items.reverse();
    Ok(Json(SessionList {
        items,
        next_cursor: None,
    }))
}

#[utoipa::path(delete, path = "/api/auth/sessions/{id}", tag = "auth",
    responses((status = 204), (status = 404, body = crate::error::ErrorBody)))]
pub async fn revoke_session(
    State(state): State<AppState>,
    client: ClientInfo,
    user: CurrentUser,
    Path(id): Path<String>,
) -> AppResult<StatusCode> {
    let sid = parse_id(&id, "session")?;
    let uid = user.id();
    let res = state.store.delete_session(uid, sid).await;
    let outcome = match &res {
        Ok(()) => "ok",
        Err(StoreError::NotFound) => "NOT_FOUND",
        Err(_) => "INTERNAL",
    };
    audit(
        &state,
        &client,
        Some(&user.user),
        None,
        "session.revoke",
        Some(id),
        outcome,
    )
    .await;
    match res {
        Ok(()) => Ok(StatusCode::NO_CONTENT),
        Err(StoreError::NotFound) => Err(AppError::not_found("session")),
        Err(e) => Err(e.into()),
    }
}

#[derive(Serialize, ToSchema)]
pub struct RevokedCount {
    pub revoked: usize,
}

#[utoipa::path(post, path = "/api/auth/sessions/revoke-others", tag = "auth",
    responses((status = 200, body = RevokedCount)))]
pub async fn revoke_other_sessions(
    State(state): State<AppState>,
    client: ClientInfo,
    user: CurrentUser,
) -> AppResult<Json<RevokedCount>> {
    let uid = user.id();
    let keep = user.session_id();
    let n = state.store.delete_sessions_except(uid, keep).await?;
    audit(
        &state,
        &client,
        Some(&user.user),
        None,
        "session.revoke_others",
        Some(n.to_string()),
        "ok",
    )
    .await;
    Ok(Json(RevokedCount { revoked: n }))
}

#[derive(Deserialize, ToSchema)]
pub struct PasswordChange {
    pub current_password: String,
    pub new_password: String,
}

#[derive(Serialize, ToSchema)]
pub struct PasswordChanged {
    /// What the change ended: the caller's other sessions and every API key.
    pub revoked: crate::store::Revoked,
}

/// Changes the caller's password and signs out every other session, every
/// refresh token and every API key of the caller (issue 13: a password
/// change often means the account may have been compromised).
#[utoipa::path(post, path = "/api/auth/password", tag = "auth", request_body = PasswordChange,
    responses((status = 200, body = PasswordChanged), (status = 401, body = crate::error::ErrorBody),
    (status = 403, description = "WRONG_PASSWORD: the current password is not correct", body = crate::error::ErrorBody),
    (status = 429, body = crate::error::ErrorBody)))]
pub async fn change_password(
    State(state): State<AppState>,
    client: ClientInfo,
    user: CurrentUser,
    Json(req): Json<PasswordChange>,
) -> AppResult<Json<PasswordChanged>> {
    let revoked = users(&state)
        .change_password(
            &actor(&client, Some(&user.user)),
            &user.user,
            user.session_id(),
            req.current_password,
            req.new_password,
        )
        .await?;
    Ok(Json(PasswordChanged { revoked }))
}

#[derive(Serialize, ToSchema)]
pub struct TokenResponse {
    pub access_token: String,
    pub refresh_token: String,
    pub token_type: &'static str,
    /// Seconds until the access token expires.
    pub expires_in: i64,
}

/// The token service over this server's store, keys and lifetimes.
fn token_service(state: &AppState) -> Tokens<'_> {
    Tokens {
        store: &state.store,
        jwt: &state.jwt,
        access_ttl_secs: state.cfg.auth.access_token_minutes as i64 * 60,
        refresh_ttl_secs: state.cfg.auth.refresh_token_days as i64 * 86400,
    }
}

impl From<TokenPair> for TokenResponse {
    fn from(t: TokenPair) -> Self {
        TokenResponse {
            access_token: t.access_token,
            refresh_token: t.refresh_token,
            token_type: "bearer",
            expires_in: t.expires_in,
        }
    }
}

/// For programs: a short-lived JWT access token plus a rotating refresh
/// token. An account with two-factor sign-in also sends `totp_code`.
#[utoipa::path(post, path = "/api/auth/token", tag = "auth", request_body = Credentials,
    responses((status = 200, description = "Also sets the device cookie, as login does", body = TokenResponse),
    (status = 401, description = "INVALID_CREDENTIALS; TWO_FACTOR_REQUIRED (no totp_code) or INVALID_TWO_FACTOR_CODE", body = crate::error::ErrorBody), (status = 429, body = crate::error::ErrorBody)))]
pub async fn token(
    State(state): State<AppState>,
    client: ClientInfo,
    headers: HeaderMap,
    Json(creds): Json<Credentials>,
) -> AppResult<Response> {
    let (user, device) = check_credentials(&state, &client, &headers, &creds, "token").await?;
    if users(&state).two_factor_enabled(user.id).await? {
        let Some(code) = creds.totp_code.as_deref().filter(|c| !c.trim().is_empty()) else {
            audit(
                &state,
                &client,
                Some(&user),
                None,
                "token",
                None,
                "TWO_FACTOR_REQUIRED",
            )
            .await;
            return Err(AppError::TwoFactorRequired);
        };
        let who = actor(&client, Some(&user));
        users(&state)
            .check_second_factor(&who, &user, code, "token.2fa")
            .await?;
    }
    let t = token_service(&state)
        .issue(user.id, Some(Uuid::now_v7()))
        .await?;
    audit(&state, &client, Some(&user), None, "token", None, "ok").await;
    let mut resp = axum::Json(TokenResponse::from(t)).into_response();
    remember_device(&state, &mut resp, user.id, device);
    Ok(resp)
}

#[derive(Deserialize, ToSchema)]
pub struct RefreshRequest {
    pub refresh_token: String,
}

/// Spends a refresh token for a new pair. Presenting a spent token revokes
/// every token descended from the same sign-in.
#[utoipa::path(post, path = "/api/auth/refresh", tag = "auth", request_body = RefreshRequest,
    responses((status = 200, body = TokenResponse), (status = 401, body = crate::error::ErrorBody)))]
pub async fn refresh(
    State(state): State<AppState>,
    client: ClientInfo,
    Json(req): Json<RefreshRequest>,
) -> AppResult<Json<TokenResponse>> {
    let t = token_service(&state)
        .refresh(&actor(&client, None), &req.refresh_token)
        .await?;
    Ok(Json(t.into()))
}
