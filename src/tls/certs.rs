//! Certificates as rustls wants them: PEM chains and keys parsed into a
//! `CertifiedKey` (with a check that key and certificate belong together),
//! what an operator wants to know about a certificate (names, issuer,
//! validity), the self-signed stand-in and the TLS-ALPN-01 challenge
//! certificate.

use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use serde::Serialize;
use utoipa::ToSchema;

/// Where the certificate being served came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CertSource {
    /// `tls.cert` / `tls.key`.
    Files,
    /// Issued by the ACME CA.
    Acme,
    /// Generated at start-up, served only until the first ACME issuance.
    SelfSigned,
}

/// What the status API and the logs say about a certificate.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct CertInfo {
    pub source: CertSource,
    /// DNS names in the certificate's subjectAltName.
    pub names: Vec<String>,
    pub issuer: String,
    /// Serial number, hex.
    pub serial: String,
    /// RFC 3339.
    pub not_before: String,
    /// RFC 3339.
    pub not_after: String,
    /// Whole days until `not_after` (negative once expired).
    pub days_left: i64,
    /// Issued by a CA (not self-signed): browsers can trust it, so HSTS is sent.
    pub trusted: bool,
    #[serde(skip)]
    pub not_before_ts: i64,
    #[serde(skip)]
    pub not_after_ts: i64,
}

impl CertInfo {
    /// `days_left` as of `now` (unix seconds).
    pub fn refreshed(&self, now: i64) -> CertInfo {
        let mut c = self.clone();
        c.days_left = (self.not_after_ts - now).div_euclid(86_400);
        c
    }
}

/// A certificate ready to serve.
pub struct Loaded {
    pub key: Arc<CertifiedKey>,
    pub info: CertInfo,
}

pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Parses a PEM chain (leaf first) and a PEM private key. `cert_name` and
/// `key_name` say where they came from, for the error sentence.
pub fn from_pem(
    chain_pem: &[u8],
    key_pem: &[u8],
    source: CertSource,
    cert_name: &str,
    key_name: &str,
) -> Result<Loaded, String> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(chain_pem)
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{cert_name} is not a valid PEM certificate file: {e}"))?;
    if chain.is_empty() {
        return Err(format!(
            "{cert_name} holds no certificate (expected PEM blocks starting with -----BEGIN CERTIFICATE-----)"
        ));
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| match e {
        rustls_pki_types::pem::Error::NoItemsFound => format!(
            "{key_name} holds no private key (expected a PEM block such as -----BEGIN PRIVATE KEY-----)"
        ),
        e => format!("{key_name} is not a valid PEM private key: {e}"),
    })?;
    let info = describe(&chain[0], source)
        .map_err(|e| format!("{cert_name}: the first certificate cannot be read: {e}"))?;
    let key = CertifiedKey::from_der(chain, key, &provider()).map_err(|e| match e {
        rustls::Error::InconsistentKeys(_) => {
            format!("{key_name} is not the private key of the certificate in {cert_name}")
        }
        e => format!("{key_name}: unsupported private key ({e}); use an RSA, ECDSA or Ed25519 key"),
    })?;
    Ok(Loaded {
        key: Arc::new(key),
        info,
    })
}

/// Reads names, issuer, serial and validity from a DER certificate.
pub fn describe(der: &CertificateDer<'_>, source: CertSource) -> Result<CertInfo, String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref()).map_err(|e| e.to_string())?;
    let mut names = Vec::new();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for n in &san.value.general_names {
            match n {
                x509_parser::extensions::GeneralName::DNSName(d) => names.push(d.to_string()),
                x509_parser::extensions::GeneralName::IPAddress(ip) => match ip.len() {
                    4 => names.push(
                        std::net::Ipv4Addr::from(<[u8; 4]>::try_from(*ip).expect("4 bytes"))
                            .to_string(),
                    ),
                    16 => names.push(
                        std::net::Ipv6Addr::from(<[u8; 16]>::try_from(*ip).expect("16 bytes"))
                            .to_string(),
                    ),
                    _ => {}
                },
                _ => {}
            }
        }
    }
    let self_signed = cert.issuer().as_raw() == cert.subject().as_raw();
    let not_before_ts = cert.validity().not_before.timestamp();
    let not_after_ts = cert.validity().not_after.timestamp();
    let info = CertInfo {
        source,
        names,
        issuer: cert.issuer().to_string(),
        serial: hex::encode(cert.raw_serial()),
        not_before: crate::clock::rfc3339(not_before_ts),
        not_after: crate::clock::rfc3339(not_after_ts),
        days_left: 0,
        trusted: source != CertSource::SelfSigned && !self_signed,
        not_before_ts,
        not_after_ts,
    };
    Ok(info.refreshed(crate::clock::now()))
}

