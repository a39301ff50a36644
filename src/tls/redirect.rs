//! The plain-HTTP listener of an HTTPS server: answers ACME HTTP-01
//! challenges and sends everything else to the same path over https.

use std::sync::Arc;

use crate::server::{TcpAccept, Timeouts};
use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tokio_util::sync::CancellationToken;

use super::Tls;

#[derive(Clone)]
struct Redirect {
    tls: Arc<Tls>,
    https_port: u16,
}

/// Serves until `cancel` fires, under the same connection cap and
/// deadlines as the HTTPS listener.
pub async fn serve(
    accept: TcpAccept,
    timeouts: Timeouts,
    tls: Arc<Tls>,
    https_port: u16,
    cancel: CancellationToken,
) {
    let app = Router::new()
        .route("/.well-known/acme-challenge/{token}", get(challenge))
        .fallback(redirect)
        .with_state(Redirect { tls, https_port });
    crate::server::run(accept, app, timeouts, cancel.cancelled_owned()).await;
}

async fn challenge(State(r): State<Redirect>, Path(token): Path<String>) -> Response {
    match r.tls.http01_answer(&token).await {
        Some(answer) => {
            tracing::info!("answered an ACME HTTP-01 validation request");
            ([(header::CONTENT_TYPE, "application/octet-stream")], answer).into_response()
        }
        None => (StatusCode::NOT_FOUND, "no such challenge\n").into_response(),
    }
}

async fn redirect(
    State(r): State<Redirect>,
    method: Method,
    headers: HeaderMap,
    uri: Uri,
) -> Response {
    let requested = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .or(uri.host())
        .map(strip_port)
        .filter(|h| valid_host(h));
    let host = match r.tls.redirect_host(requested) {
        Some(h) => h,
        None => {
            return (
                StatusCode::BAD_REQUEST,
                "this server only speaks https; use https:// and the server's name\n",
            )
                .into_response();
        }
    };
    let port = if r.https_port == 443 {
        String::new()
    } else {
        format!(":{}", r.https_port)
    };
    let path = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    let host = if host.contains(':') {
        format!("[{host}]")
    } else {
        host
    };
    let location = format!("https://{host}{port}{path}");
    let Ok(location) = HeaderValue::from_str(&location) else {
        return StatusCode::BAD_REQUEST.into_response();
    };
    // 308 keeps the method and body of a POST; browsers know 301 best for GET.
    let status = if method == Method::GET || method == Method::HEAD {
        StatusCode::MOVED_PERMANENTLY
    } else {
        StatusCode::PERMANENT_REDIRECT
    };
    (status, [(header::LOCATION, location)]).into_response()
}

/// `host:port` or `[v6]:port` → the host part.
fn strip_port(h: &str) -> &str {
    if let Some(rest) = h.strip_prefix('[') {
        return rest.split(']').next().unwrap_or("");
    }
    match h.rsplit_once(':') {
        Some((host, port)) if port.bytes().all(|b| b.is_ascii_digit()) => host,
        _ => h,
    }
}

fn valid_host(h: &str) -> bool {
    !h.is_empty()
        && h.len() <= 253
        && h.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b':'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_parsing() {
        assert_eq!(strip_port("chat.example.com:80"), "chat.example.com");
        assert_eq!(strip_port("chat.example.com"), "chat.example.com");
        assert_eq!(strip_port("[::1]:80"), "::1");
        assert!(valid_host("chat.example.com"));
        assert!(!valid_host("evil.com/x"));
        assert!(!valid_host("a b"));
    }
}
