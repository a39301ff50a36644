//! Single sign-on: the OpenID Connect redirects (start, callback, link)
//! and the signed-in user's linked identities. The rules are in `sso`.

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::auth::{actor, new_session};
use super::{Json, Query, parse_id};
use crate::auth::{ClientInfo, CurrentUser};
use crate::clock::rfc3339;
use crate::error::{AppError, AppResult};
use crate::sso::{self, SsoError};
use crate::state::AppState;

/// Binds a sign-in under way to the browser that started it: the callback
/// is refused unless this cookie carries its `state`.
const STATE_COOKIE: &str = "confab_sso";
const STATE_COOKIE_PATH: &str = "/api/auth/oidc/";

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/auth/oidc/{name}/start", get(oidc_start))
        .route("/auth/oidc/{name}/callback", get(oidc_callback))
        .route("/auth/oidc/{name}/link", post(oidc_link))
        .route("/auth/identities", get(list_identities))
        .route("/auth/identities/{id}", delete(unlink_identity))
}

impl From<SsoError> for AppError {
    fn from(e: SsoError) -> Self {
        match e {
            SsoError::Store(e) => e.into(),
            SsoError::IdentityNotFound => AppError::not_found("identity"),
            SsoError::Inactive => AppError::UserInactive,
            other => AppError::Sso {
                code: other.code(),
                message: other.to_string(),
            },
        }
    }
}

fn state_cookie(state: &AppState, value: &str, max_age: i64) -> HeaderValue {
    let c = cookie::Cookie::build((STATE_COOKIE, value.to_string()))
        .http_only(true)
        .same_site(cookie::SameSite::Lax)
        .path(STATE_COOKIE_PATH)
        .secure(state.cfg.secure_cookies())
        .max_age(time::Duration::seconds(max_age))
        .build();
    HeaderValue::from_str(&c.to_string()).expect("cookie is a valid header")
}

/// The `state` this browser's cookie binds.
fn bound_state(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(cookie::Cookie::split_parse)
        .filter_map(Result::ok)
        .find(|c| c.name() == STATE_COOKIE)
        .map(|c| c.value().to_string())
}

fn see_other(to: &str) -> Response {
    let mut r = StatusCode::SEE_OTHER.into_response();
    r.headers_mut().insert(
        header::LOCATION,
        HeaderValue::from_str(to).expect("a path is a valid header"),
    );
    r
}

/// Sends the browser to the provider to sign in.
#[utoipa::path(get, path = "/api/auth/oidc/{name}/start", tag = "sso",
    operation_id = "oidc_start",
    params(("name" = String, Path, description = "The provider's configured name")),
    responses((status = 303, description = "To the provider's sign-in page; sets the confab_sso cookie"),
    (status = 404, body = crate::error::ErrorBody), (status = 502, body = crate::error::ErrorBody)))]
pub async fn oidc_start(
    State(state): State<AppState>,
    client: ClientInfo,
    Path(name): Path<String>,
) -> Response {
    let begun = match state.sso.provider(&name) {
        Ok(p) => p.begin(&state.store, None).await,
        Err(e) => Err(e),
    };
    match begun {
        Ok(b) => {
            let mut r = see_other(&b.redirect_url);
            r.headers_mut().insert(
                header::SET_COOKIE,
                state_cookie(&state, &b.state, sso::oidc::STATE_TTL_SECS),
            );
            r
        }
        Err(e) => {
            let who = actor(&client, None);
            sso::audit_refusal(&state.store, &who, "sso.login", Some(name), &e).await;
            see_other(&format!("/login?sso_error={}", e.code()))
        }
    }
}

#[derive(Deserialize, ToSchema)]
pub struct CallbackQuery {
    pub code: Option<String>,
    pub state: Option<String>,
    /// Set by the provider when it refused (e.g. `access_denied`).
    pub error: Option<String>,
    /// The provider's issuer (RFC 9207), checked when sent.
    pub iss: Option<String>,
}

/// Where the provider sends the browser back: checks everything, then
/// signs in (a session cookie, as the password form does) or links the
/// identity, and sends the browser on into the app. A refusal goes to the
/// sign-in page (or settings) with `sso_error=CODE`.
#[utoipa::path(get, path = "/api/auth/oidc/{name}/callback", tag = "sso",
    operation_id = "oidc_callback",
    params(("name" = String, Path, description = "The provider's configured name"),
        ("code" = Option<String>, Query), ("state" = Option<String>, Query), ("error" = Option<String>, Query),
        ("iss" = Option<String>, Query)),
    responses((status = 303, description = "Signed in (sets confab_session) to /, or refused to /login?sso_error=CODE")))]
pub async fn oidc_callback(
    State(state): State<AppState>,
    client: ClientInfo,
    headers: HeaderMap,
    Path(name): Path<String>,
    Query(q): Query<CallbackQuery>,
) -> Response {
    let who = actor(&client, None);
    let bound = bound_state(&headers);
    let res = callback(&state, &client, &name, &q, bound.as_deref()).await;
    let mut resp = match res {
        Ok((to, cookie)) => {
            let mut r = see_other(&to);
            if let Some(c) = cookie {
                r.headers_mut().append(header::SET_COOKIE, c);
            }
            r
        }
        Err((e, linking)) => {
            let target = Some(name.chars().take(64).collect());
            sso::audit_refusal(&state.store, &who, "sso.login", target, &e).await;
            let page = if linking {
                "/settings/account"
            } else {
                "/login"
            };
            see_other(&format!("{page}?sso_error={}", e.code()))
        }
    };
    resp.headers_mut()
        .append(header::SET_COOKIE, state_cookie(&state, "", 0));
    resp
}

