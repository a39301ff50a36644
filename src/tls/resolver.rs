//! The rustls certificate resolver: the certificate in use (swapped live on
//! reload or renewal; connections already open keep the one they
//! negotiated) and, while an ACME order is being validated, the TLS-ALPN-01
//! answers, chosen when a client offers only the `acme-tls/1` protocol.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

/// The ALPN protocol of TLS-ALPN-01 validation (RFC 8737).
pub const ACME_TLS_ALPN: &[u8] = b"acme-tls/1";

#[derive(Debug)]
pub struct Resolver {
    current: RwLock<Arc<CertifiedKey>>,
    /// domain (lowercase) → challenge certificate.
    alpn: RwLock<HashMap<String, Arc<CertifiedKey>>>,
}

impl Resolver {
    pub fn new(initial: Arc<CertifiedKey>) -> Resolver {
        Resolver {
            current: RwLock::new(initial),
            alpn: RwLock::new(HashMap::new()),
        }
    }

    /// Serves `key` to every handshake from now on.
    pub fn swap(&self, key: Arc<CertifiedKey>) {
        *self.current.write().expect("resolver lock") = key;
    }

    pub fn current(&self) -> Arc<CertifiedKey> {
        self.current.read().expect("resolver lock").clone()
    }

    pub fn set_alpn_challenge(&self, domain: &str, key: Arc<CertifiedKey>) {
        self.alpn
            .write()
            .expect("resolver lock")
            .insert(domain.to_ascii_lowercase(), key);
    }

    pub fn clear_alpn_challenges(&self) {
        self.alpn.write().expect("resolver lock").clear();
    }
}

impl ResolvesServerCert for Resolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let acme = hello
            .alpn()
            .is_some_and(|mut protocols| protocols.any(|p| p == ACME_TLS_ALPN));
        if acme {
            // A validator: answer only with the challenge certificate for
            // the name it asks about, never with the real one.
            let name = hello.server_name()?.to_ascii_lowercase();
            return self.alpn.read().expect("resolver lock").get(&name).cloned();
        }
        Some(self.current())
    }
}
