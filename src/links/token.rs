//! Link tokens: the TOKEN of `/l/TOKEN`, naming one tracked link of one
//! delivery, which nobody without the daemon's key can make up.
//!
//! A token of `n` characters is a `6n`-bit number written in base64url
//! (`A–Z a–z 0–9 - _`), most significant first: the payload
//! `delivery << 4 | link` in the first `n − 16` characters, then a 96-bit
//! MAC (HMAC-SHA256 under the key, over the delivery and the link, cut to
//! 96 bits) in the last 16. `n` is the shortest length of at least 22 the
//! payload fits in: 22 characters for the first 2³² deliveries, one more
//! for every 6 bits of delivery number beyond. Every (delivery, link) has
//! exactly one token (a longer spelling of a small payload is refused).
//!
//! Guessing a token means guessing 96 bits. The payload is not secret (the
//! delivery number can be read from the token); the MAC is what binds the
//! token to that delivery and that link. A token is checked in memory, in
//! constant time, before anything is read from the store.

use crate::model::DeliveryId;
use hmac::{KeyInit, Mac};
use subtle::ConstantTimeEq;

type HmacSha256 = hmac::Hmac<sha2::Sha256>;

/// Links a push can track (the token's 4 link bits).
pub const MAX_LINKS: usize = 16;
const LINK_BITS: u32 = 4;
/// Characters holding the MAC (96 bits).
const MAC_CHARS: usize = 16;
/// The shortest token (36 payload bits: 2³² deliveries).
pub const MIN_LEN: usize = 22;
/// The longest: a 63-bit delivery and 4 link bits need 12 characters.
pub const MAX_LEN: usize = MAC_CHARS + 12;
/// Bytes of key material.
pub const KEY_LEN: usize = 32;

const _: () = assert!(MAX_LINKS == 1 << LINK_BITS);
const _: () = assert!(crate::store::links::MAX_LINKS == MAX_LINKS);

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// The key tokens are signed with (kept in the store, made once).
#[derive(Clone)]
pub struct Key {
    /// Keyed once; each token clones this state instead of re-keying.
    mac: HmacSha256,
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Key(***)")
    }
}

/// Why stored key material cannot sign tokens.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("the stored link key has {0} bytes, not {KEY_LEN}")]
    WrongLength(usize),
    #[error("cannot use the link key: {0}")]
    Unusable(hmac::digest::InvalidLength),
}

impl Key {
    /// A key from its stored bytes (exactly [`KEY_LEN`] of them).
    pub fn from_bytes(bytes: &[u8]) -> Result<Key, KeyError> {
        if bytes.len() != KEY_LEN {
            return Err(KeyError::WrongLength(bytes.len()));
        }
        let mac = <HmacSha256 as KeyInit>::new_from_slice(bytes).map_err(KeyError::Unusable)?;
        Ok(Key { mac })
    }

    /// Fresh key material from the operating system's generator.
    pub fn generate() -> [u8; KEY_LEN] {
        use rand::RngExt;
        rand::rng().random()
    }

    /// The MAC of (delivery, link), 96 bits in the low bits.
    fn mac(&self, delivery: u64, link: u8) -> u128 {
        let mut m = self.mac.clone();
        m.update(b"pushd-link-v1");
        m.update(&delivery.to_be_bytes());
        m.update(&[link]);
        let out = m.finalize().into_bytes();
        let mut b = [0u8; 16];
        b[4..].copy_from_slice(&out[..12]);
        u128::from_be_bytes(b)
    }
}

/// The token of `link` (< [`MAX_LINKS`]) of `delivery` (≥ 1).
pub fn encode(key: &Key, delivery: DeliveryId, link: u8) -> String {
    let link = link & (MAX_LINKS as u8 - 1);
    let delivery = delivery.max(0) as u64;
    let payload = (u128::from(delivery) << LINK_BITS) | u128::from(link);
    let payload_bits = 128 - payload.leading_zeros() as usize;
    let payload_chars = payload_bits.div_ceil(6).max(MIN_LEN - MAC_CHARS);
    let mut out = String::with_capacity(payload_chars + MAC_CHARS);
    push_chars(&mut out, payload, payload_chars);
    push_chars(&mut out, key.mac(delivery, link), MAC_CHARS);
    out
}

/// Appends the low `6 × chars` bits of `v`, most significant first.
fn push_chars(out: &mut String, v: u128, chars: usize) {
    for i in (0..chars).rev() {
        let six = ((v >> (6 * i)) & 63) as usize;
        out.push(ALPHABET[six] as char);
    }
}

fn value_of(c: u8) -> Option<u128> {
    let v = match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'-' => 62,
        b'_' => 63,
        _ => return None,
    };
    Some(u128::from(v))
}

fn read_chars(s: &[u8]) -> Option<u128> {
    s.iter()
        .try_fold(0u128, |acc, &c| Some((acc << 6) | value_of(c)?))
}

/// What a well-formed token says, before its MAC is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Parsed {
    pub delivery: DeliveryId,
    pub link: u8,
    mac: u128,
}

