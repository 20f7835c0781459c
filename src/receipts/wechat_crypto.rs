//! WeChat's message encryption (安全模式 safe mode, 兼容模式 compatible mode):
//! the callback body carries `<Encrypt>`, and the query a `msg_signature`
//! that covers it (checked in [`super::signature::verify_wechat_msg`]).
//!
//! The official scheme (WeChat's "message encryption technical solution" and
//! its WXBizMsgCrypt samples):
//!
//! - AESKey = base64_decode(EncodingAESKey + "="): the 43-character key from
//!   the console decodes to 32 bytes (its last character carries 2 spare bits,
//!   which the samples ignore, so we do too);
//! - AES-256-CBC, IV = AESKey[0..16], PKCS#7 padding to a multiple of **32**
//!   bytes (the key size, not the AES block size);
//! - plaintext = random(16) ‖ msg_len (4 bytes, big-endian) ‖ msg ‖ appid.
//!
//! CBC is not authenticated: integrity comes from `msg_signature` (checked
//! before decrypting), and the trailing appid ties a message to this account.

use aes::cipher::block_padding::NoPadding;
use aes::cipher::{BlockModeDecrypt, BlockModeEncrypt, KeyIvInit};
use base64::Engine as _;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::{DecodePaddingMode, general_purpose};

type Decryptor = cbc::Decryptor<aes::Aes256>;
type Encryptor = cbc::Encryptor<aes::Aes256>;

/// PKCS#7 pads to the key size in WeChat's scheme.
const PAD_BLOCK: usize = 32;
const RANDOM_LEN: usize = 16;
const LEN_FIELD: usize = 4;

/// Base64 as PHP's `base64_decode` reads it (WeChat's reference code): spare
/// trailing bits and missing padding are fine.
const LENIENT: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new()
        .with_decode_allow_trailing_bits(true)
        .with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Why an encrypted callback (or an EncodingAESKey) was refused. Messages
/// never contain key material.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CryptoError {
    #[error(
        "must be the 43-character EncodingAESKey shown in the WeChat console (消息加解密密钥); this value does not decode to a 32-byte AES key"
    )]
    BadKey,
    #[error("the <Encrypt> element is not base64")]
    NotBase64,
    #[error("the <Encrypt> element is {0} bytes once decoded, not a whole number of AES blocks")]
    BadLength(usize),
    #[error(
        "the message does not decrypt with this channel's encoding_aes_key (bad padding): check that encoding_aes_key matches the WeChat console"
    )]
    BadPadding,
    #[error(
        "the decrypted message is malformed (its length field does not fit): check that encoding_aes_key matches the WeChat console"
    )]
    BadFrame,
    #[error(
        "the message is encrypted for app id {got}, not for this channel's app_id {expected}; callbacks of another account are refused"
    )]
    AppIdMismatch { got: String, expected: String },
}

/// The AES key an EncodingAESKey stands for.
pub fn aes_key(encoding_aes_key: &str) -> Result<[u8; 32], CryptoError> {
    if !crate::config::encoding_aes_key_shape(encoding_aes_key) {
        return Err(CryptoError::BadKey);
    }
    let text = encoding_aes_key.trim();
    let bytes = LENIENT
        .decode(format!("{text}="))
        .map_err(|_| CryptoError::BadKey)?;
    bytes.try_into().map_err(|_| CryptoError::BadKey)
}

