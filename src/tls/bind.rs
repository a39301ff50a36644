//! Binding the server's sockets for the configured TLS mode, the error
//! sentences that say how to fix a failed bind, and where `confab
//! healthcheck` finds a TLS server.

use std::net::SocketAddr;
use tokio::net::TcpListener;

use crate::config::{Config, HttpListen, TlsMode};

/// The bound sockets of a server.
pub struct Listeners {
    /// Serves the app: plain HTTP, or HTTPS when TLS is on.
    pub app: TcpListener,
    /// TLS on: the HTTP-01 responder and redirect.
    pub http: Option<TcpListener>,
    pub https: bool,
}

impl Listeners {
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.app.local_addr()
    }

    /// `http(s)://addr` of the app listener, for the log.
    pub fn url(&self) -> String {
        let scheme = if self.https { "https" } else { "http" };
        match self.app.local_addr() {
            Ok(a) => format!("{scheme}://{a}"),
            Err(_) => format!("{scheme}://?"),
        }
    }
}

/// Binds what the configuration asks for: `listen` when TLS is off;
/// otherwise the HTTPS address (`tls.https_listen`; default `[::]:443` for
/// ACME, `listen` for certificate files) and the plain-HTTP one
/// (`tls.http_listen`; default `[::]:80` for ACME, none for files). Errors
/// say what to do, e.g. for a low port without CAP_NET_BIND_SERVICE.
pub async fn bind_listeners(cfg: &Config) -> anyhow::Result<Listeners> {
    let mode = cfg.tls.mode();
    if mode == TlsMode::Off {
        return Ok(Listeners {
            app: bind(cfg.listen, "listen (--listen)").await?,
            http: None,
            https: false,
        });
    }
    const HTTPS: &str = "tls.https_listen (--https-listen)";
    const HTTP: &str = "tls.http_listen (--http-listen)";
    let app = match cfg.tls.https_listen {
        Some(a) => bind(a, HTTPS).await?,
        None if mode == TlsMode::Files => bind(cfg.listen, "listen (--listen)").await?,
        None => bind_any(443, HTTPS).await?,
    };
    let http = match cfg.tls.http_listen() {
        HttpListen::Off => None,
        HttpListen::At(a) => Some(bind(a, HTTP).await?),
        HttpListen::Default if mode == TlsMode::Acme => Some(bind_any(80, HTTP).await?),
        HttpListen::Default => None,
    };
    Ok(Listeners {
        app,
        http,
        https: true,
    })
}

async fn bind(addr: SocketAddr, setting: &str) -> anyhow::Result<TcpListener> {
    crate::server::listen(addr).map_err(|e| anyhow::anyhow!(bind_error(addr, setting, &e)))
}

/// All addresses, IPv6 and IPv4 (a dual-stack socket), or IPv4 alone on a
/// host without IPv6. Certificate authorities validate over IPv6 when the
/// name has an AAAA record, so listening on IPv4 alone is a classic trap.
async fn bind_any(port: u16, setting: &str) -> anyhow::Result<TcpListener> {
    let v6 = SocketAddr::from((std::net::Ipv6Addr::UNSPECIFIED, port));
    match crate::server::listen(v6) {
        Ok(l) => Ok(l),
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::PermissionDenied | std::io::ErrorKind::AddrInUse
            ) =>
        {
            Err(anyhow::anyhow!(bind_error(v6, setting, &e)))
        }
        Err(_) => bind(SocketAddr::from(([0, 0, 0, 0], port)), setting).await,
    }
}

/// One sentence naming the address, the setting and the way out.
pub fn bind_error(addr: SocketAddr, setting: &str, e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::PermissionDenied if addr.port() < 1024 => format!(
            "cannot listen on {addr} ({setting}): permission denied. Ports below 1024 need the \
             CAP_NET_BIND_SERVICE capability: run confab through its systemd unit (confab.service \
             grants it with AmbientCapabilities=CAP_NET_BIND_SERVICE), or grant it to the binary \
             once with `sudo setcap cap_net_bind_service=+ep $(command -v confab)`, or choose a \
             port above 1023"
        ),
        std::io::ErrorKind::AddrInUse => format!(
            "cannot listen on {addr} ({setting}): the port is already in use by another program \
             (another web server such as nginx, Apache or Caddy, or a second confab); stop it \
             (`sudo ss -ltnp 'sport = :{}'` shows which) or choose another address",
            addr.port()
        ),
        std::io::ErrorKind::AddrNotAvailable => format!(
            "cannot listen on {addr} ({setting}): this machine has no such address; use one of \
             its addresses, or 0.0.0.0 / [::] for all"
        ),
        _ => format!("cannot listen on {addr} ({setting}): {e}"),
    }
}

/// With TLS on, where `confab healthcheck` finds this machine's server:
/// `https://127.0.0.1:<https port>` (the address itself when bound to one).
pub fn local_base(cfg: &Config) -> Option<String> {
    let mode = cfg.tls.mode();
    if mode == TlsMode::Off {
        return None;
    }
    let addr = match (cfg.tls.https_listen, mode) {
        (Some(a), _) => a,
        (None, TlsMode::Files) => cfg.listen,
        (None, _) => SocketAddr::from(([127, 0, 0, 1], 443)),
    };
    let host = match addr.ip() {
        ip if ip.is_unspecified() => "127.0.0.1".to_string(),
        std::net::IpAddr::V6(ip) => format!("[{ip}]"),
        ip => ip.to_string(),
    };
    Some(format!("https://{host}:{}", addr.port()))
}

/// An https URL to a loopback address (certificate names cannot match it).
pub fn is_local_https(url: &str) -> bool {
    let Some(rest) = url.strip_prefix("https://") else {
        return false;
    };
    let host = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host = match host.strip_prefix('[') {
        Some(h) => h.split(']').next().unwrap_or(""),
        None => host.rsplit_once(':').map_or(host, |(h, _)| h),
    };
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}
