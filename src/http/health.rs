//! Liveness (`/health`) and a deeper check of the store (`/health/deep`).

use axum::Router;
use axum::extract::State;
use axum::routing::get;
use serde::Serialize;
use std::time::Instant;
use utoipa::ToSchema;

use super::Json;
use crate::auth::{ClientInfo, CurrentUser};
use crate::error::{AppError, AppResult};
use crate::state::AppState;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/health", get(health))
        .route("/health/deep", get(deep))
}

#[derive(Serialize, ToSchema)]
pub struct Health {
    pub status: &'static str,
    pub version: &'static str,
}

#[utoipa::path(get, path = "/health", tag = "health", responses((status = 200, body = Health)))]
pub async fn health() -> Json<Health> {
    Json(Health {
        status: "ok",
        version: crate::VERSION,
    })
}

#[derive(Serialize, ToSchema)]
pub struct StoreHealth {
    pub ok: bool,
    pub latency_ms: f64,
    pub schema_version: u64,
}

#[derive(Serialize, ToSchema)]
pub struct DeepHealth {
    pub status: &'static str,
    pub version: &'static str,
    pub store: StoreHealth,
    /// The HTTPS certificate: days left and the last renewal error (absent
    /// when TLS is off).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls: Option<crate::tls::TlsHealth>,
}

/// Writes and reads back a probe record. Only for admins and loopback
/// callers (monitoring on the same host), since it costs an fsync.
#[utoipa::path(get, path = "/health/deep", tag = "health",
    responses((status = 200, body = DeepHealth), (status = 403, body = crate::error::ErrorBody),
    (status = 503, body = crate::error::ErrorBody)))]
pub async fn deep(
    State(state): State<AppState>,
    client: ClientInfo,
    user: Result<CurrentUser, AppError>,
) -> AppResult<Json<DeepHealth>> {
    let admin = user.as_ref().is_ok_and(|u| u.is_admin());
    if !admin && !client.ip.is_loopback() {
        return Err(AppError::AdminRequired);
    }
    let started = Instant::now();
    let now = crate::clock::now();
    state.store.probe(now).await.map_err(|e| {
        tracing::error!(error = %e, "deep health check failed");
        AppError::Unavailable("the store failed a read/write check".into())
    })?;
    Ok(Json(DeepHealth {
        status: "ok",
        version: crate::VERSION,
        store: StoreHealth {
            ok: true,
            latency_ms: started.elapsed().as_secs_f64() * 1000.0,
            schema_version: state.store.schema_version().await?,
        },
        tls: state.tls.as_ref().map(|t| t.health()),
    }))
}