/// The XML message inside an `<Encrypt>` value, checked to be addressed to
/// `app_id`.
pub fn decrypt(key: &[u8; 32], app_id: &str, encrypt: &str) -> Result<Vec<u8>, CryptoError> {
    let mut buf = LENIENT
        .decode(encrypt.trim())
        .map_err(|_| CryptoError::NotBase64)?;
    if buf.is_empty() || buf.len() % 16 != 0 {
        return Err(CryptoError::BadLength(buf.len()));
    }
    let encrypted_len = buf.len();
    let plain_len = Decryptor::new(key.into(), iv(key).into())
        .decrypt_padded::<NoPadding>(&mut buf)
        .map_err(|_| CryptoError::BadLength(encrypted_len))?
        .len();
    buf.truncate(plain_len);
    let pad = usize::from(*buf.last().ok_or(CryptoError::BadPadding)?);
    if pad == 0 || pad > PAD_BLOCK || pad > buf.len() {
        return Err(CryptoError::BadPadding);
    }
    if !buf[buf.len() - pad..]
        .iter()
        .all(|&b| usize::from(b) == pad)
    {
        return Err(CryptoError::BadPadding);
    }
    buf.truncate(buf.len() - pad);
    let header = RANDOM_LEN + LEN_FIELD;
    let len_bytes: [u8; 4] = buf
        .get(RANDOM_LEN..header)
        .and_then(|b| b.try_into().ok())
        .ok_or(CryptoError::BadFrame)?;
    let msg_len = u32::from_be_bytes(len_bytes) as usize;
    let msg_end = header.checked_add(msg_len).ok_or(CryptoError::BadFrame)?;
    if msg_end > buf.len() {
        return Err(CryptoError::BadFrame);
    }
    let got = &buf[msg_end..];
    if got != app_id.as_bytes() {
        return Err(CryptoError::AppIdMismatch {
            got: printable_app_id(got),
            expected: app_id.to_string(),
        });
    }
    buf.truncate(msg_end);
    buf.drain(..header);
    Ok(buf)
}

/// `msg` encrypted for `app_id` as WeChat does it, with the given 16 random
/// bytes (for replies in safe mode and for tests).
pub fn encrypt(key: &[u8; 32], app_id: &str, random: [u8; 16], msg: &[u8]) -> String {
    let mut buf = Vec::with_capacity(RANDOM_LEN + LEN_FIELD + msg.len() + app_id.len() + PAD_BLOCK);
    buf.extend_from_slice(&random);
    buf.extend_from_slice(&(msg.len() as u32).to_be_bytes());
    buf.extend_from_slice(msg);
    buf.extend_from_slice(app_id.as_bytes());
    let pad = PAD_BLOCK - buf.len() % PAD_BLOCK;
    buf.resize(buf.len() + pad, pad as u8);
    let len = buf.len();
    // The buffer is a whole number of blocks, so NoPadding cannot fail.
    let encrypted = Encryptor::new(key.into(), iv(key).into())
        .encrypt_padded::<NoPadding>(&mut buf, len)
        .map(<[u8]>::to_vec)
        .unwrap_or_default();
    general_purpose::STANDARD.encode(encrypted)
}

fn iv(key: &[u8; 32]) -> &[u8; 16] {
    key.first_chunk::<16>()
        .unwrap_or_else(|| unreachable!("a 32-byte key has 16 leading bytes"))
}

