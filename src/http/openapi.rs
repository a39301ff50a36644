//! The OpenAPI document, served at `/api/openapi.json`: generated from the
//! handlers' annotations, then completed here with what every operation
//! shares: the security schemes and each operation's `security`, and the
//! error statuses the cross-cutting layers answer (body and query
//! validation, authentication, CSRF and origin checks, body limit, rate
//! limits, internal errors). Handlers annotate only what is theirs (their
//! success, their 404/409/…); tests/it/http_surface.rs checks the result and
//! tests/schemathesis.sh holds it against the live server.

use utoipa::openapi::path::{HttpMethod, Operation};
use utoipa::openapi::security::{
    ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme,
};
use utoipa::openapi::{
    Components, ContentBuilder, HeaderBuilder, Ref, RefOr, ResponseBuilder, Type,
};
use utoipa::{Modify, OpenApi};

use super::{
    admin, auth, branding, chat, collections, conversations, export, files, groups, health, keys,
    models, own_keys, presets, providers, search, security, shares, sso, tls, usage, v1,
};

#[derive(OpenApi)]
#[openapi(
    modifiers(&Completion),
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
        groups::list, groups::create, groups::read, groups::update, groups::remove,
        groups::add_member, groups::remove_member,
        tls::status,
        providers::list_models, providers::list_providers,
        providers::admin_list, providers::admin_create, providers::admin_update, providers::admin_delete,
        models::list, models::update, models::test_model, models::set_default, models::test_provider,
        conversations::list, conversations::create, conversations::read, conversations::update,
        conversations::remove, conversations::messages, conversations::tree,
        chat::stream, chat::message, chat::events, chat::stop, chat::ws,
        own_keys::validate_key, own_keys::discard_temporary,
        search::search,
        usage::own_usage, usage::admin_usage,
        export::export_conversation, export::export_all, export::import,
        export::start_import, export::list_imports, export::get_import,
        conversations::remove_all,
        shares::create, shares::list, shares::revoke, shares::shared, shares::continue_chat,
        shares::shared_file,
        v1::models, v1::model, v1::openai::chat_completions, v1::openai::embeddings, v1::anthropic::messages,
        presets::list_presets, presets::create_preset, presets::read_preset, presets::update_preset,
        presets::delete_preset, presets::list_prompts, presets::create_prompt, presets::read_prompt,
        presets::update_prompt, presets::delete_prompt, presets::read_settings, presets::update_settings,
        branding::read_branding, branding::branding_logo, branding::update_branding, branding::upload_logo,
        branding::delete_logo,
        collections::list, collections::create, collections::read, collections::update,
        collections::remove, collections::document,
        files::list, files::upload, files::read, files::content, files::thumbnail, files::remove,
        sso::oidc_start, sso::oidc_callback, sso::oidc_link, sso::list_identities, sso::unlink_identity,
        security::two_factor_status, security::two_factor_setup, security::two_factor_confirm,
        security::two_factor_disable, security::login_second_step, security::reset_password,
        security::request_reset, security::set_email, security::send_verification,
        security::verify_email, security::create_reset_link, security::reset_two_factor,
        security::read_policy, security::update_policy,
    ),
    tags(
        (name = "auth", description = "Setup, registration, sign-in, sessions and tokens"),
        (name = "keys", description = "Personal API keys"),
        (name = "sso", description = "Single sign-on: OpenID Connect sign-in (a browser goes to `start`, signs in at the provider and comes back to `callback`, which sets the session cookie), linking identities to the signed-in account, and listing or unlinking them. LDAP directories are checked by the ordinary sign-in form (`POST /api/auth/login`)."),
        (name = "two-factor", description = "Two-factor sign-in with an authenticator app (TOTP, RFC 6238): set-up with a QR code, ten one-time recovery codes, turning it off. With it on, `POST /api/auth/login` answers 202 with a challenge to finish at `POST /api/auth/login/two-factor`, and `POST /api/auth/token` needs `totp_code`. API keys and refresh tokens are not asked for a code."),
        (name = "admin", description = "Users, invites, groups and audit log (admins only). A group allows models (by name) and providers to its members and carries quota defaults: a user in no group that lists models or providers may use every model; otherwise the union of what their groups allow (admins always every model); a model not allowed answers 404 `MODEL_NOT_FOUND` as a missing one does. A user's quota is their own override, else the most generous of their groups', else the server default."),
        (name = "health", description = "Liveness and store checks"),
        (name = "search", description = "Full-text search over the caller's own messages and conversation titles"),
        (name = "conversations", description = "Conversations and their message trees"),
        (name = "shares", description = "Share links: a read-only snapshot of the thread a conversation shows, at `/s/{token}` (a 256-bit token); optionally only for signed-in users of the server; revocable. `GET /api/shared/{token}` reads it with or without a credential; `POST /api/shared/{token}/continue` copies it into the caller's account."),
        (name = "chat", description = "Streaming answers. `POST /api/chat/stream` answers `text/event-stream`: `meta` first (conversation_id, user_message_id, assistant_message_id, generation_id, model, provider, parent_id, context_trimmed, trimmed_messages), then `delta {text}` events, then `title {conversation_id, title}` when the answer just named the conversation, then `usage {input_tokens, output_tokens, estimated}`, then `done {finish_reason}` or `error {code, message, request_id}`. Every event has an integer `id:` counting from 1 within the generation; `GET /api/generations/{id}/events` with `Last-Event-ID: n` replays from n+1 and continues live. A `: keep-alive` comment is sent every 15 s."),
        (name = "usage", description = "Usage and cost per day and model, today's remaining quota (`/api/usage`), and reports across users (`/api/admin/usage`, admins only). Both answer CSV for `?format=csv` or `Accept: text/csv`. A chat request over a daily quota answers 429 QUOTA_EXCEEDED with `Retry-After` (seconds to the next UTC midnight); over a rate limit, 429 RATE_LIMITED with `Retry-After` and `RateLimit-Limit/Remaining/Reset`, which every `/api` response carries."),
        (name = "presets", description = "Presets (a model, a system prompt and sampling settings under a name; pass `preset_id` when starting a chat), the prompt library behind the composer's `/` commands, and the caller's custom instructions. Each preset or prompt is the caller's own or shared with everyone by an admin; another user's answers 404. An answer's system prompt is the conversation's (a preset's) followed, after a blank line, by the user's custom instructions."),
        (name = "knowledge", description = "Documents answered with sources. Text is read from uploaded files (PDF per page, DOCX, HTML, Markdown, CSV, plain text, source code), cut into overlapping chunks and indexed per user; `GET /api/documents/{file_id}` says what was read. A knowledge collection is a named set of the caller's documents; attach collections to a conversation with `PATCH /api/conversations/{id}` `{collections: [id]}`. A turn whose thread has documents attached, or whose conversation has collections, gets the passages most relevant to the question in its context (documents that fit are sent whole), and its `meta` and `done` events and the stored answer carry `sources`: `{file_id, name, chunk, page_start, page_end, line_start, line_end, paragraph_start, paragraph_end, heading, snippet, whole}` (fields absent when they do not apply). Another user's collection or file answers 404."),
        (name = "branding", description = "The server's name, logo, accent colour and sign-in message: anyone reads them (`GET /api/branding`, no credential), admins set them."),
        (name = "files", description = "Uploaded files (attachments): `POST /api/files` (multipart, field `file`), list with storage used and quota, read, download (`/content`: an attachment, `?inline=1` for images), thumbnails of images, delete. The type is detected from the content; allowed: PNG, JPEG, GIF, WebP, PDF, DOCX and UTF-8 text. Another user's file id answers 404. Attach files to a chat turn with `attachments: [file_id]` in `POST /api/chat/stream`."),
        (name = "providers", description = "Models, provider health, and provider management (the /api/admin routes are for admins only)"),
        (name = "v1", description = "OpenAI- and Anthropic-compatible endpoints for SDKs and tools, on the same accounts, limits, quotas and usage as the app. Authenticate with a confab API key (`cfk_…`) as `Authorization: Bearer` or `x-api-key`; browser sessions are not accepted. Calls are stateless: no conversation is stored. Errors are in each API's own shape: OpenAI's `{\"error\":{message,type,param,code}}` on its endpoints, Anthropic's `{\"type\":\"error\",\"error\":{type,message}}` on `/v1/messages`, and on the model list and unknown paths the one the request's `anthropic-version` header (or its absence) asks for. Field support: docs/API.md."),
    )
)]
pub struct ApiDoc;

