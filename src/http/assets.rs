//! Serves the embedded browser app: strong ETags with 304, precompressed
//! br/gzip chosen by Accept-Encoding, long caching for versioned files, and
//! index.html for every other non-API path (the app routes client-side).

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::assets::Asset;
use crate::error::AppError;
use crate::state::AppState;

fn accepts(headers: &HeaderMap, coding: &str) -> bool {
    headers
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|part| {
            let mut it = part.split(';');
            let name = it.next().unwrap_or("").trim();
            let q_zero = it.any(|p| {
                p.trim()
                    .strip_prefix("q=")
                    .and_then(|q| q.trim().parse::<f32>().ok())
                    .is_some_and(|q| q == 0.0)
            });
            name.eq_ignore_ascii_case(coding) && !q_zero
        })
}

fn etag_matches(headers: &HeaderMap, etag: &str) -> bool {
    headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .any(|t| t == "*" || t == etag || t.strip_prefix("W/") == Some(etag))
}

pub async fn serve_asset(State(state): State<AppState>, req: Request) -> Response {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return AppError::NotFound("not found".into()).into_response();
    }
    let path = req.uri().path().trim_start_matches('/');
    let (asset, is_index) = match state.assets.file(path) {
        Some(a) if !path.is_empty() => (a, path == "index.html"),
        _ => {
            // A missing file with an extension is a real 404 (a broken
            // link to a script should not get HTML back); anything else is
            // a client-side route.
            let last = path.rsplit('/').next().unwrap_or("");
            if last.contains('.') {
                return AppError::NotFound(format!("no such file: /{path}")).into_response();
            }
            (state.assets.index(), true)
        }
    };
    respond(asset, is_index, req.headers(), req.method() == Method::HEAD)
}

fn respond(asset: &Asset, is_index: bool, headers: &HeaderMap, head: bool) -> Response {
    let cache = if asset.immutable {
        "public, max-age=31536000, immutable"
    } else if is_index {
        "no-cache"
    } else {
        "public, max-age=0, must-revalidate"
    };
    let mut builder = Response::builder()
        .header(header::ETAG, &asset.etag)
        .header(header::CACHE_CONTROL, cache)
        .header(header::VARY, "Accept-Encoding");
    if etag_matches(headers, &asset.etag) {
        return builder
            .status(StatusCode::NOT_MODIFIED)
            .body(Body::empty())
            .expect("valid response");
    }
    let (body, encoding) = match (&asset.br, &asset.gzip) {
        (Some(br), _) if accepts(headers, "br") => (br.clone(), Some("br")),
        (_, Some(gz)) if accepts(headers, "gzip") => (gz.clone(), Some("gzip")),
        _ => (asset.body.clone(), None),
    };
    if let Some(e) = encoding {
        builder = builder.header(header::CONTENT_ENCODING, e);
    }
    builder
        .header(
            header::CONTENT_TYPE,
            HeaderValue::from_str(&asset.content_type).expect("ascii"),
        )
        .header(header::CONTENT_LENGTH, body.len())
        .status(StatusCode::OK)
        .body(if head {
            Body::empty()
        } else {
            Body::from(body)
        })
        .expect("valid response")
}
