//! `/v1`: the OpenAI- and Anthropic-compatible front end on the chat
//! domain. Handlers parse the API's own request shape into a
//! `ChatRequest`, call the stateless completion service
//! (`chat::complete`), and write the API's own response shape, streamed or
//! not. Authentication takes a confab API key only (`Authorization:
//! Bearer cfk_…` or `x-api-key`), never a browser session, so there is no
//! CSRF surface; every error is in the API's shape ([`errors`]).

pub mod anthropic;
pub mod errors;
pub mod openai;

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{OriginalUri, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use futures::Stream;
use serde_json::{Map, Value};
use std::convert::Infallible;
use std::time::Duration;

use crate::auth::{ClientInfo, Credential, CurrentUser, SESSION_COOKIE, tokens};
use crate::chat::complete::Caller;
use crate::chat::turn::ChatService;
use crate::state::AppState;
use errors::{Api, V1Error};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/models", get(models))
        .route("/v1/models/{*id}", get(model))
        .route("/v1/chat/completions", post(openai::chat_completions))
        .route("/v1/embeddings", post(openai::embeddings))
        .route("/v1/messages", post(anthropic::messages))
        .route("/v1", any(not_found))
        .route("/v1/", any(not_found))
        .route("/v1/{*rest}", any(not_found))
}

/// Any other path under `/v1`: a JSON 404 in the API's shape, never the
/// browser app.
async fn not_found(method: Method, uri: OriginalUri, headers: HeaderMap) -> V1Error {
    let path = uri.0.path().to_string();
    let api = Api::of(&path, &headers);
    V1Error::no_endpoint(api, method.as_str(), &path)
}

/// An authenticated `/v1` caller.
pub struct V1User {
    pub user: CurrentUser,
    pub caller: Caller,
}

/// The API key a request carries: `Authorization: Bearer …` first, else
/// `x-api-key` (header names are case-insensitive, so this is also
/// `X-API-Key`).
fn presented_key(headers: &HeaderMap) -> Option<String> {
    if let Some(v) = headers.get(header::AUTHORIZATION) {
        let v = v.to_str().ok()?;
        let (scheme, token) = v.split_once(' ')?;
        return scheme
            .eq_ignore_ascii_case("bearer")
            .then(|| token.trim().to_string());
    }
    headers
        .get("x-api-key")
        .and_then(|v| v.to_str().ok())
        .map(|s| s.trim().to_string())
}

/// Checks the API key for `scope` (`read` to list models, `write` to
/// generate) and counts the request against the user's API rate limit.
pub async fn authenticate(
    state: &AppState,
    api: Api,
    headers: &HeaderMap,
    client: &ClientInfo,
    scope: &str,
) -> Result<V1User, V1Error> {
    let Some(key) = presented_key(headers).filter(|k| !k.is_empty()) else {
        let has_session = headers
            .get_all(header::COOKIE)
            .iter()
            .any(|v| v.to_str().is_ok_and(|s| s.contains(SESSION_COOKIE)));
        let message = if has_session {
            "browser sessions are not accepted on /v1: send a confab API key (cfk_…) as `Authorization: Bearer` or `x-api-key`"
        } else {
            "no API key: send a confab API key (cfk_…) as `Authorization: Bearer` or `x-api-key`"
        };
        return Err(V1Error::unauthenticated(api, message));
    };
    if !key.starts_with(tokens::API_KEY_PREFIX) {
        return Err(V1Error::unauthenticated(
            api,
            "Incorrect API key provided: /v1 takes a confab API key (cfk_…), made under Settings → API keys or with POST /api/keys",
        ));
    }
    let cred = Credential::ApiKey(tokens::hash_token(&key));
    let user = state
        .verifier()
        .verify(&cred, scope)
        .await
        .map_err(|e| V1Error::from_app(api, e))?;
    state
        .limits
        .check_api(user.id())
        .await
        .map_err(|e| V1Error::from_app(api, e))?;
    let api_key = match &user.via {
        crate::auth::AuthVia::ApiKey { key_id, .. } => Some(*key_id),
        _ => None,
    };
    let actor = crate::users::Actor {
        id: Some(user.id()),
        name: Some(user.user.username.clone()),
        ip: Some(client.ip.to_string()),
        user_agent: client.user_agent.clone(),
    };
    Ok(V1User {
        user,
        caller: Caller { actor, api_key },
    })
}

