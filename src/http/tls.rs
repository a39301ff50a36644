//! `GET /api/admin/tls`: the HTTPS certificate and its renewal, for admins.

use axum::Router;
use axum::extract::State;
use axum::routing::get;

use super::Json;
use crate::auth::Admin;
use crate::state::AppState;
use crate::tls::TlsStatus;

pub fn routes() -> Router<AppState> {
    Router::new().route("/admin/tls", get(status))
}

/// The certificate being served (names, issuer, expiry, days left), how it
/// is renewed and the last renewal error with what to do about it.
#[utoipa::path(get, path = "/api/admin/tls", tag = "admin",
    responses((status = 200, body = TlsStatus), (status = 403, body = crate::error::ErrorBody)))]
pub async fn status(State(state): State<AppState>, _admin: Admin) -> Json<TlsStatus> {
    Json(match &state.tls {
        Some(t) => t.status(),
        None => TlsStatus::off(),
    })
}
