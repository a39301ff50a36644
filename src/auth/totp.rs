//! Time-based one-time passwords (RFC 6238 over RFC 4226 HOTP): HMAC-SHA1,
//! 6 digits, 30-second steps, as every authenticator app computes them;
//! plus the one-time recovery codes that stand in for the app.

use base64::Engine;
use rand::Rng;
use ring::hmac;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// Seconds per step.
pub const STEP_SECS: i64 = 30;
/// Bytes of a new secret (160 bits, RFC 4226's recommendation).
pub const SECRET_LEN: usize = 20;
/// Recovery codes made at enrolment.
pub const RECOVERY_CODES: usize = 10;
/// Steps either side of now a code may come from (clock drift, typing).
const SKEW: i64 = 1;

pub fn new_secret() -> Vec<u8> {
    let mut s = vec![0u8; SECRET_LEN];
    rand::thread_rng().fill(&mut s[..]);
    s
}

/// The secret as authenticator apps take it typed in.
pub fn base32(secret: &[u8]) -> String {
    data_encoding::BASE32_NOPAD.encode(secret)
}

/// The step `now` (Unix seconds) falls in.
pub fn step_at(now: i64) -> u64 {
    (now.max(0) / STEP_SECS) as u64
}

/// The 6-digit code of `step`.
pub fn code(secret: &[u8], step: u64) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, secret);
    let mac = hmac::sign(&key, &step.to_be_bytes());
    let h = mac.as_ref();
    let off = (h[h.len() - 1] & 0x0f) as usize;
    let bin = u32::from_be_bytes([h[off] & 0x7f, h[off + 1], h[off + 2], h[off + 3]]);
    format!("{:06}", bin % 1_000_000)
}

/// The step whose code `given` is, among the steps around `now` that are
/// newer than `last_step` (a code once accepted is never accepted again).
pub fn verify(secret: &[u8], given: &str, now: i64, last_step: u64) -> Option<u64> {
    let given: String = given.chars().filter(|c| !c.is_whitespace()).collect();
    if given.len() != 6 || !given.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let now = step_at(now) as i64;
    let mut found = None;
    // Every candidate is compared (in constant time), so the time taken
    // does not say which one matched.
    for d in -SKEW..=SKEW {
        let step = now + d;
        if step < 0 || (step as u64) <= last_step {
            continue;
        }
        let want = code(secret, step as u64);
        if bool::from(want.as_bytes().ct_eq(given.as_bytes())) {
            found = Some(step as u64);
        }
    }
    found
}

/// The `otpauth://` URI an authenticator app scans.
pub fn uri(secret: &[u8], issuer: &str, account: &str) -> String {
    let enc = |s: &str| {
        s.bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                    (b as char).to_string()
                }
                _ => format!("%{b:02X}"),
            })
            .collect::<String>()
    };
    format!(
        "otpauth://totp/{}:{}?secret={}&issuer={}&algorithm=SHA1&digits=6&period=30",
        enc(issuer),
        enc(account),
        base32(secret),
        enc(issuer)
    )
}

/// The URI as a QR code, an SVG `data:` URL for an `<img>`.
pub fn qr_data_url(uri: &str) -> Option<String> {
    let qr = qrcode::QrCode::new(uri.as_bytes()).ok()?;
    let svg = qr
        .render::<qrcode::render::svg::Color>()
        .min_dimensions(200, 200)
        .dark_color(qrcode::render::svg::Color("#000000"))
        .light_color(qrcode::render::svg::Color("#ffffff"))
        .build();
    Some(format!(
        "data:image/svg+xml;base64,{}",
        base64::engine::general_purpose::STANDARD.encode(svg)
    ))
}

/// Letters and digits that cannot be mistaken for each other.
const RECOVERY_ALPHABET: &[u8] = b"abcdefghjkmnpqrstuvwxyz23456789";

/// A new recovery code, `xxxxx-xxxxx` (about 49 bits).
pub fn new_recovery_code() -> String {
    let mut rng = rand::thread_rng();
    let mut s = String::with_capacity(11);
    for i in 0..10 {
        if i == 5 {
            s.push('-');
        }
        s.push(RECOVERY_ALPHABET[rng.gen_range(0..RECOVERY_ALPHABET.len())] as char);
    }
    s
}

/// What is stored of a recovery code: the SHA-256 of its letters and
/// digits, lowercased (so `ABCDE FGHIJ` matches `abcde-fghij`). The codes
/// are random, so a fast hash is enough.
pub fn recovery_hash(code: &str) -> String {
    let norm: String = code
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .map(|c| c.to_ascii_lowercase())
        .collect();
    hex::encode(Sha256::digest(norm.as_bytes()))
}

/// Whether `given` looks like a recovery code rather than a TOTP code.
pub fn looks_like_recovery(given: &str) -> bool {
    given.chars().filter(|c| c.is_ascii_alphanumeric()).count() == 10
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 6238 appendix B, SHA-1, truncated to 6 digits.
    #[test]
    fn rfc6238_vectors() {
        let secret = b"12345678901234567890";
        for (t, want) in [
            (59, "287082"),
            (1111111109, "081804"),
            (1111111111, "050471"),
            (1234567890, "005924"),
            (2000000000, "279037"),
        ] {
            assert_eq!(code(secret, step_at(t)), want, "t={t}");
        }
    }

    #[test]
    fn verify_refuses_replay_and_far_steps() {
        let s = new_secret();
        let now = 1_700_000_000;
        let c = code(&s, step_at(now));
        let step = verify(&s, &c, now, 0).expect("current code");
        assert_eq!(verify(&s, &c, now, step), None, "replayed");
        let far = code(&s, step_at(now) - 3);
        assert_eq!(verify(&s, &far, now, 0), None);
        assert_eq!(verify(&s, "12345", now, 0), None);
    }

    #[test]
    fn recovery_codes_normalise() {
        let c = new_recovery_code();
        assert!(looks_like_recovery(&c));
        assert_eq!(
            recovery_hash(&c),
            recovery_hash(&c.to_uppercase().replace('-', " "))
        );
    }
}