/// The request body as a JSON object, with refusals in the API's shape:
/// 413 over the body limit, 400 for anything that is not one JSON object.
pub fn json_body(
    api: Api,
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
    limit: usize,
) -> Result<Map<String, Value>, V1Error> {
    let bytes = match body {
        Ok(b) => b,
        Err(rej) if rej.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            return Err(V1Error::from_app(
                api,
                crate::error::AppError::PayloadTooLarge(limit),
            ));
        }
        Err(rej) => return Err(V1Error::invalid(api, None, rej.body_text())),
    };
    let json_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| {
            let essence = ct.split(';').next().unwrap_or("").trim();
            essence.eq_ignore_ascii_case("application/json")
        });
    if !json_type {
        return Err(V1Error::invalid(
            api,
            None,
            "the request body must be JSON, sent with Content-Type: application/json",
        ));
    }
    match serde_json::from_slice::<Value>(&bytes) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(V1Error::invalid(
            api,
            None,
            "the request body must be a JSON object",
        )),
        Err(e) => Err(V1Error::invalid(
            api,
            None,
            format!("the request body is not valid JSON: {e}"),
        )),
    }
}

/// The chat service over this server's state.
pub fn service(state: &AppState) -> ChatService {
    crate::http::chat::service(state)
}

/// An SSE response; a keep-alive comment every 15 s (both SDKs skip
/// comments) so proxies do not cut a slow answer.
pub fn sse<S>(events: S) -> Response
where
    S: Stream<Item = Result<Event, Infallible>> + Send + 'static,
{
    Sse::new(events)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response()
}

/// `GET /v1/models`: OpenAI's list, or Anthropic's when the request
/// carries `anthropic-version`.
#[utoipa::path(get, path = "/v1/models", tag = "v1", operation_id = "v1_models",
    responses(
        (status = 200, description = "The models the caller may use: OpenAI's list, or Anthropic's when the request carries an `anthropic-version` header (as the Anthropic SDKs send)", body = ModelsAnswer),
        (status = 401, description = "No API key, or an unknown or expired one", body = V1ErrorBody),
        (status = 403, description = "The key lacks the `read` scope, or the account is disabled", body = V1ErrorBody),
        (status = 429, description = "Over the API rate limit; `Retry-After` says when to try again", body = V1ErrorBody),
    ))]
pub async fn models(
    State(state): State<AppState>,
    headers: HeaderMap,
    client: ClientInfo,
) -> Response {
    let api = Api::of("/v1/models", &headers);
    let mut models = match visible_models(&state, api, &headers, &client).await {
        Ok(m) => m,
        Err(e) => return e.into_response(),
    };
    let mut seen = std::collections::HashSet::new();
    models.retain(|m| seen.insert(m.id.clone()));
    match api {
        Api::OpenAi => openai::model_list(&models).into_response(),
        Api::Anthropic => anthropic::model_list(&models).into_response(),
    }
}

/// `GET /v1/models/{id}`: one model, in OpenAI's shape or, with
/// `anthropic-version`, Anthropic's (the SDKs' `models.retrieve`).
#[utoipa::path(get, path = "/v1/models/{id}", tag = "v1", operation_id = "v1_model",
    params(("id" = String, Path, description = "A model id of `GET /v1/models`")),
    responses(
        (status = 200, description = "The model: OpenAI's shape, or Anthropic's when the request carries an `anthropic-version` header", body = ModelAnswer),
        (status = 401, description = "No API key, or an unknown or expired one", body = V1ErrorBody),
        (status = 403, description = "The key lacks the `read` scope, or the account is disabled", body = V1ErrorBody),
        (status = 404, description = "No provider offers the model", body = V1ErrorBody),
        (status = 429, description = "Over the API rate limit; `Retry-After` says when to try again", body = V1ErrorBody),
    ))]
pub async fn model(
    State(state): State<AppState>,
    axum::extract::Path(id): axum::extract::Path<String>,
    headers: HeaderMap,
    client: ClientInfo,
) -> Response {
    let api = Api::of("/v1/models", &headers);
    let models = match visible_models(&state, api, &headers, &client).await {
        Ok(m) => m,
        Err(e) => return e.into_response(),
    };
    let Some(m) = models.into_iter().find(|m| m.id == id) else {
        return V1Error::from_app(
            api,
            crate::error::AppError::ModelNotFound(format!(
                "The model `{id}` does not exist or you do not have access to it."
            )),
        )
        .into_response();
    };
    match api {
        Api::OpenAi => axum::Json(openai::model_of(&m)).into_response(),
        Api::Anthropic => axum::Json(anthropic::model_of(&m)).into_response(),
    }
}

/// The models the caller of `/v1/models` (and `/v1/models/{id}`) may use:
/// authenticated with the `read` scope, narrowed by their groups.
async fn visible_models(
    state: &AppState,
    api: Api,
    headers: &HeaderMap,
    client: &ClientInfo,
) -> Result<Vec<crate::providers::registry::RegistryModel>, V1Error> {
    let caller = authenticate(state, api, headers, client, "read").await?;
    let mut models = state.providers.models();
    let access = crate::groups::ModelAccess::load(&state.store, &caller.user.user)
        .await
        .map_err(|e| V1Error::from_app(api, e.into()))?;
    access.retain(&mut models, |m| (&m.id, &m.provider));
    Ok(models)
}

