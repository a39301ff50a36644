//! Usernames: which characters they may hold, the form they are stored in,
//! and when two spellings are the same account.
//!
//! A name is normalised with NFKC (Unicode compatibility composition): a
//! fullwidth `ａｌｉｃｅ`, the Kelvin sign `K` (U+212A) or the ligature `ﬁ`
//! become the ASCII letters they stand for. The result must be 3 to 50 of
//! `A–Z a–z 0–9 _`; it is what is stored and shown (its case kept). Two
//! names are the same account when their NFKC forms are equal after
//! lowercasing (the [`key`] the name index and the sign-in throttle use), so
//! `Kelvin`, `KELVIN` and `Kelvin` (with the Kelvin sign) are one account and
//! a second registration of any of them is refused as taken.
//!
//! Only ASCII is allowed after normalisation, as it always was: a username
//! is an identifier typed at sign-in and shown in admin lists and the audit
//! log, and letters from other scripts bring look-alikes (Cyrillic `а` for
//! Latin `a`) that no normalisation folds. Because the allowed set did not
//! change, every stored name is already in normal form and its index key
//! (ASCII lowercase) is unchanged: no migration is needed.

use unicode_normalization::UnicodeNormalization;

pub const MIN_LEN: usize = 3;
pub const MAX_LEN: usize = 50;

/// NFKC never yields fewer characters than it was given for an ASCII
/// result (composition only ever produces non-ASCII letters), so an input
/// longer than this cannot be a valid name and is not normalised at all.
fn plausible(name: &str) -> bool {
    name.chars().nth(MAX_LEN).is_none()
}

/// The stored and shown form of `name` (NFKC), if it is an allowed name.
pub fn normalize(name: &str) -> Option<String> {
    if !plausible(name) {
        return None;
    }
    let n: String = name.nfkc().collect();
    let ok = (MIN_LEN..=MAX_LEN).contains(&n.len())
        && n.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    ok.then_some(n)
}

/// The identity of `name`: NFKC, then lowercase. Names with equal keys are
/// one account. Inputs too long to be a name get a key no name has.
pub fn key(name: &str) -> String {
    if !plausible(name) {
        return "\u{0}too-long".into();
    }
    name.nfkc().flat_map(char::to_lowercase).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compatibility_forms_fold_to_ascii() {
        assert_eq!(normalize("\u{212A}elvin").as_deref(), Some("Kelvin"));
        assert_eq!(
            normalize("\u{FF41}\u{FF4C}\u{FF49}\u{FF43}\u{FF45}").as_deref(),
            Some("alice")
        );
        assert_eq!(normalize("\u{FB01}nn").as_deref(), Some("finn"));
        assert_eq!(key("\u{212A}ELVIN"), "kelvin");
        assert_eq!(key("Kelvin"), key("\u{212A}elvin"));
    }

    #[test]
    fn other_scripts_and_bad_lengths_are_refused() {
        for bad in [
            "j\u{F6}rg",     // ö
            "\u{430}dmin",   // Cyrillic а
            "ad min",        // space
            "ab",            // too short
            "a\u{301}bc",    // a + combining acute composes to á
            &"a".repeat(51), // too long
            &"\u{FF41}".repeat(51),
        ] {
            assert!(normalize(bad).is_none(), "{bad:?}");
        }
        assert_eq!(key(&"x".repeat(1000)), key(&"y".repeat(1000)));
        assert!(normalize(&"a".repeat(50)).is_some());
    }

    #[test]
    fn stored_names_are_already_normal() {
        // Every name the old rule allowed normalises to itself with the same
        // key as before (ASCII lowercase): existing data needs no migration.
        for name in ["admin", "Bob_2", "ALICE", "x_y_z"] {
            assert_eq!(normalize(name).as_deref(), Some(name));
            assert_eq!(key(name), name.to_ascii_lowercase());
        }
    }
}
