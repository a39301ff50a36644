//! Users' own provider keys (validating one before the browser keeps it)
//! and closing temporary chats.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use std::sync::LazyLock;
use utoipa::ToSchema;
use uuid::Uuid;

use super::Json;
use crate::auth::CurrentUser;
use crate::error::{AppError, AppResult};
use crate::limits::rate::Limiter;
use crate::providers::{ProviderError, ProviderKind};
use crate::state::AppState;

/// Validations per user: each one is a request to a provider, made with a
/// key that may be anyone's, so guessing keys through confab stays slow.
pub const VALIDATIONS_PER_MINUTE: u32 = 6;
const VALIDATION_BURST: u32 = 5;

/// Keyed by user id, which no two servers share, so one limiter serves
/// every server in the process.
static VALIDATIONS: LazyLock<Limiter<Uuid>> =
    LazyLock::new(|| Limiter::per_minute(VALIDATIONS_PER_MINUTE, VALIDATION_BURST, 100_000));

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ValidateKey {
    /// `openai` or `anthropic`: the kind of provider the key is for.
    pub kind: String,
    /// The key. Used for this one check and never stored or logged.
    pub key: String,
}

#[derive(Serialize, ToSchema)]
pub struct KeyCheck {
    /// True when the provider accepted the key.
    pub valid: bool,
    pub kind: String,
    /// The provider that was asked.
    pub provider: String,
    /// How many models the key may use (when valid).
    pub models: Option<usize>,
    /// Why the key is not valid, in words for the user.
    pub message: Option<String>,
}

/// Checks a user's own key with a cheap authenticated call (the model list)
/// on the first enabled provider of its kind that accepts users' keys.
/// `valid: false` when the provider refused the key; other failures (the
/// provider down, slow, rate limiting) are errors, as they say nothing of
/// the key.
#[utoipa::path(post, path = "/api/chat/validate-key", tag = "chat", request_body = ValidateKey,
    responses((status = 200, body = KeyCheck, description = "The provider's verdict on the key"),
    (status = 403, description = "`FORBIDDEN`: the server does not accept users' own keys", body = crate::error::ErrorBody),
    (status = 404, description = "`NOT_FOUND`: no provider of that kind accepts users' keys", body = crate::error::ErrorBody),
    (status = 400, description = "`VALIDATION_FAILED`: an unknown kind or an empty key", body = crate::error::ErrorBody),
    (status = 429, description = "`RATE_LIMITED`: six checks a minute per user (bursts of five)", body = crate::error::ErrorBody),
    (status = 502, description = "`PROVIDER_UNREACHABLE` or `PROVIDER_ERROR`", body = crate::error::ErrorBody),
    (status = 504, description = "`PROVIDER_TIMEOUT`", body = crate::error::ErrorBody)))]
pub async fn validate_key(
    State(state): State<AppState>,
    user: CurrentUser,
    Json(body): Json<ValidateKey>,
) -> AppResult<Json<KeyCheck>> {
    let (kind, key) = well_formed(&state, &body)?;
    let d = VALIDATIONS.check_local(&user.id());
    if !d.allowed {
        return Err(AppError::RateLimited {
            message: "too many key checks; try again shortly".into(),
            retry_after: d.reset_secs.max(1),
        });
    }
    let Some((name, provider)) = provider_for(&state, kind) else {
        return Err(AppError::not_found(&format!(
            "{kind} provider that accepts users' keys"
        )));
    };
    let verdict = provider.check_key(key).await;
    tracing::info!(provider = %name, valid = verdict.is_ok(), "own key checked");
    match verdict {
        Ok(n) => Ok(Json(KeyCheck {
            valid: true,
            kind: kind.to_string(),
            provider: name,
            models: Some(n),
            message: None,
        })),
        Err(ProviderError::KeyRejected(_)) => Ok(Json(KeyCheck {
            valid: false,
            kind: kind.to_string(),
            provider: name.clone(),
            models: None,
            message: Some(format!("{name} refused this key")),
        })),
        Err(e) => Err(e.into()),
    }
}

/// The kind and the trimmed key of a check request, refused when this
/// server takes no own keys or the key cannot be one.
fn well_formed<'a>(state: &AppState, body: &'a ValidateKey) -> AppResult<(ProviderKind, &'a str)> {
    if !state.settings().allow_user_keys {
        return Err(AppError::Forbidden(
            "this server does not accept users' own provider keys".into(),
        ));
    }
    let kind: ProviderKind = body.kind.parse().map_err(AppError::Validation)?;
    if kind == ProviderKind::Ollama {
        return Err(AppError::validation(
            "own keys are for openai or anthropic providers",
        ));
    }
    let key = body.key.trim();
    if key.is_empty() || key.len() > 500 || key.chars().any(char::is_control) {
        return Err(AppError::validation(
            "key must be 1 to 500 characters without control characters",
        ));
    }
    Ok((kind, key))
}

/// The first enabled provider of `kind` that accepts users' keys.
fn provider_for(
    state: &AppState,
    kind: ProviderKind,
) -> Option<(String, std::sync::Arc<dyn crate::providers::Provider>)> {
    state
        .providers
        .list()
        .into_iter()
        .find(|p| p.kind == kind && p.enabled && p.allow_user_keys)
        .and_then(|p| state.providers.get(&p.name).map(|prov| (p.name, prov)))
}

/// Closes a temporary chat: its messages are forgotten at once, and an
/// answer still running is stopped.
#[utoipa::path(delete, path = "/api/chat/temporary/{id}", tag = "chat",
    params(("id" = String, Path, description = "The temporary chat's conversation id")),
    responses((status = 204), (status = 404, description = "`CONVERSATION_NOT_FOUND`: no such temporary chat of the caller (closed, expired, or another user's)", body = crate::error::ErrorBody)))]
pub async fn discard_temporary(
    State(state): State<AppState>,
    user: CurrentUser,
    Path(id): Path<String>,
) -> AppResult<StatusCode> {
    let id = Uuid::parse_str(&id).map_err(|_| AppError::ConversationNotFound)?;
    let temp = &state.generations.temporary;
    if !temp.contains(user.id(), id) {
        return Err(AppError::ConversationNotFound);
    }
    state.generations.stop_conversation(id);
    temp.discard(user.id(), id);
    Ok(StatusCode::NO_CONTENT)
}
