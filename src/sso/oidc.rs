//! One OpenID Connect provider: discovery, the authorization code flow
//! with PKCE (S256), state and nonce, ID-token validation (signature from
//! the provider's JWKS, refetched when a token names a key it does not
//! list: key rotation; issuer, audience, expiry, nonce) and userinfo.
//!
//! The state of a sign-in under way (nonce, PKCE verifier) is kept in the
//! store under a hash of `state`, for ten minutes and one use, so any
//! instance can finish what another began and a replayed callback finds
//! nothing. Tokens are checked with `jsonwebtoken` (ring); requests go
//! through reqwest over rustls.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use serde_json::Value;
use sha2::{Digest, Sha256};
use tokio::sync::{Mutex, RwLock};
use uuid::Uuid;

use super::{AccountRules, OutsideIdentity, SsoError, SsoResult};
use crate::auth::tokens::{hash_token, random_token};
use crate::config::OidcEntry;
use crate::store::SharedStore;
use crate::store::identities::SsoState;

/// How long a sign-in may stay at the provider.
pub const STATE_TTL_SECS: i64 = 600;
/// Clock skew allowed on `exp`, `iat` and `nbf`.
const LEEWAY_SECS: u64 = 60;
/// A key id still missing right after a fetch is not fetched again for
/// this long (a token naming an unknown key cannot make us hammer the
/// provider).
const MISSING_KID_RETRY: Duration = Duration::from_secs(30);
/// How long discovery is trusted before it is read again.
const DISCOVERY_TTL: Duration = Duration::from_secs(3600);
/// Largest response read from a provider.
const MAX_BODY: usize = 1024 * 1024;

/// The parts of the discovery document confab uses.
#[derive(Debug, Clone, Deserialize)]
pub struct Discovery {
    pub issuer: String,
    pub authorization_endpoint: String,
    pub token_endpoint: String,
    #[serde(default)]
    pub userinfo_endpoint: Option<String>,
    pub jwks_uri: String,
    #[serde(default)]
    pub token_endpoint_auth_methods_supported: Option<Vec<String>>,
}

#[derive(Default)]
struct Keys {
    keys: Vec<Jwk>,
    /// Key ids asked for and missing after the fetch at that time.
    missing: HashMap<String, Instant>,
}

/// A configured provider and what was learned from it.
pub struct OidcClient {
    pub cfg: OidcEntry,
    pub redirect_uri: String,
    http: reqwest::Client,
    discovery: RwLock<Option<(Arc<Discovery>, Instant)>>,
    keys: RwLock<Keys>,
    /// One JWKS fetch at a time.
    fetching: Mutex<()>,
}

/// Where to send the browser, and the `state` to bind to it (a cookie).
pub struct Begun {
    pub redirect_url: String,
    pub state: String,
}

/// A finished sign-in: who, and the account asking to link it (if any).
pub struct Finished {
    pub identity: OutsideIdentity,
    pub link_user: Option<Uuid>,
}

#[derive(Deserialize)]
struct TokenResponse {
    id_token: Option<String>,
    access_token: Option<String>,
}

fn unavailable(e: impl std::fmt::Display) -> SsoError {
    SsoError::ProviderUnavailable(e.to_string())
}

