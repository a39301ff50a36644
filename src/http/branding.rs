//! The server's branding: read by anyone (the sign-in page shows it before
//! anyone signs in), set by admins. The rules live in `crate::presets`.

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::{Deserialize, Deserializer, Serialize};
use utoipa::ToSchema;

use super::Json;
use super::auth::audit;
use crate::auth::{Admin, ClientInfo};
use crate::error::{AppError, AppResult};
use crate::presets::{BrandingPatch, Presets};
use crate::state::AppState;
use crate::store::presets::Branding;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/branding", get(read_branding))
        .route("/branding/logo", get(branding_logo))
        .route("/admin/branding", axum::routing::patch(update_branding))
        .route(
            "/admin/branding/logo",
            axum::routing::put(upload_logo).delete(delete_logo),
        )
}

fn service(state: &AppState) -> Presets {
    Presets {
        store: state.store.clone(),
    }
}

/// Only what a page shows: no ids, no one's data.
#[derive(Serialize, ToSchema)]
pub struct BrandingView {
    /// Shown in the header and the browser title; null: "confab".
    pub server_name: Option<String>,
    /// `#rrggbb`; null: confab's own colour.
    pub accent_color: Option<String>,
    /// Plain text shown on the sign-in page.
    pub sign_in_message: Option<String>,
    /// Where the logo is (it changes when the logo does); null: none.
    pub logo_url: Option<String>,
}

fn view(b: &Branding) -> BrandingView {
    BrandingView {
        server_name: b.server_name.clone(),
        accent_color: b.accent_color.clone(),
        sign_in_message: b.sign_in_message.clone(),
        logo_url: b
            .logo
            .as_ref()
            .map(|l| format!("/api/branding/logo?v={}", l.etag)),
    }
}

#[utoipa::path(get, path = "/api/branding", tag = "branding", responses((status = 200, body = BrandingView)))]
pub async fn read_branding(State(state): State<AppState>) -> AppResult<Json<BrandingView>> {
    Ok(Json(view(&service(&state).branding().await?)))
}

/// The logo as uploaded, with the image type found from its content.
#[utoipa::path(get, path = "/api/branding/logo", tag = "branding",
    responses((status = 200, description = "The logo image",
        content(("image/png"), ("image/jpeg"), ("image/gif"), ("image/webp"))),
    (status = 304, description = "Not modified (`If-None-Match`)"),
    (status = 404, description = "`NOT_FOUND`: no logo is set", body = crate::error::ErrorBody)))]
pub async fn branding_logo(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> AppResult<Response> {
    let b = service(&state).branding().await?;
    let Some(l) = b.logo else {
        return Err(AppError::not_found("logo"));
    };
    let etag = format!("\"{}\"", l.etag);
    let cache = HeaderValue::from_static("public, max-age=300");
    let etag_value = HeaderValue::from_str(&etag).map_err(AppError::internal)?;
    if headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag))
    {
        return Ok((
            StatusCode::NOT_MODIFIED,
            [(header::ETAG, etag_value), (header::CACHE_CONTROL, cache)],
        )
            .into_response());
    }
    // Only the sniffed image types are ever stored, and `nosniff` (on every
    // response) keeps browsers to them.
    let ct = HeaderValue::from_str(&l.content_type).map_err(AppError::internal)?;
    Ok((
        [
            (header::CONTENT_TYPE, ct),
            (header::ETAG, etag_value),
            (header::CACHE_CONTROL, cache),
            (
                header::CONTENT_DISPOSITION,
                HeaderValue::from_static("inline; filename=\"logo\""),
            ),
        ],
        l.bytes,
    )
        .into_response())
}

fn present<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(d).map(Some)
}

/// A change to the branding: fields left out stay; null or blank clears one.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BrandingBody {
    /// 1 to 60 characters, one line.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>, max_length = 60)]
    pub server_name: Option<Option<String>>,
    /// A hex colour, `#rgb` or `#rrggbb`.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>, pattern = "^\\s*(#[0-9A-Fa-f]{3}|#[0-9A-Fa-f]{6})?\\s*$")]
    pub accent_color: Option<Option<String>>,
    /// Plain text, up to 1 000 characters.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>, max_length = 1000)]
    pub sign_in_message: Option<Option<String>>,
}

#[utoipa::path(patch, path = "/api/admin/branding", tag = "branding", request_body = BrandingBody,
    responses((status = 200, body = BrandingView)))]
pub async fn update_branding(
    State(state): State<AppState>,
    client: ClientInfo,
    Admin(admin): Admin,
    Json(body): Json<BrandingBody>,
) -> AppResult<Json<BrandingView>> {
    let b = service(&state)
        .update_branding(BrandingPatch {
            server_name: body.server_name,
            accent_color: body.accent_color,
            sign_in_message: body.sign_in_message,
        })
        .await?;
    audit(
        &state,
        &client,
        Some(&admin.user),
        None,
        "branding.update",
        None,
        "ok",
    )
    .await;
    Ok(Json(view(&b)))
}

/// The body is the image itself (at most 256 KiB); its type is found from
/// its content, whatever `Content-Type` says: PNG, JPEG, GIF or WebP (not
/// SVG, which can carry script).
#[utoipa::path(put, path = "/api/admin/branding/logo", tag = "branding",
    request_body(content = Vec<u8>, content_type = "application/octet-stream", description = "A PNG, JPEG, GIF or WebP image"),
    responses((status = 200, body = BrandingView)))]
pub async fn upload_logo(
    State(state): State<AppState>,
    client: ClientInfo,
    Admin(admin): Admin,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> AppResult<Json<BrandingView>> {
    let body = match body {
        Ok(b) => b,
        Err(rej) if rej.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            return Err(AppError::PayloadTooLarge(state.cfg.max_body_bytes));
        }
        Err(rej) => return Err(AppError::Validation(rej.body_text())),
    };
    let b = service(&state).set_logo(&body).await?;
    audit(
        &state,
        &client,
        Some(&admin.user),
        None,
        "branding.logo",
        None,
        "ok",
    )
    .await;
    Ok(Json(view(&b)))
}

#[utoipa::path(delete, path = "/api/admin/branding/logo", tag = "branding",
    responses((status = 200, body = BrandingView)))]
pub async fn delete_logo(
    State(state): State<AppState>,
    client: ClientInfo,
    Admin(admin): Admin,
) -> AppResult<Json<BrandingView>> {
    let b = service(&state).clear_logo().await?;
    audit(
        &state,
        &client,
        Some(&admin.user),
        None,
        "branding.logo_delete",
        None,
        "ok",
    )
    .await;
    Ok(Json(view(&b)))
}
