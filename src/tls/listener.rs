//! The TLS side of the HTTPS listener: an accept loop that runs every
//! handshake in its own task (with a deadline, and a cap on how many run at
//! once) so a slow or hostile client never holds up the others, and hands
//! finished connections to `axum::serve` through the [`Listener`] trait.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::serve::Listener;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

use super::Tls;
use super::resolver::ACME_TLS_ALPN;

const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
const MAX_HANDSHAKES: usize = 1024;

pub struct TlsListener {
    rx: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    local: SocketAddr,
    tls: Arc<Tls>,
    task: JoinHandle<()>,
}

impl TlsListener {
    /// Starts accepting on `tcp`; handshakes use `tls`'s configuration, so
    /// a certificate swapped into it is served from the next handshake on.
    pub fn new(tcp: TcpListener, tls: Arc<Tls>) -> std::io::Result<TlsListener> {
        let local = tcp.local_addr()?;
        let (tx, rx) = mpsc::channel(64);
        let acceptor = TlsAcceptor::from(tls.server_config());
        let task = tokio::spawn(accept_loop(tcp, acceptor, tx));
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

impl Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.rx.recv().await {
            Some(conn) => conn,
            // The accept loop only ends when this listener is dropped.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<SocketAddr> {
        Ok(self.local)
    }
}

async fn accept_loop(
    tcp: TcpListener,
    acceptor: TlsAcceptor,
    tx: mpsc::Sender<(TlsStream<TcpStream>, SocketAddr)>,
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
        let Ok(permit) = permits.clone().acquire_owned().await else {
            return;
        };
        let acceptor = acceptor.clone();
        let tx = tx.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let _ = sock.set_nodelay(true);
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(sock)).await {
                Ok(Ok(mut stream)) => {
                    if stream.get_ref().1.alpn_protocol() == Some(ACME_TLS_ALPN) {
                        // A TLS-ALPN-01 validator: the handshake was the answer.
                        let _ = stream.shutdown().await;
                        return;
                    }
                    // IPv4 clients of a dual-stack socket show up as
                    // ::ffff:a.b.c.d; the rest of confab expects a.b.c.d.
                    let peer = SocketAddr::new(peer.ip().to_canonical(), peer.port());
                    let _ = tx.send((stream, peer)).await;
                }
                Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
            }
        });
    }
}