/// The callback's work: the page to go to and the session cookie, or the
/// refusal (and whether it was a link from settings).
async fn callback(
    state: &AppState,
    client: &ClientInfo,
    name: &str,
    q: &CallbackQuery,
    bound: Option<&str>,
) -> Result<(String, Option<HeaderValue>), (SsoError, bool)> {
    let provider = state.sso.provider(name).map_err(|e| (e, false))?;
    let st = q.state.as_deref().unwrap_or("");
    if st.is_empty() || bound != Some(st) {
        return Err((SsoError::StateInvalid, false));
    }
    if let Some(err) = &q.error {
        // Spend the state so it cannot be tried again.
        let _ = state
            .store
            .take_sso_state(&crate::auth::tokens::hash_token(st), crate::clock::now())
            .await;
        let err: String = err
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
            .take(64)
            .collect();
        return Err((SsoError::ProviderRefused(err), false));
    }
    let code = q.code.as_deref().unwrap_or("");
    let done = provider
        .finish(&state.store, st, code, q.iss.as_deref())
        .await
        .map_err(|e| (e, false))?;
    let linking = done.link_user.is_some();
    let who = actor(client, None);
    let user = sso::resolve_account(
        &state.store,
        &who,
        &done.identity,
        provider.rules(),
        done.link_user,
    )
    .await
    .map_err(|e| (e, linking))?;
    if linking {
        return Ok(("/settings/account?linked=1".into(), None));
    }
    let (cookie, _csrf) = new_session(state, &user, client)
        .await
        .map_err(|e| (SsoError::ProviderUnavailable(e.public_message()), false))?;
    let me = actor(client, Some(&user));
    state
        .audit(me.entry("sso.login", Some(sso::describe(&done.identity)), "ok"))
        .await;
    Ok(("/".into(), Some(cookie)))
}

#[derive(Serialize, ToSchema)]
pub struct LinkStart {
    /// Navigate the browser here; it comes back to settings.
    pub redirect_url: String,
}

/// Starts linking another identity of this provider to the signed-in
/// account (from settings).
#[utoipa::path(post, path = "/api/auth/oidc/{name}/link", tag = "sso",
    operation_id = "oidc_link",
    params(("name" = String, Path, description = "The provider's configured name")),
    responses((status = 200, description = "Sets the confab_sso cookie", body = LinkStart),
    (status = 404, body = crate::error::ErrorBody)))]
pub async fn oidc_link(
    State(state): State<AppState>,
    user: CurrentUser,
    Path(name): Path<String>,
) -> AppResult<Response> {
    if user.session_id().is_none() {
        return Err(AppError::Forbidden(
            "identities are linked from a browser session".into(),
        ));
    }
    let p = state.sso.provider(&name)?;
    let b = p.begin(&state.store, Some(user.id())).await?;
    let mut r = axum::Json(LinkStart {
        redirect_url: b.redirect_url,
    })
    .into_response();
    r.headers_mut().insert(
        header::SET_COOKIE,
        state_cookie(&state, &b.state, sso::oidc::STATE_TTL_SECS),
    );
    Ok(r)
}

#[derive(Serialize, ToSchema)]
pub struct IdentityView {
    pub id: String,
    /// The configured provider's name (`ldap` for the directory).
    pub provider: String,
    pub provider_display_name: String,
    pub email: Option<String>,
    pub created_at: String,
}

#[derive(Serialize, ToSchema)]
pub struct IdentityList {
    pub identities: Vec<IdentityView>,
    /// Whether the account has a confab password it may sign in with.
    pub has_password: bool,
}

#[utoipa::path(get, path = "/api/auth/identities", tag = "sso",
    operation_id = "list_identities",
    responses((status = 200, body = IdentityList)))]
pub async fn list_identities(
    State(state): State<AppState>,
    user: CurrentUser,
) -> AppResult<Json<IdentityList>> {
    let links = state.store.list_identities(user.id()).await?;
    Ok(Json(IdentityList {
        identities: links
            .into_iter()
            .map(|l| IdentityView {
                id: l.id.to_string(),
                provider_display_name: state
                    .sso
                    .display_name(&l.provider)
                    .unwrap_or_else(|| l.provider.clone()),
                provider: l.provider,
                email: l.email,
                created_at: rfc3339(l.created_at),
            })
            .collect(),
        has_password: state.sso.local_passwords && !user.user.password_hash.is_empty(),
    }))
}

/// Unlinks one identity; refused (409 `SSO_LAST_SIGN_IN`) when it is the
/// account's last way to sign in.
#[utoipa::path(delete, path = "/api/auth/identities/{id}", tag = "sso",
    operation_id = "unlink_identity",
    params(("id" = String, Path)),
    responses((status = 204), (status = 404, body = crate::error::ErrorBody),
    (status = 409, body = crate::error::ErrorBody)))]
pub async fn unlink_identity(
    State(state): State<AppState>,
    client: ClientInfo,
    user: CurrentUser,
    Path(id): Path<String>,
) -> AppResult<StatusCode> {
    let id = parse_id(&id, "identity")?;
    let who = actor(&client, Some(&user.user));
    sso::unlink(&state.store, &state.sso, &who, &user.user, id).await?;
    Ok(StatusCode::NO_CONTENT)
}