/// The schema of `GET /v1/models/{id}`'s answer (for the OpenAPI document).
#[derive(serde::Serialize, utoipa::ToSchema)]
#[serde(untagged)]
#[schema(as = V1ModelAnswer)]
#[allow(dead_code)]
pub enum ModelAnswer {
    OpenAi(openai::Model),
    Anthropic(anthropic::Model),
}

/// The schema of `GET /v1/models`'s answer (for the OpenAPI document).
#[derive(serde::Serialize, utoipa::ToSchema)]
#[serde(untagged)]
#[schema(as = V1ModelsAnswer)]
#[allow(dead_code)]
pub enum ModelsAnswer {
    OpenAi(openai::ModelList),
    Anthropic(anthropic::ModelList),
}

/// The schema of `/v1` error bodies (for the OpenAPI document): OpenAI's
/// or Anthropic's shape.
#[derive(serde::Serialize, utoipa::ToSchema)]
#[serde(untagged)]
#[allow(dead_code)]
pub enum V1ErrorBody {
    OpenAi(openai::ErrorBody),
    Anthropic(anthropic::ErrorBody),
}

/// Reads an optional field of `obj` as `T`, naming the field when it has
/// the wrong type. `null` counts as absent.
pub fn field<T: serde::de::DeserializeOwned>(
    api: Api,
    obj: &Map<String, Value>,
    name: &str,
) -> Result<Option<T>, V1Error> {
    match obj.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => serde_json::from_value(v.clone())
            .map(Some)
            .map_err(|e| V1Error::invalid(api, Some(name), format!("{name}: {e}"))),
    }
}

/// A number field within `[lo, hi]`.
pub fn ranged(
    api: Api,
    obj: &Map<String, Value>,
    name: &str,
    lo: f32,
    hi: f32,
) -> Result<Option<f32>, V1Error> {
    let v: Option<f32> = field(api, obj, name)?;
    if let Some(x) = v
        && !(lo..=hi).contains(&x)
    {
        return Err(V1Error::invalid(
            api,
            Some(name),
            format!("{name} must be between {lo} and {hi}, got {x}"),
        ));
    }
    Ok(v)
}

/// Seconds since the Unix epoch.
pub fn now() -> i64 {
    crate::clock::now()
}

/// A fresh id with a prefix (`chatcmpl-…`, `msg_…`, `call_…`).
pub fn new_id(prefix: &str) -> String {
    format!("{prefix}{}", uuid::Uuid::now_v7().simple())
}

/// The text of one refused or unknown field, for the checks of both APIs.
pub fn unknown_fields<'a>(
    obj: &'a Map<String, Value>,
    known: &[&str],
    ignored: &[&str],
) -> Option<&'a str> {
    obj.keys()
        .map(String::as_str)
        .find(|k| !known.contains(k) && !ignored.contains(k))
}

/// An image given inline in a `/v1` request (base64), checked: its bytes
/// must be a PNG, JPEG, GIF or WebP (whatever type it claims), with a
/// readable header and at most `imaging::MAX_PIXELS`. Err: the sentence
/// for the client.
pub fn inline_image(base64_text: &str) -> Result<crate::providers::ImageInput, String> {
    use base64::Engine;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(base64_text.trim())
        .map_err(|e| format!("the image is not valid base64: {e}"))?;
    let head = &bytes[..bytes.len().min(crate::files::HEAD_BYTES)];
    let mime = match crate::files::detect::detect(head, "", head.len() == bytes.len()) {
        Some(d) if d.kind == crate::files::FileKind::Image => d.mime,
        _ => return Err("the image must be a PNG, JPEG, GIF or WebP".into()),
    };
    crate::imaging::dimensions(head).map_err(|e| e.to_string())?;
    Ok(crate::providers::ImageInput {
        mime: mime.to_string(),
        data: bytes.into(),
    })
}

/// The base64 part of a `data:image/…;base64,…` URL. Remote URLs are not
/// fetched (a server that fetches what callers name can be made to reach
/// addresses only it can see): Err says so.
pub fn data_url_base64(url: &str) -> Result<&str, String> {
    let lower = url.get(..8).unwrap_or(url).to_ascii_lowercase();
    if lower.starts_with("http://") || lower.starts_with("https://") {
        return Err("remote image URLs are not fetched by this server: send the image inline as a data URL (data:image/png;base64,…)".into());
    }
    let Some(rest) = url.strip_prefix("data:") else {
        return Err("an image URL must be a data URL (data:image/png;base64,…)".into());
    };
    let Some((meta, data)) = rest.split_once(',') else {
        return Err("the data URL has no data".into());
    };
    if !meta.to_ascii_lowercase().ends_with(";base64") {
        return Err("the data URL must be base64 (data:image/png;base64,…)".into());
    }
    Ok(data)
}