pub async fn openapi_json() -> axum::response::Response {
    use axum::response::IntoResponse;
    let mut doc = ApiDoc::openapi();
    doc.info.version = crate::VERSION.to_string();
    axum::Json(doc).into_response()
}

/// Operations that take no credential. `/health/deep` takes one optionally
/// (an admin's, from off the host); the rest are sign-in and setup.
const PUBLIC: &[(HttpMethod, &str)] = &[
    (HttpMethod::Get, "/health"),
    (HttpMethod::Get, "/health/deep"),
    (HttpMethod::Get, "/api/setup"),
    (HttpMethod::Post, "/api/setup"),
    (HttpMethod::Get, "/api/server"),
    (HttpMethod::Get, "/api/branding"),
    (HttpMethod::Get, "/api/branding/logo"),
    (HttpMethod::Post, "/api/auth/register"),
    (HttpMethod::Post, "/api/auth/login"),
    (HttpMethod::Post, "/api/auth/token"),
    (HttpMethod::Post, "/api/auth/refresh"),
    (HttpMethod::Post, "/api/auth/login/two-factor"),
    (HttpMethod::Post, "/api/auth/password-reset"),
    (HttpMethod::Post, "/api/auth/password-reset/request"),
    (HttpMethod::Post, "/api/auth/email/verify"),
];

