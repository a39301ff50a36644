//! Device cookies (the OWASP "device cookie" pattern): after a successful
//! sign-in the browser gets a long-lived, HttpOnly cookie, signed with a
//! server key, that names the account it proved itself for and a random
//! device id. A later sign-in to that account carrying a valid one comes
//! from a known device: it is not subject to the lockout that failures from
//! unknown sources can bring about, only to a failure budget of its own, so
//! an attacker guessing the password cannot lock the owner out.
//!
//! The cookie grants nothing by itself (it is not a session); stealing one
//! buys only that device's small failure budget. One cookie per account
//! (`confab_device_<user id>`), so several people can share a browser.
//! Stateless: nothing is stored, and a lost or rotated `device.key` only
//! makes every device unknown again.

use axum::http::HeaderMap;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::RngCore;
use ring::hmac;
use std::path::Path;
use uuid::Uuid;

pub const COOKIE_PREFIX: &str = "confab_device_";
/// Only the sign-in routes need it.
pub const COOKIE_PATH: &str = "/api/auth";
/// The key file in the data directory. Not carried by backups: a copy of it
/// would let whoever holds the backup mint "known device" cookies.
pub const KEY_FILE: &str = "device.key";

pub type DeviceId = [u8; 16];

pub struct DeviceKeys {
    key: hmac::Key,
}

/// The cookie name for `user`.
pub fn cookie_name(user: Uuid) -> String {
    format!("{COOKIE_PREFIX}{}", user.simple())
}

pub fn new_device_id() -> DeviceId {
    let mut d = [0u8; 16];
    rand::rngs::OsRng.fill_bytes(&mut d);
    d
}

impl DeviceKeys {
    pub fn from_secret(secret: &[u8]) -> DeviceKeys {
        DeviceKeys {
            key: hmac::Key::new(hmac::HMAC_SHA256, secret),
        }
    }

    /// Loads `<data>/device.key`, creating it (0600) on first start. A key
    /// of its own (not the JWT key), so a device cookie can never be
    /// mistaken for an access token.
    pub fn load_or_create(data_dir: &Path) -> std::io::Result<DeviceKeys> {
        let bytes = crate::keyfile::load_or_create(&data_dir.join(KEY_FILE), 32)?;
        Ok(Self::from_secret(&bytes))
    }

    fn message(user: Uuid, device: &str, issued: i64) -> String {
        format!("confab-device-v1|{}|{device}|{issued}", user.simple())
    }

    /// The cookie value for `device` of `user`, issued at `now`.
    pub fn issue(&self, user: Uuid, device: &DeviceId, now: i64) -> String {
        let d = URL_SAFE_NO_PAD.encode(device);
        let tag = hmac::sign(&self.key, Self::message(user, &d, now).as_bytes());
        format!("{d}.{now}.{}", URL_SAFE_NO_PAD.encode(tag.as_ref()))
    }

    /// The device id in `value` if it is a genuine cookie for `user`,
    /// issued no longer than `max_age_secs` ago.
    pub fn verify(&self, value: &str, user: Uuid, now: i64, max_age_secs: i64) -> Option<DeviceId> {
        let mut parts = value.splitn(3, '.');
        let (d, issued, tag) = (parts.next()?, parts.next()?, parts.next()?);
        let issued: i64 = issued.parse().ok()?;
        if issued > now + 60 || now - issued > max_age_secs {
            return None;
        }
        let tag = URL_SAFE_NO_PAD.decode(tag).ok()?;
        hmac::verify(&self.key, Self::message(user, d, issued).as_bytes(), &tag).ok()?;
        URL_SAFE_NO_PAD.decode(d).ok()?.try_into().ok()
    }

    /// The known device of `user` this request comes from, if any.
    pub fn from_headers(
        &self,
        headers: &HeaderMap,
        user: Uuid,
        now: i64,
        max_age_secs: i64,
    ) -> Option<DeviceId> {
        let name = cookie_name(user);
        headers
            .get_all(axum::http::header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(cookie::Cookie::split_parse)
            .filter_map(Result::ok)
            .filter(|c| c.name() == name)
            .find_map(|c| self.verify(c.value(), user, now, max_age_secs))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn genuine_cookies_verify_and_others_do_not() {
        let k = DeviceKeys::from_secret(b"0123456789abcdef0123456789abcdef");
        let (alice, bob) = (Uuid::now_v7(), Uuid::now_v7());
        let dev = new_device_id();
        let v = k.issue(alice, &dev, 1000);
        assert_eq!(k.verify(&v, alice, 1000, 100), Some(dev));
        assert_eq!(k.verify(&v, bob, 1000, 100), None, "names one account");
        assert_eq!(k.verify(&v, alice, 1101, 100), None, "too old");
        let other = DeviceKeys::from_secret(b"another-secret-another-secret-xx");
        assert_eq!(other.verify(&v, alice, 1000, 100), None, "foreign key");
        let forged = v.replacen(".1000.", ".1001.", 1);
        assert_eq!(k.verify(&forged, alice, 1001, 100), None, "tampered");
        assert_eq!(k.verify("garbage", alice, 1000, 100), None);

        let mut h = HeaderMap::new();
        h.insert(
            "cookie",
            format!("a=b; {}={v}", cookie_name(alice)).parse().unwrap(),
        );
        assert_eq!(k.from_headers(&h, alice, 1000, 100), Some(dev));
        assert_eq!(k.from_headers(&h, bob, 1000, 100), None);
    }
}
