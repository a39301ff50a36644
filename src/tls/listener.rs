//! The TLS side of the HTTPS listener: an accept loop that admits a
//! connection only under the server's connection cap, runs every handshake
//! in its own task (with a deadline, `http.tls_handshake_timeout_secs`, and a
//! cap on how many run at once) so a slow or hostile client never holds up
//! the others, and hands finished connections to `server::run` through the
//! [`Accept`] trait.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

use super::Tls;
use super::resolver::ACME_TLS_ALPN;
use crate::server::{Accept, Accepted, ConnCap, canonical};

const MAX_HANDSHAKES: usize = 1024;

pub struct TlsListener {
    rx: mpsc::Receiver<Accepted<TlsStream<TcpStream>>>,
    local: SocketAddr,
    tls: Arc<Tls>,
    task: JoinHandle<()>,
}

impl TlsListener {
    /// Starts accepting on `tcp`; handshakes use `tls`'s configuration, so
    /// a certificate swapped into it is served from the next handshake on.
    /// Connections over `cap` are closed before their handshake.
    pub fn new(
        tcp: TcpListener,
        tls: Arc<Tls>,
        cap: Arc<ConnCap>,
        handshake_timeout: Duration,
    ) -> std::io::Result<TlsListener> {
        let local = tcp.local_addr()?;
        let (tx, rx) = mpsc::channel(64);
        let acceptor = TlsAcceptor::from(tls.server_config());
        let task = tokio::spawn(accept_loop(tcp, acceptor, cap, handshake_timeout, tx));
        Ok(TlsListener {
            rx,
            local,
            tls,
            task,
        })
    }

    pub fn tls(&self) -> &Arc<Tls> {
        &self.tls
    }
}

impl Drop for TlsListener {
    fn drop(&mut self) {
        // Closes the listening socket and stops pending handshakes.
        self.task.abort();
    }
}

impl TlsListener {
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }
}

impl Accept for TlsListener {
    type Io = TlsStream<TcpStream>;

    async fn accept(&mut self) -> Accepted<Self::Io> {
        match self.rx.recv().await {
            Some(conn) => conn,
            // The accept loop only ends when this listener is dropped.
            None => std::future::pending().await,
        }
    }
}

async fn accept_loop(
    tcp: TcpListener,
    acceptor: TlsAcceptor,
    cap: Arc<ConnCap>,
    handshake_timeout: Duration,
    tx: mpsc::Sender<Accepted<TlsStream<TcpStream>>>,
) {
    let permits = Arc::new(Semaphore::new(MAX_HANDSHAKES));
    loop {
        let (sock, peer) = match tcp.accept().await {
            Ok(c) => c,
            Err(e) => {
                // Out of file descriptors and the like: wait a little
                // instead of spinning (as axum does for plain TCP).
                tracing::warn!(error = %e, "accepting a connection failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        // IPv4 clients of a dual-stack socket show up as ::ffff:a.b.c.d; the
        // rest of confab expects a.b.c.d.
        let peer = canonical(peer);
        // Over the cap: closed at once, before any handshake work.
        let Some(conn_permit) = cap.try_acquire(peer.ip()) else {
            tracing::debug!(%peer, "connection refused: too many open connections");
            continue;
        };
        let Ok(permit) = permits.clone().acquire_owned().await else {
            return;
        };
        let acceptor = acceptor.clone();
        let tx = tx.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let _ = sock.set_nodelay(true);
            match tokio::time::timeout(handshake_timeout, acceptor.accept(sock)).await {
                Ok(Ok(mut stream)) => {
                    if stream.get_ref().1.alpn_protocol() == Some(ACME_TLS_ALPN) {
                        // A TLS-ALPN-01 validator: the handshake was the answer.
                        let _ = stream.shutdown().await;
                        return;
                    }
                    let _ = tx
                        .send(Accepted {
                            io: stream,
                            peer,
                            permit: conn_permit,
                        })
                        .await;
                }
                Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
            }
        });
    }
}