/// A self-signed certificate for `domains`, served only while the first
/// ACME certificate is being obtained.
pub fn self_signed(domains: &[String]) -> Result<Loaded, String> {
    let key = rcgen::KeyPair::generate().map_err(|e| e.to_string())?;
    let mut params = rcgen::CertificateParams::new(domains.to_vec()).map_err(|e| e.to_string())?;
    params.distinguished_name = rcgen::DistinguishedName::new();
    params.distinguished_name.push(
        rcgen::DnType::CommonName,
        format!(
            "confab self-signed (waiting for a certificate for {})",
            domains.first().map(String::as_str).unwrap_or("?")
        ),
    );
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::hours(1);
    params.not_after = now + time::Duration::days(7);
    let cert = params.self_signed(&key).map_err(|e| e.to_string())?;
    from_pem(
        cert.pem().as_bytes(),
        key.serialize_pem().as_bytes(),
        CertSource::SelfSigned,
        "self-signed certificate",
        "self-signed key",
    )
}

/// The TLS-ALPN-01 answer for `domain` (RFC 8737): a self-signed
/// certificate for that one name carrying the acmeIdentifier extension
/// with the SHA-256 digest of the key authorization.
pub fn alpn_challenge(domain: &str, digest: &[u8]) -> Result<Arc<CertifiedKey>, String> {
    let key = rcgen::KeyPair::generate().map_err(|e| e.to_string())?;
    let mut params =
        rcgen::CertificateParams::new(vec![domain.to_string()]).map_err(|e| e.to_string())?;
    params.distinguished_name = rcgen::DistinguishedName::new();
    params.custom_extensions = vec![rcgen::CustomExtension::new_acme_identifier(digest)];
    let cert = params.self_signed(&key).map_err(|e| e.to_string())?;
    let der = PrivateKeyDer::try_from(key.serialize_der()).map_err(|e| e.to_string())?;
    // Not `from_der`: its key check parses the certificate with webpki,
    // which refuses the critical acmeIdentifier extension.
    let signer = provider()
        .key_provider
        .load_private_key(der)
        .map_err(|e| e.to_string())?;
    Ok(Arc::new(CertifiedKey::new(
        vec![cert.der().clone()],
        signer,
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn self_signed_parses_and_is_not_trusted() {
        let l = self_signed(&["chat.example.com".into()]).unwrap();
        assert_eq!(l.info.names, vec!["chat.example.com"]);
        assert_eq!(l.info.source, CertSource::SelfSigned);
        assert!(!l.info.trusted);
        assert!((6..=7).contains(&l.info.days_left), "{}", l.info.days_left);
    }

    #[test]
    fn mismatched_key_and_garbage_are_named() {
        let a = rcgen::generate_simple_self_signed(vec!["a.example".into()]).unwrap();
        let b = rcgen::generate_simple_self_signed(vec!["b.example".into()]).unwrap();
        let e = from_pem(
            a.cert.pem().as_bytes(),
            b.signing_key.serialize_pem().as_bytes(),
            CertSource::Files,
            "cert.pem",
            "key.pem",
        )
        .err()
        .unwrap();
        assert!(e.contains("key.pem is not the private key"), "{e}");
        let e = from_pem(b"hello", b"", CertSource::Files, "cert.pem", "key.pem")
            .err()
            .unwrap();
        assert!(e.contains("cert.pem holds no certificate"), "{e}");
        let e = from_pem(
            a.cert.pem().as_bytes(),
            b"nope",
            CertSource::Files,
            "cert.pem",
            "key.pem",
        )
        .err()
        .unwrap();
        assert!(e.contains("key.pem holds no private key"), "{e}");
    }

    #[test]
    fn alpn_challenge_cert_builds() {
        alpn_challenge("chat.example.com", &[7u8; 32]).unwrap();
    }
}