/// Credential optional: anyone on the loopback interface, admins elsewhere.
const OPTIONAL_AUTH: &[(HttpMethod, &str)] = &[(HttpMethod::Get, "/health/deep")];

/// The shared error responses, by status: the name of the component and
/// what it means wherever it is used.
const ERRORS: &[(&str, &str, &str)] = &[
    (
        "400",
        "BadRequest",
        "`VALIDATION_FAILED`: a query parameter or the body is not valid. A body must be one JSON object, in UTF-8, sent with `Content-Type: application/json`; the message names the field.",
    ),
    (
        "401",
        "Unauthorized",
        "`AUTH_REQUIRED`: no credential, or one the server does not know; `SESSION_EXPIRED`: the session, access token or API key has expired.",
    ),
    (
        "403",
        "Forbidden",
        "`CSRF_INVALID`: an unsafe request with a cookie session but without its `X-CSRF-Token`, or from a foreign `Origin`; `FORBIDDEN`: the API key lacks the scope; `USER_INACTIVE`: the account is disabled; `ADMIN_REQUIRED`: an admin-only operation.",
    ),
    (
        "404",
        "NotFound",
        "`NOT_FOUND` (or a more specific `…_NOT_FOUND`): no such resource, or it belongs to someone else.",
    ),
    (
        "413",
        "PayloadTooLarge",
        "`PAYLOAD_TOO_LARGE`: the body is larger than `max_body_bytes`.",
    ),
    (
        "429",
        "TooManyRequests",
        "`RATE_LIMITED`: too many requests (or sign-in attempts) for now; `Retry-After` says how many seconds to wait, and `RateLimit-*` describe the limit.",
    ),
    (
        "500",
        "InternalError",
        "`INTERNAL`: an unexpected failure; the request id identifies it in the server log.",
    ),
];

/// Completes the generated document (see the module doc).
struct Completion;

impl Modify for Completion {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let components = doc.components.get_or_insert_with(Components::new);
        add_security_schemes(components);
        for (_, name, description) in ERRORS {
            let mut r = ResponseBuilder::new().description(*description).content(
                "application/json",
                ContentBuilder::new()
                    .schema(Some(Ref::from_schema_name("ErrorBody")))
                    .build(),
            );
            if *name == "TooManyRequests" {
                r = r.header(
                    "Retry-After",
                    HeaderBuilder::new()
                        .schema(utoipa::openapi::ObjectBuilder::new().schema_type(Type::Integer))
                        .description(Some("Seconds to wait before trying again"))
                        .build(),
                );
            }
            components
                .responses
                .insert((*name).to_string(), RefOr::T(r.build()));
        }
        for (path, item) in doc.paths.paths.iter_mut() {
            let ops = [
                (HttpMethod::Get, &mut item.get),
                (HttpMethod::Post, &mut item.post),
                (HttpMethod::Put, &mut item.put),
                (HttpMethod::Patch, &mut item.patch),
                (HttpMethod::Delete, &mut item.delete),
            ];
            for (method, op) in ops {
                if let Some(op) = op {
                    complete_operation(path, method, op);
                }
            }
        }
    }
}

fn add_security_schemes(c: &mut Components) {
    c.add_security_scheme(
        "apiKeyHeader",
        SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
            "x-api-key",
            "A personal API key (`cfk_…`) in `x-api-key` (also `X-API-Key`), as the Anthropic SDKs send it; `/v1` only.",
        ))),
    );
    c.add_security_scheme(
        "session",
        SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::with_description(
            crate::auth::SESSION_COOKIE,
            "The browser session, set by `POST /api/auth/login` (and setup and registration). Unsafe requests (POST, PATCH, PUT, DELETE) also need `csrf`.",
        ))),
    );
    c.add_security_scheme(
        "csrf",
        SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
            "X-CSRF-Token",
            "The session's CSRF token (`csrf_token` in the login response and in `GET /api/auth/me`), required with the session cookie on unsafe requests.",
        ))),
    );
    c.add_security_scheme(
        "accessToken",
        SecurityScheme::Http(
            HttpBuilder::new()
                .scheme(HttpAuthScheme::Bearer)
                .bearer_format("JWT")
                .description(Some(
                    "A JWT access token from `POST /api/auth/token` (renewed with `POST /api/auth/refresh`); it acts with the user's role.",
                ))
                .build(),
        ),
    );
    c.add_security_scheme(
        "apiKey",
        SecurityScheme::Http(
            HttpBuilder::new()
                .scheme(HttpAuthScheme::Bearer)
                .bearer_format("cfk_…")
                .description(Some(
                    "A personal API key from `POST /api/keys`. Its scopes limit it: `read` for GET, `write` for other methods, `admin` for `/api/admin/…` (and the user must be an admin). An operation's `security` names the scope it needs.",
                ))
                .build(),
        ),
    );
}