/// An app id from a decrypted message, for the error: shown only when it
/// looks like one (`wx` + hex), since garbage here means a wrong key.
fn printable_app_id(bytes: &[u8]) -> String {
    match std::str::from_utf8(bytes) {
        Ok(s) if !s.is_empty() && s.len() <= 32 && s.bytes().all(|b| b.is_ascii_alphanumeric()) => {
            s.to_string()
        }
        _ => format!("(unreadable, {} bytes)", bytes.len()),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;

    /// WeChat's own sample (WXBizMsgCrypt demo, Sample.py): key, app id and
    /// the `<Encrypt>` of a text message "abcdteT".
    pub const SAMPLE_KEY: &str = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG";
    pub const SAMPLE_APP_ID: &str = "wx2c2769f8efd9abc2";
    pub const SAMPLE_ENCRYPT: &str = "hyzAe4OzmOMbd6TvGdIOO6uBmdJoD0Fk53REIHvxYtJlE2B655HuD0m8KUePWB3+LrPXo87wzQ1QLvbeUgmBM4x6F8PGHQHFVAFmOD2LdJF9FrXpbUAh0B5GIItb52sn896wVsMSHGuPE328HnRGBcrS7C41IzDWyWNlZkyyXwon8T332jisa+h6tEDYsVticbSnyU8dKOIbgU6ux5VTjg3yt+WGzjlpKn6NPhRjpA912xMezR4kw6KWwMrCVKSVCZciVGCgavjIQ6X8tCOp3yZbGpy0VxpAe+77TszTfRd5RJSVO/HTnifJpXgCSUdUue1v6h0EIBYYI1BD1DlD+C0CR8e6OewpusjZ4uBl9FyJvnhvQl+q5rv1ixrcpCumEPo5MJSgM9ehVsNPfUM669WuMyVWQLCzpu9GhglF2PE=";

    #[test]
    fn decrypts_wechats_sample() {
        let key = aes_key(SAMPLE_KEY).expect("the sample key");
        let xml = decrypt(&key, SAMPLE_APP_ID, SAMPLE_ENCRYPT).expect("decrypts");
        let xml = String::from_utf8(xml).expect("UTF-8");
        assert!(xml.starts_with("<xml>"), "{xml}");
        assert!(
            xml.contains("<Content><![CDATA[abcdteT]]></Content>"),
            "{xml}"
        );
        assert!(xml.contains("6054768590064713728"), "{xml}");
    }

    #[test]
    fn another_app_id_is_refused_by_name() {
        let key = aes_key(SAMPLE_KEY).unwrap();
        let err = decrypt(&key, "wx0000000000000000", SAMPLE_ENCRYPT).unwrap_err();
        assert_eq!(
            err,
            CryptoError::AppIdMismatch {
                got: SAMPLE_APP_ID.into(),
                expected: "wx0000000000000000".into()
            }
        );
    }

    #[test]
    fn round_trip_and_padding_to_32() {
        let key = aes_key(SAMPLE_KEY).unwrap();
        for len in [0usize, 1, 11, 12, 13, 43, 44, 100] {
            let msg = vec![b'x'; len];
            let enc = encrypt(&key, "wxapp", [7; 16], &msg);
            let raw = general_purpose::STANDARD.decode(&enc).unwrap();
            assert_eq!(raw.len() % PAD_BLOCK, 0, "len {len}");
            assert_eq!(decrypt(&key, "wxapp", &enc).unwrap(), msg, "len {len}");
        }
    }

    #[test]
    fn bad_keys_and_bodies() {
        assert_eq!(aes_key("short"), Err(CryptoError::BadKey));
        assert_eq!(aes_key(&"a".repeat(44)), Err(CryptoError::BadKey));
        assert_eq!(
            aes_key(&format!("{}+", "a".repeat(42))),
            Err(CryptoError::BadKey)
        );
        let key = aes_key(SAMPLE_KEY).unwrap();
        assert_eq!(decrypt(&key, "x", "!!!"), Err(CryptoError::NotBase64));
        assert_eq!(decrypt(&key, "x", "AAAA"), Err(CryptoError::BadLength(3)));
        assert_eq!(decrypt(&key, "x", ""), Err(CryptoError::BadLength(0)));
        // A wrong key: garbage after decryption, refused as padding or frame.
        let other = aes_key(&"b".repeat(43)).unwrap();
        let err = decrypt(&other, SAMPLE_APP_ID, SAMPLE_ENCRYPT).unwrap_err();
        assert!(
            matches!(
                err,
                CryptoError::BadPadding | CryptoError::BadFrame | CryptoError::AppIdMismatch { .. }
            ),
            "{err:?}"
        );
        assert!(!err.to_string().contains(SAMPLE_KEY));
    }

    proptest! {
        #![proptest_config(crate::receipts::webhook::testing::proptest_config())]

        #[test]
        fn arbitrary_ciphertext_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let key = aes_key(SAMPLE_KEY).unwrap();
            let _ = decrypt(&key, SAMPLE_APP_ID, &general_purpose::STANDARD.encode(&bytes));
        }

        #[test]
        fn any_message_round_trips(msg in proptest::collection::vec(any::<u8>(), 0..500), random in any::<[u8; 16]>()) {
            let key = aes_key(SAMPLE_KEY).unwrap();
            let enc = encrypt(&key, SAMPLE_APP_ID, random, &msg);
            prop_assert_eq!(decrypt(&key, SAMPLE_APP_ID, &enc).unwrap(), msg);
        }
    }
}