/// Reads a token's parts; None for anything that is not the one spelling
/// [`encode`] makes of some (delivery, link).
pub fn parse(token: &str) -> Option<Parsed> {
    let b = token.as_bytes();
    if !(MIN_LEN..=MAX_LEN).contains(&b.len()) {
        return None;
    }
    let (head, tail) = b.split_at(b.len() - MAC_CHARS);
    let payload = read_chars(head)?;
    let mac = read_chars(tail)?;
    // The shortest spelling only: one token per (delivery, link).
    if head.len() > MIN_LEN - MAC_CHARS && payload >> (6 * (head.len() - 1)) == 0 {
        return None;
    }
    let delivery = i64::try_from(payload >> LINK_BITS).ok()?;
    if delivery < 1 {
        return None;
    }
    Some(Parsed {
        delivery,
        link: (payload & (MAX_LINKS as u128 - 1)) as u8,
        mac,
    })
}

/// The (delivery, link) a genuine token names; None for anything else
/// (malformed, truncated, altered, or signed with another key).
pub fn open(key: &Key, token: &str) -> Option<(DeliveryId, u8)> {
    let p = parse(token)?;
    let want = key.mac(p.delivery as u64, p.link).to_be_bytes();
    let got = p.mac.to_be_bytes();
    bool::from(want.ct_eq(&got)).then_some((p.delivery, p.link))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn key(seed: u8) -> Key {
        Key::from_bytes(&[seed; KEY_LEN]).unwrap()
    }

    #[test]
    fn lengths_and_alphabet() {
        let k = key(1);
        assert_eq!(encode(&k, 1, 0).len(), 22);
        assert_eq!(encode(&k, (1 << 32) - 1, 15).len(), 22);
        assert_eq!(encode(&k, 1 << 32, 0).len(), 23);
        assert_eq!(encode(&k, i64::MAX, 15).len(), MAX_LEN);
        let t = encode(&k, 123_456_789, 3);
        assert!(t.bytes().all(|c| ALPHABET.contains(&c)), "{t}");
        assert_eq!(open(&k, &t), Some((123_456_789, 3)));
    }

    #[test]
    fn refused_spellings() {
        let k = key(2);
        let t = encode(&k, 42, 1);
        // Truncated, extended, another key, not base64url, padded with a
        // leading zero character (a second spelling of the same payload).
        assert_eq!(open(&k, &t[..21]), None);
        assert_eq!(open(&k, &format!("{t}A")), None);
        assert_eq!(open(&key(3), &t), None);
        assert_eq!(open(&k, &t.replace(&t[..1], "+")), None);
        assert_eq!(parse(&format!("A{t}")), None);
        assert_eq!(open(&k, ""), None);
        // Delivery 0 is no delivery.
        let mut zero = String::new();
        push_chars(&mut zero, 0, 6);
        push_chars(&mut zero, k.mac(0, 0), MAC_CHARS);
        assert_eq!(open(&k, &zero), None);
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 2000, failure_persistence: None, ..ProptestConfig::default() })]

        /// Every (delivery, link) round-trips, in ≤ 22 characters below 2³².
        #[test]
        fn round_trip(delivery in 1i64..=i64::MAX, link in 0u8..16) {
            let k = key(7);
            let t = encode(&k, delivery, link);
            prop_assert_eq!(open(&k, &t), Some((delivery, link)));
            prop_assert!(t.len() >= MIN_LEN && t.len() <= MAX_LEN);
            if delivery < 1 << 32 {
                prop_assert_eq!(t.len(), MIN_LEN);
            }
            prop_assert!(t.bytes().all(|c| ALPHABET.contains(&c)));
        }

        /// Changing any one character, or cutting any tail off, never
        /// yields a token that opens to something else.
        #[test]
        fn altered_tokens_never_open(delivery in 1i64..(1 << 40), link in 0u8..16, at in 0usize..28, c in 0usize..64, cut in 1usize..28) {
            let k = key(9);
            let t = encode(&k, delivery, link);
            let mut b = t.clone().into_bytes();
            let at = at % b.len();
            if b[at] != ALPHABET[c] {
                b[at] = ALPHABET[c];
                let altered = String::from_utf8(b).unwrap();
                prop_assert_eq!(open(&k, &altered), None);
            }
            let cut = cut.min(t.len());
            prop_assert_eq!(open(&k, &t[..t.len() - cut]), None);
        }

        /// Arbitrary strings never panic and (with overwhelming probability) never open.
        #[test]
        fn arbitrary_strings(s in "[A-Za-z0-9_-]{0,30}|\\PC{0,30}") {
            prop_assert_eq!(open(&key(5), &s), None);
        }

        /// A parsed token re-encodes to itself (one spelling per payload).
        #[test]
        fn parse_then_encode_is_identity(s in "[A-Za-z0-9_-]{22,28}") {
            if let Some(p) = parse(&s) {
                let k = key(11);
                let mine = encode(&k, p.delivery, p.link);
                prop_assert_eq!(&mine[..mine.len() - MAC_CHARS], &s[..s.len() - MAC_CHARS]);
            }
        }
    }
}