fn is_unsafe(method: &HttpMethod) -> bool {
    !matches!(
        method,
        HttpMethod::Get | HttpMethod::Head | HttpMethod::Options
    )
}

/// The API key scopes an operation needs: the rule in `auth::authenticate`,
/// and the WebSocket, a GET whose frames start answers, also needs `write`.
fn scopes_needed(path: &str, method: &HttpMethod) -> Vec<&'static str> {
    if path.starts_with("/api/admin") {
        vec!["admin"]
    } else if path == "/api/chat/ws" {
        vec!["read", "write"]
    } else if is_unsafe(method) {
        vec!["write"]
    } else {
        vec!["read"]
    }
}

/// A `/v1` operation: API keys only (as Bearer or `x-api-key`), and its
/// errors in its API's shape, documented by the handler; the 500 of a
/// panic or internal failure is added here, reshaped the same way.
fn complete_v1_operation(path: &str, method: HttpMethod, op: &mut Operation) {
    let scopes = scopes_needed(path, &method);
    op.security = Some(vec![
        SecurityRequirement::new("apiKey", scopes.clone()),
        SecurityRequirement::new("apiKeyHeader", scopes),
    ]);
    op.responses
        .responses
        .entry("500".into())
        .or_insert_with(|| {
            RefOr::T(
                ResponseBuilder::new()
                    .description("An unexpected failure, in the API's error shape")
                    .content(
                        "application/json",
                        ContentBuilder::new()
                            .schema(Some(Ref::from_schema_name("V1ErrorBody")))
                            .build(),
                    )
                    .build(),
            )
        });
}

fn complete_operation(path: &str, method: HttpMethod, op: &mut Operation) {
    if path.starts_with("/v1/") {
        return complete_v1_operation(path, method, op);
    }
    let public = PUBLIC.iter().any(|(m, p)| *m == method && *p == path);
    let optional = OPTIONAL_AUTH
        .iter()
        .any(|(m, p)| *m == method && *p == path);
    let mut credentials = vec![
        if is_unsafe(&method) {
            SecurityRequirement::new("session", Vec::<String>::new())
                .add("csrf", Vec::<String>::new())
        } else {
            SecurityRequirement::new("session", Vec::<String>::new())
        },
        SecurityRequirement::new("accessToken", Vec::<String>::new()),
        SecurityRequirement::new("apiKey", scopes_needed(path, &method)),
    ];
    op.security = Some(if optional {
        credentials.insert(0, SecurityRequirement::default());
        credentials
    } else if public {
        Vec::new()
    } else {
        credentials
    });

    let params = op.parameters.as_deref().unwrap_or_default();
    let has_path_param = params
        .iter()
        .any(|p| matches!(p.parameter_in, utoipa::openapi::path::ParameterIn::Path));
    let has_query_or_header = params.iter().any(|p| {
        matches!(
            p.parameter_in,
            utoipa::openapi::path::ParameterIn::Query | utoipa::openapi::path::ParameterIn::Header
        )
    });
    let has_body = op.request_body.is_some();

    let mut add = |code: &str| {
        let (_, name, description) = ERRORS
            .iter()
            .find(|(c, ..)| *c == code)
            .expect("a shared error response");
        match op.responses.responses.get_mut(code) {
            None => {
                op.responses
                    .responses
                    .insert(code.to_string(), RefOr::Ref(Ref::from_response_name(*name)));
            }
            // The handler documents its own cause; the shared ones are added.
            Some(RefOr::T(r)) if !r.description.contains(description) => {
                if r.description.is_empty() {
                    r.description = (*description).to_string();
                } else {
                    r.description = format!("{} Also {description}", r.description);
                }
            }
            Some(_) => {}
        }
    };
    if has_body || has_query_or_header {
        add("400");
    }
    if !public {
        add("401");
    }
    if !public || is_unsafe(&method) {
        add("403");
    }
    if has_path_param {
        add("404");
    }
    if has_body {
        add("413");
    }
    if path.starts_with("/api/") {
        add("429");
    }
    add("500");
}
