//! `GET /metrics`: Prometheus / OpenMetrics text. On the main listener
//! only for admins and for a scraper presenting `metrics_token` as a bearer
//! token; anyone else gets the JSON 404, as if there were nothing here.
//! `serve_metrics` runs the optional `--metrics-listen` listener.

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use subtle::ConstantTimeEq;
use tokio::net::TcpListener;

use crate::auth::CurrentUser;
use crate::error::AppError;
use crate::state::AppState;

pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

pub fn routes() -> Router<AppState> {
    Router::new().route("/metrics", get(metrics))
}

fn token_matches(state: &AppState, headers: &HeaderMap) -> bool {
    let Some(want) = &state.cfg.metrics_token else {
        return false;
    };
    let Some(got) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, t)| t.trim())
    else {
        return false;
    };
    bool::from(got.as_bytes().ct_eq(want.expose().as_bytes()))
}

fn not_found() -> Response {
    AppError::NotFound("no such API endpoint".into()).into_response()
}

/// Samples the on-demand values and encodes the registry.
pub async fn render(state: &AppState) -> Response {
    let st = state.clone();
    let lag = st.store.outbox_len().await.unwrap_or(0);
    let text = tokio::task::spawn_blocking(move || {
        let l = &st.limits;
        let m = &l.metrics;
        m.search_lag.set(lag.min(i64::MAX as u64) as i64);
        m.search_docs.set(st.search.num_docs() as i64);
        m.search_index_bytes.set(st.search.disk_bytes() as i64);
        m.store_bytes.set(
            st.store
                .file()
                .and_then(|f| std::fs::metadata(f.path()).ok())
                .map(|md| md.len() as i64)
                .unwrap_or(0),
        );
        m.rss_bytes.set(crate::limits::metrics::rss_bytes());
        m.generations_running.set(st.generations.running() as i64);
        m.quota_users.set(l.quotas.tracked_users() as i64);
        for (name, n) in l.rate.sizes() {
            m.limiter_keys
                .get_or_create(&crate::limits::metrics::LimiterLabels {
                    limiter: name.into(),
                })
                .set(n as i64);
        }
        m.encode()
    })
    .await
    .unwrap_or_default();
    let mut resp = text.into_response();
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
    resp
}

/// Prometheus text for admins and the configured scraper token.
pub async fn metrics(
    State(state): State<AppState>,
    headers: HeaderMap,
    user: Result<CurrentUser, AppError>,
) -> Response {
    let allowed = token_matches(&state, &headers) || user.is_ok_and(|u| u.is_admin());
    if !allowed {
        return not_found();
    }
    render(&state).await
}

/// The `--metrics-listen` listener: `/metrics` only, open to whoever can
/// reach the address — or, when `metrics_token` is set, to its bearer.
pub async fn serve_metrics(listener: TcpListener, state: AppState) -> std::io::Result<()> {
    async fn handler(State(state): State<AppState>, headers: HeaderMap) -> Response {
        if state.cfg.metrics_token.is_some() && !token_matches(&state, &headers) {
            return not_found();
        }
        render(&state).await
    }
    let app = Router::new()
        .route("/metrics", get(handler))
        .fallback(|| async { not_found() })
        .with_state(state.clone());
    // The same deadlines as the app; its own cap, so a flood here cannot
    // take the app's connections (nor the other way round).
    let accept = crate::server::TcpAccept::new(listener, crate::server::ConnCap::new(&state.cfg));
    let timeouts = crate::server::Timeouts::from_config(&state.cfg.http);
    crate::server::run(accept, app, timeouts, std::future::pending()).await;
    Ok(())
}
