//! The OpenAPI document, generated from the handlers' annotations.

use utoipa::OpenApi;

use super::{
    admin, auth, chat, conversations, export, health, keys, providers, search, tls, usage,
};

#[derive(OpenApi)]
#[openapi(
    info(title = "confab API", description = "Self-hosted AI chat appliance. Every error body is `{code, message, request_id}`. Browser clients authenticate with the `confab_session` cookie and send `X-CSRF-Token` on unsafe requests; programs use `Authorization: Bearer` with a JWT access token or an API key (`cfk_…`)."),
    paths(
        health::health, health::deep,
        auth::setup_status, auth::setup, auth::server_info, auth::register, auth::login, auth::logout,
        auth::me, auth::list_sessions, auth::revoke_session, auth::revoke_other_sessions,
        auth::change_password, auth::token, auth::refresh,
        keys::create_key, keys::list_keys, keys::delete_key,
        admin::list_users, admin::create_user, admin::update_user,
        admin::create_invite, admin::list_invites, admin::revoke_invite, admin::list_audit,
        admin::backup,
        tls::status,
        providers::list_models, providers::list_providers,
        providers::admin_list, providers::admin_create, providers::admin_update, providers::admin_delete,
        conversations::list, conversations::create, conversations::read, conversations::update,
        conversations::remove, conversations::messages, conversations::tree,
        chat::stream, chat::message, chat::events, chat::stop, chat::ws,
        search::search,
        usage::own_usage, usage::admin_usage,
        export::export_conversation, export::export_all, export::import,
    ),
    tags(
        (name = "auth", description = "Setup, registration, sign-in, sessions and tokens"),
        (name = "keys", description = "Personal API keys"),
        (name = "admin", description = "Users, invites and audit log (admins only)"),
        (name = "health", description = "Liveness and store checks"),
        (name = "search", description = "Full-text search over the caller's own messages and conversation titles"),
        (name = "conversations", description = "Conversations and their message trees"),
        (name = "chat", description = "Streaming answers. `POST /api/chat/stream` answers `text/event-stream`: `meta` first (conversation_id, user_message_id, assistant_message_id, generation_id, model, provider, parent_id, context_trimmed, trimmed_messages), then `delta {text}` events, then `usage {input_tokens, output_tokens, estimated}`, then `done {finish_reason}` or `error {code, message, request_id}`. Every event has an integer `id:` counting from 1 within the generation; `GET /api/generations/{id}/events` with `Last-Event-ID: n` replays from n+1 and continues live. A `: keep-alive` comment is sent every 15 s."),
        (name = "usage", description = "Usage and cost per day and model, today's remaining quota (`/api/usage`), and reports across users (`/api/admin/usage`, admins only). Both answer CSV for `?format=csv` or `Accept: text/csv`. A chat request over a daily quota answers 429 QUOTA_EXCEEDED with `Retry-After` (seconds to the next UTC midnight); over a rate limit, 429 RATE_LIMITED with `Retry-After` and `RateLimit-Limit/Remaining/Reset`, which every `/api` response carries."),
        (name = "providers", description = "Models, provider health, and provider management (the /api/admin routes are for admins only)"),
    )
)]
pub struct ApiDoc;

pub async fn openapi_json() -> axum::response::Response {
    use axum::response::IntoResponse;
    let mut doc = ApiDoc::openapi();
    doc.info.version = crate::VERSION.to_string();
    axum::Json(doc).into_response()
}