/// PKCE S256 challenge of `verifier`.
pub fn pkce_challenge(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

const ALLOWED_ALGS: &[Algorithm] = &[
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::EdDSA,
];

impl OidcClient {
    pub fn new(cfg: OidcEntry, public_base: &str) -> OidcClient {
        let redirect_uri = format!(
            "{}/api/auth/oidc/{}/callback",
            public_base.trim_end_matches('/'),
            cfg.name
        );
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(15))
            .connect_timeout(Duration::from_secs(5))
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("confab/", env!("CARGO_PKG_VERSION")))
            .build()
            .expect("the HTTP client builds");
        OidcClient {
            cfg,
            redirect_uri,
            http,
            discovery: RwLock::new(None),
            keys: RwLock::new(Keys::default()),
            fetching: Mutex::new(()),
        }
    }

    pub fn display_name(&self) -> String {
        self.cfg
            .display_name
            .clone()
            .unwrap_or_else(|| self.cfg.name.clone())
    }

    pub fn rules(&self) -> AccountRules<'_> {
        AccountRules {
            auto_create: self.cfg.auto_create,
            allowed_domains: &self.cfg.allowed_domains,
            required_groups: &self.cfg.required_groups,
            admin_groups: &self.cfg.admin_groups,
            group_map: &self.cfg.group_map,
            keep_username: false,
        }
    }

    async fn get_json<T: serde::de::DeserializeOwned>(
        &self,
        req: reqwest::RequestBuilder,
    ) -> SsoResult<T> {
        let resp = req.send().await.map_err(|e| {
            unavailable(format!(
                "{} did not answer ({})",
                self.cfg.name,
                e.without_url()
            ))
        })?;
        let status = resp.status();
        let body = resp
            .bytes()
            .await
            .map_err(|e| unavailable(e.without_url()))?;
        if body.len() > MAX_BODY {
            return Err(unavailable("the answer is too large"));
        }
        if !status.is_success() {
            // The provider's own error code (never the body, which may echo input).
            let code = serde_json::from_slice::<Value>(&body)
                .ok()
                .and_then(|v| v.get("error").and_then(Value::as_str).map(str::to_owned))
                .map(|c| c.chars().take(64).collect::<String>())
                .unwrap_or_else(|| format!("HTTP {}", status.as_u16()));
            return Err(SsoError::ProviderRefused(code));
        }
        serde_json::from_slice(&body)
            .map_err(|_| unavailable("the answer is not the JSON expected"))
    }

    /// The provider's discovery document (cached for an hour). Its issuer
    /// must be the configured one.
    pub async fn discovery(&self) -> SsoResult<Arc<Discovery>> {
        if let Some((d, at)) = &*self.discovery.read().await
            && at.elapsed() < DISCOVERY_TTL
        {
            return Ok(d.clone());
        }
        let url = format!(
            "{}/.well-known/openid-configuration",
            self.cfg.issuer.trim_end_matches('/')
        );
        let d: Discovery = self.get_json(self.http.get(url)).await?;
        if d.issuer.trim_end_matches('/') != self.cfg.issuer.trim_end_matches('/') {
            return Err(unavailable(
                "the discovery document names another issuer than the configured one",
            ));
        }
        let d = Arc::new(d);
        *self.discovery.write().await = Some((d.clone(), Instant::now()));
        Ok(d)
    }

    /// Starts a sign-in (or, with `link_user`, linking an identity to that
    /// account): stores its state and says where to send the browser.
    pub async fn begin(&self, store: &SharedStore, link_user: Option<Uuid>) -> SsoResult<Begun> {
        let d = self.discovery().await?;
        let state = random_token();
        let nonce = random_token();
        let verifier = format!("{}{}", random_token(), random_token());
        let now = crate::clock::now();
        let record = SsoState {
            provider: self.cfg.name.clone(),
            nonce: nonce.clone(),
            pkce_verifier: verifier.clone(),
            link_user,
            created_at: now,
            expires_at: now + STATE_TTL_SECS,
        };
        store.put_sso_state(&hash_token(&state), &record).await?;
        let mut scopes = vec!["openid".to_string()];
        scopes.extend(self.cfg.scopes.iter().filter(|s| *s != "openid").cloned());
        let mut url = reqwest::Url::parse(&d.authorization_endpoint)
            .map_err(|_| unavailable("the authorization endpoint is not a URL"))?;
        url.query_pairs_mut()
            .append_pair("response_type", "code")
            .append_pair("client_id", &self.cfg.client_id)
            .append_pair("redirect_uri", &self.redirect_uri)
            .append_pair("scope", &scopes.join(" "))
            .append_pair("state", &state)
            .append_pair("nonce", &nonce)
            .append_pair("code_challenge", &pkce_challenge(&verifier))
            .append_pair("code_challenge_method", "S256");
        Ok(Begun {
            redirect_url: url.to_string(),
            state,
        })
    }

    /// Finishes a sign-in from the callback: spends the state (once),
    /// exchanges the code with the PKCE verifier, validates the ID token
    /// and reads userinfo. `iss` is the callback's `iss` parameter (RFC
    /// 9207), when the provider sends one: it must be this provider's
    /// issuer (a mix-up with another provider is refused).
    pub async fn finish(
        &self,
        store: &SharedStore,
        state: &str,
        code: &str,
        iss: Option<&str>,
    ) -> SsoResult<Finished> {
        let now = crate::clock::now();
        let pending = store
            .take_sso_state(&hash_token(state), now)
            .await?
            .filter(|p| p.provider == self.cfg.name)
            .ok_or(SsoError::StateInvalid)?;
        let d = self.discovery().await?;
        if iss.is_some_and(|i| i.trim_end_matches('/') != d.issuer.trim_end_matches('/')) {
            return Err(SsoError::TokenIssuer);
        }
        let mut form = vec![
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", self.redirect_uri.as_str()),
            ("code_verifier", pending.pkce_verifier.as_str()),
        ];
        let mut req = self.http.post(&d.token_endpoint);
        let secret = self.cfg.client_secret.as_ref().map(|s| s.expose());
        let basic = d
            .token_endpoint_auth_methods_supported
            .as_ref()
            .is_none_or(|m| m.iter().any(|x| x == "client_secret_basic"));
        match secret {
            Some(s) if basic => {
                // RFC 6749 2.3.1: both parts form-encoded before Basic.
                let enc = |v: &str| url_encode(v);
                req = req.basic_auth(enc(&self.cfg.client_id), Some(enc(s)));
            }
            Some(s) => {
                form.push(("client_id", self.cfg.client_id.as_str()));
                form.push(("client_secret", s));
            }
            None => form.push(("client_id", self.cfg.client_id.as_str())),
        }
        let tokens: TokenResponse = self
            .get_json(req.header("accept", "application/json").form(&form))
            .await?;
        let id_token = tokens
            .id_token
            .ok_or_else(|| SsoError::TokenInvalid("the provider sent no ID token".into()))?;
        let mut claims = self.validate_id_token(&d, &id_token).await?;
        if claims.get("nonce").and_then(Value::as_str) != Some(pending.nonce.as_str()) {
            return Err(SsoError::NonceMismatch);
        }
        let sub = claims
            .get("sub")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty() && s.len() <= 255)
            .ok_or_else(|| SsoError::TokenInvalid("the token has no subject".into()))?
            .to_string();
        if let (Some(ep), Some(at)) = (&d.userinfo_endpoint, &tokens.access_token) {
            let info: Value = self.get_json(self.http.get(ep).bearer_auth(at)).await?;
            if info.get("sub").and_then(Value::as_str) != Some(sub.as_str()) {
                return Err(SsoError::TokenInvalid(
                    "userinfo names another subject than the ID token".into(),
                ));
            }
            if let (Value::Object(c), Value::Object(i)) = (&mut claims, info) {
                for (k, v) in i {
                    c.entry(k).or_insert(v);
                }
            }
        }
        Ok(Finished {
            identity: self.identity(&d, sub, &claims),
            link_user: pending.link_user,
        })
    }

    fn identity(&self, d: &Discovery, subject: String, claims: &Value) -> OutsideIdentity {
        let s = |k: &str| {
            claims
                .get(k)
                .and_then(Value::as_str)
                .map(str::to_owned)
                .filter(|v| !v.is_empty())
        };
        let email_verified = match claims.get("email_verified") {
            Some(Value::Bool(b)) => *b,
            Some(Value::String(v)) => v == "true",
            _ => false,
        };
        let groups = match claims.get(&self.cfg.groups_claim) {
            Some(Value::Array(a)) => a
                .iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect(),
            Some(Value::String(g)) => vec![g.clone()],
            _ => Vec::new(),
        };
        OutsideIdentity {
            provider: self.cfg.name.clone(),
            issuer: d.issuer.clone(),
            subject,
            email: s("email"),
            email_verified,
            username_hint: s(&self.cfg.username_claim).or_else(|| s("preferred_username")),
            groups,
        }
    }

    /// Checks the ID token's signature (JWKS), issuer, audience and
    /// expiry; returns its claims.
    async fn validate_id_token(&self, d: &Discovery, token: &str) -> SsoResult<Value> {
        let header = jsonwebtoken::decode_header(token)
            .map_err(|_| SsoError::TokenInvalid("the ID token is not a JWT".into()))?;
        if !ALLOWED_ALGS.contains(&header.alg) {
            return Err(SsoError::TokenInvalid(format!(
                "the ID token is signed with {:?}, which confab does not accept",
                header.alg
            )));
        }
        let key = self.key_for(d, header.kid.as_deref()).await?;
        let mut v = Validation::new(header.alg);
        v.set_issuer(&[&d.issuer]);
        v.set_audience(&[&self.cfg.client_id]);
        v.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        v.leeway = LEEWAY_SECS;
        let data = jsonwebtoken::decode::<Value>(token, &key, &v).map_err(|e| match e.kind() {
            ErrorKind::InvalidAudience => SsoError::TokenAudience,
            ErrorKind::ExpiredSignature => SsoError::TokenExpired,
            ErrorKind::InvalidIssuer => SsoError::TokenIssuer,
            ErrorKind::InvalidSignature => SsoError::TokenSignature,
            ErrorKind::ImmatureSignature => SsoError::TokenInvalid("not valid yet".into()),
            ErrorKind::MissingRequiredClaim(c) => {
                SsoError::TokenInvalid(format!("the claim {c} is missing"))
            }
            _ => SsoError::TokenInvalid("it cannot be read".into()),
        })?;
        let claims = data.claims;
        // Several audiences: the authorized party must be confab.
        if let Some(Value::Array(aud)) = claims.get("aud")
            && aud.len() > 1
            && claims.get("azp").and_then(Value::as_str) != Some(self.cfg.client_id.as_str())
        {
            return Err(SsoError::TokenAudience);
        }
        Ok(claims)
    }

    fn pick(keys: &[Jwk], kid: Option<&str>) -> Option<DecodingKey> {
        let jwk = match kid {
            Some(k) => keys
                .iter()
                .find(|j| j.common.key_id.as_deref() == Some(k))?,
            None if keys.len() == 1 => &keys[0],
            None => return None,
        };
        DecodingKey::from_jwk(jwk).ok()
    }

    /// The key `kid` names: from the cached JWKS, else after fetching it
    /// again (the provider rotated its keys).
    async fn key_for(&self, d: &Discovery, kid: Option<&str>) -> SsoResult<DecodingKey> {
        if let Some(k) = Self::pick(&self.keys.read().await.keys, kid) {
            return Ok(k);
        }
        let _one = self.fetching.lock().await;
        {
            let keys = self.keys.read().await;
            if let Some(k) = Self::pick(&keys.keys, kid) {
                return Ok(k);
            }
            let recently = kid
                .and_then(|k| keys.missing.get(k))
                .is_some_and(|at| at.elapsed() < MISSING_KID_RETRY);
            if recently {
                return Err(SsoError::TokenSignature);
            }
        }
        let set: Value = self.get_json(self.http.get(&d.jwks_uri)).await?;
        // Keys confab cannot read (encryption keys, unknown types) are skipped.
        let keys: Vec<Jwk> = set
            .get("keys")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|k| serde_json::from_value(k.clone()).ok())
                    .collect()
            })
            .unwrap_or_default();
        tracing::info!(provider = %self.cfg.name, keys = keys.len(), "fetched the provider's signing keys");
        let mut w = self.keys.write().await;
        w.keys = keys;
        w.missing.retain(|_, at| at.elapsed() < MISSING_KID_RETRY);
        match Self::pick(&w.keys, kid) {
            Some(k) => Ok(k),
            None => {
                if let Some(k) = kid {
                    w.missing.insert(k.to_string(), Instant::now());
                }
                Err(SsoError::TokenSignature)
            }
        }
    }
}

/// `application/x-www-form-urlencoded` of one value.
fn url_encode(v: &str) -> String {
    let mut u = reqwest::Url::parse("x:/").expect("literal URL");
    u.query_pairs_mut().append_pair("v", v);
    u.query().unwrap_or("v=")[2..].to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pkce_challenge_matches_rfc7636_example() {
        // RFC 7636 appendix B.
        assert_eq!(
            pkce_challenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
    }

    #[test]
    fn client_credentials_are_form_encoded() {
        assert_eq!(url_encode("a b+c/d"), "a+b%2Bc%2Fd");
        assert_eq!(url_encode("plain"), "plain");
    }
}
