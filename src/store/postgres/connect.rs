//! Connections: the pool, and TLS with rustls as `sslmode` asks (libpq's
//! meanings, see [`PgSslMode`]). tokio-postgres itself knows only
//! disable/prefer/require; the certificate checks of `verify-ca` and
//! `verify-full` are the rustls verifiers below.

use std::sync::Arc;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::config::{PgRoots, PgSettings, PgSslMode};
use crate::store::{StoreError, StoreResult};

/// The pool for `settings` (connections are made on first use).
pub(super) fn pool(settings: &PgSettings) -> StoreResult<Pool> {
    let cfg = settings
        .client_config()
        .map_err(|e| StoreError::Backend(e.to_string()))?;
    let tls = MakeRustlsConnect::new(tls_config(settings)?);
    let mgr = Manager::from_config(
        cfg,
        tls,
        ManagerConfig {
            // A connection that broke (a failover) is found on its next
            // query and replaced; checking each one first costs a round trip.
            recycling_method: RecyclingMethod::Fast,
        },
    );
    Pool::builder(mgr)
        .max_size(settings.pool_size)
        .runtime(deadpool_postgres::Runtime::Tokio1)
        // A pool exhausted for this long is an outage, not a queue.
        .wait_timeout(Some(std::time::Duration::from_secs(30)))
        .create_timeout(Some(std::time::Duration::from_secs(15)))
        .build()
        .map_err(|e| StoreError::Backend(format!("cannot build the connection pool: {e}")))
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The rustls client configuration `sslmode` and `sslrootcert` ask for.
pub(crate) fn tls_config(s: &PgSettings) -> StoreResult<rustls::ClientConfig> {
    let provider = provider();
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| StoreError::Backend(format!("TLS setup: {e}")))?;
    let verify_chain = match s.ssl {
        PgSslMode::Disable => false,
        PgSslMode::Prefer | PgSslMode::Require => s.roots_given,
        PgSslMode::VerifyCa | PgSslMode::VerifyFull => true,
    };
    let verifier: Arc<dyn ServerCertVerifier> = if !verify_chain {
        Arc::new(Unverified(provider.signature_verification_algorithms))
    } else {
        let roots = Arc::new(roots(&s.roots)?);
        let webpki = WebPkiServerVerifier::builder_with_provider(roots, provider.clone())
            .build()
            .map_err(|e| StoreError::Backend(format!("TLS setup: {e}")))?;
        if s.ssl == PgSslMode::VerifyFull {
            webpki
        } else {
            Arc::new(ChainOnly(webpki))
        }
    };
    Ok(builder
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth())
}

fn roots(r: &PgRoots) -> StoreResult<RootCertStore> {
    let mut store = RootCertStore::empty();
    match r {
        PgRoots::File(path) => {
            let pem = std::fs::read(path).map_err(|e| {
                StoreError::Backend(format!("cannot read sslrootcert {}: {e}", path.display()))
            })?;
            for cert in rustls_pki_types::pem::PemObject::pem_slice_iter(&pem) {
                let cert: CertificateDer<'static> = cert.map_err(|e| {
                    StoreError::Backend(format!("sslrootcert {}: {e}", path.display()))
                })?;
                store.add(cert).map_err(|e| {
                    StoreError::Backend(format!("sslrootcert {}: {e}", path.display()))
                })?;
            }
        }
        PgRoots::System => {
            store.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
            let native = rustls_native_certs::load_native_certs();
            store.add_parsable_certificates(native.certs);
        }
    }
    if store.is_empty() {
        return Err(StoreError::Backend(
            "no root certificate to verify the database server with (sslrootcert)".into(),
        ));
    }
    Ok(store)
}

/// `sslmode=prefer|require` without a root certificate: encrypted, the
/// certificate itself not checked (libpq does the same). The handshake
/// signatures are still verified, so the session key belongs to whoever
/// holds the certificate's key.
#[derive(Debug)]
struct Unverified(WebPkiSupportedAlgorithms);

impl ServerCertVerifier for Unverified {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0)
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_schemes()
    }
}

/// `sslmode=verify-ca`: the chain must lead to a trusted root; the name in
/// the certificate need not be the host's.
#[derive(Debug)]
struct ChainOnly(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        // webpki checks the chain first and the name last, so a name
        // mismatch means the chain was good.
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp, now)
        {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}
