//! Webhook signature schemes, each checked over the raw request bytes and
//! compared in constant time.
//!
//! | scheme | where | what is signed |
//! |---|---|---|
//! | Meta (WhatsApp, Messenger, Instagram) | `X-Hub-Signature-256: sha256=<hex>` | HMAC-SHA256(app_secret, body) |
//! | Slack v0 | `X-Slack-Signature: v0=<hex>` + `X-Slack-Request-Timestamp` | HMAC-SHA256(signing_secret, `v0:{ts}:{body}`), ts within 5 min |
//! | Telegram | `X-Telegram-Bot-Api-Secret-Token` | nothing: the shared secret is echoed |
//! | WeChat | query `signature`, `timestamp`, `nonce` | SHA-1 of the sorted, concatenated token/timestamp/nonce (not the body), ts within 5 min |
//! | WeChat safe mode | query `msg_signature`, `timestamp`, `nonce` | the same SHA-1 with the body's `<Encrypt>` added, ts within 5 min |
//! | Standard Webhooks (custom, webchat) | `webhook-id`, `webhook-timestamp`, `webhook-signature: v1,<base64> …` | HMAC-SHA256(key, `{id}.{ts}.{body}`), ts within 5 min |
//!
//! Errors name the header and what was wrong with it, never the expected value.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{KeyInit, Mac};
use sha1::Sha1;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::WebhookError;
use crate::model::Millis;

type HmacSha256 = hmac::Hmac<Sha256>;

pub const META_HEADER: &str = "x-hub-signature-256";
pub const SLACK_SIGNATURE_HEADER: &str = "x-slack-signature";
pub const SLACK_TIMESTAMP_HEADER: &str = "x-slack-request-timestamp";
pub const TELEGRAM_HEADER: &str = "x-telegram-bot-api-secret-token";
pub const STANDARD_ID_HEADER: &str = "webhook-id";
pub const STANDARD_TIMESTAMP_HEADER: &str = "webhook-timestamp";
pub const STANDARD_SIGNATURE_HEADER: &str = "webhook-signature";

/// Slack, Standard Webhooks and WeChat callbacks are refused when signed
/// more than five minutes away from our clock (replay protection).
pub const MAX_SKEW_SECS: u64 = 300;

/// Why a signature was refused. Every variant becomes a 401.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("the {0} header is missing")]
    Missing(&'static str),
    #[error("the {header} header is malformed: {why}")]
    Malformed { header: &'static str, why: String },
    #[error("the {header} header does not match the request body signed with {secret}")]
    Mismatch {
        header: &'static str,
        secret: &'static str,
    },
    #[error(
        "the {header} header is {skew_secs} s away from this server's clock (at most {MAX_SKEW_SECS} s is accepted): a replayed request, or a clock that needs NTP"
    )]
    Stale {
        header: &'static str,
        skew_secs: u64,
    },
    #[error("{0}")]
    BadSecret(String),
}

impl From<SignatureError> for WebhookError {
    fn from(e: SignatureError) -> Self {
        WebhookError::Unauthorized(e.to_string())
    }
}

/// HMAC-SHA256 over the concatenation of `parts` (saves building the signed
/// string when a scheme signs "prefix + body").
pub fn hmac_sha256(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    // HMAC takes keys of any length; `new_from_slice` cannot fail for it.
    let mut mac = <HmacSha256 as KeyInit>::new_from_slice(key)
        .unwrap_or_else(|_| unreachable!("HMAC accepts keys of any length"));
    for p in parts {
        mac.update(p);
    }
    mac.finalize().into_bytes().into()
}

/// Constant-time equality for two byte strings of the same length. Lengths
/// themselves are not secret (they are fixed by each scheme).
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && bool::from(a.ct_eq(b))
}

/// Constant-time equality of a presented token with a configured secret that
/// also hides the secret's length: both sides are hashed first.
pub fn secret_eq(presented: &str, secret: &str) -> bool {
    let a = Sha256::digest(presented.as_bytes());
    let b = Sha256::digest(secret.as_bytes());
    bool::from(a.as_slice().ct_eq(b.as_slice()))
}

fn skew_secs(ts_secs: i64, now: Millis) -> u64 {
    now.div_euclid(1000).abs_diff(ts_secs)
}

fn parse_unix_secs(header: &'static str, value: &str) -> Result<i64, SignatureError> {
    let v = value.trim();
    if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
        return Err(SignatureError::Malformed {
            header,
            why: "expected unix seconds".into(),
        });
    }
    v.parse::<i64>().map_err(|_| SignatureError::Malformed {
        header,
        why: "expected unix seconds".into(),
    })
}

// ---------------------------------------------------------------- Meta

/// `sha256=<lowercase hex>` as Meta sends it in `X-Hub-Signature-256`.
pub fn meta_signature(app_secret: &[u8], body: &[u8]) -> String {
    format!("sha256={}", hex::encode(hmac_sha256(app_secret, &[body])))
}

/// Checks `X-Hub-Signature-256` (WhatsApp, Messenger, Instagram).
pub fn verify_meta(
    app_secret: &[u8],
    header: Option<&str>,
    body: &[u8],
) -> Result<(), SignatureError> {
    let h = META_HEADER;
    let value = header.ok_or(SignatureError::Missing("X-Hub-Signature-256"))?;
    let hex_sig =
        value
            .trim()
            .strip_prefix("sha256=")
            .ok_or_else(|| SignatureError::Malformed {
                header: h,
                why: "expected \"sha256=<hex>\"".into(),
            })?;
    let presented = decode_hex32(h, hex_sig)?;
    if ct_eq(&presented, &hmac_sha256(app_secret, &[body])) {
        Ok(())
    } else {
        Err(SignatureError::Mismatch {
            header: "X-Hub-Signature-256",
            secret: "the channel's app_secret (the Meta app's App Secret)",
        })
    }
}

fn decode_hex32(header: &'static str, s: &str) -> Result<[u8; 32], SignatureError> {
    let mut out = [0u8; 32];
    hex::decode_to_slice(s, &mut out).map_err(|_| SignatureError::Malformed {
        header,
        why: "expected 64 hex digits".into(),
    })?;
    Ok(out)
}

// ---------------------------------------------------------------- Slack

/// `v0=<hex>` as Slack sends it in `X-Slack-Signature`.
pub fn slack_signature(signing_secret: &[u8], timestamp: &str, body: &[u8]) -> String {
    let mac = hmac_sha256(signing_secret, &[b"v0:", timestamp.as_bytes(), b":", body]);
    format!("v0={}", hex::encode(mac))
}

/// Checks Slack's v0 signature and that the request timestamp is within
/// five minutes of `now`.
pub fn verify_slack(
    signing_secret: &[u8],
    timestamp: Option<&str>,
    signature: Option<&str>,
    body: &[u8],
    now: Millis,
) -> Result<(), SignatureError> {
    let ts_raw = timestamp.ok_or(SignatureError::Missing("X-Slack-Request-Timestamp"))?;
    let sig = signature.ok_or(SignatureError::Missing("X-Slack-Signature"))?;
    let ts = parse_unix_secs("X-Slack-Request-Timestamp", ts_raw)?;
    let skew = skew_secs(ts, now);
    if skew > MAX_SKEW_SECS {
        return Err(SignatureError::Stale {
            header: "X-Slack-Request-Timestamp",
            skew_secs: skew,
        });
    }
    let hex_sig = sig
        .trim()
        .strip_prefix("v0=")
        .ok_or_else(|| SignatureError::Malformed {
            header: "X-Slack-Signature",
            why: "expected \"v0=<hex>\"".into(),
        })?;
    let presented = decode_hex32("X-Slack-Signature", hex_sig)?;
    let expected = hmac_sha256(
        signing_secret,
        &[b"v0:", ts_raw.trim().as_bytes(), b":", body],
    );
    if ct_eq(&presented, &expected) {
        Ok(())
    } else {
        Err(SignatureError::Mismatch {
            header: "X-Slack-Signature",
            secret: "the channel's signing_secret (the Slack app's Signing Secret)",
        })
    }
}

// ---------------------------------------------------------------- Telegram

/// Checks `X-Telegram-Bot-Api-Secret-Token` against the `secret_token`
/// given to `setWebhook`.
pub fn verify_telegram(secret_token: &str, header: Option<&str>) -> Result<(), SignatureError> {
    let presented = header.ok_or(SignatureError::Missing("X-Telegram-Bot-Api-Secret-Token"))?;
    if secret_eq(presented, secret_token) {
        Ok(())
    } else {
        Err(SignatureError::Mismatch {
            header: "X-Telegram-Bot-Api-Secret-Token",
            secret: "the channel's secret_token (the secret_token passed to setWebhook)",
        })
    }
}

// ---------------------------------------------------------------- WeChat

const WECHAT_SIGNATURE: &str = "signature (query)";
const WECHAT_MSG_SIGNATURE: &str = "msg_signature (query)";
const WECHAT_TIMESTAMP: &str = "timestamp (query)";

/// `sha1(sorted(parts) joined)`: WeChat's `signature` over token, timestamp
/// and nonce, and, in safe mode, `msg_signature` over those and `<Encrypt>`.
fn wechat_sha1(parts: &mut [&str]) -> [u8; 20] {
    parts.sort_unstable();
    let mut h = Sha1::new();
    for p in parts.iter() {
        h.update(p.as_bytes());
    }
    h.finalize().into()
}

/// `hex(sha1(sorted(token, timestamp, nonce) joined))`, WeChat's query signature.
pub fn wechat_signature(token: &str, timestamp: &str, nonce: &str) -> String {
    hex::encode(wechat_sha1(&mut [token, timestamp, nonce]))
}

/// `msg_signature` of a safe-mode callback: the same hash with `<Encrypt>` added.
pub fn wechat_msg_signature(token: &str, timestamp: &str, nonce: &str, encrypt: &str) -> String {
    hex::encode(wechat_sha1(&mut [token, timestamp, nonce, encrypt]))
}

fn compare_wechat(
    header: &'static str,
    presented: &str,
    expected: [u8; 20],
) -> Result<(), SignatureError> {
    let mut bytes = [0u8; 20];
    hex::decode_to_slice(presented.trim(), &mut bytes).map_err(|_| SignatureError::Malformed {
        header,
        why: "expected 40 hex digits".into(),
    })?;
    if ct_eq(&bytes, &expected) {
        Ok(())
    } else {
        Err(SignatureError::Mismatch {
            header,
            secret: "the channel's verify_token (the Token set in the WeChat console)",
        })
    }
}

/// Checks WeChat's `signature` query parameter. It covers the token, the
/// timestamp and the nonce only: in plaintext mode the body is not signed,
/// which is why the timestamp must be recent ([`check_wechat_timestamp`])
/// and a nonce is accepted once (`receipts::replay`).
pub fn verify_wechat(
    token: &str,
    signature: Option<&str>,
    timestamp: Option<&str>,
    nonce: Option<&str>,
) -> Result<(), SignatureError> {
    let sig = signature.ok_or(SignatureError::Missing(WECHAT_SIGNATURE))?;
    let ts = timestamp.ok_or(SignatureError::Missing(WECHAT_TIMESTAMP))?;
    let nonce = nonce.ok_or(SignatureError::Missing("nonce (query)"))?;
    compare_wechat(WECHAT_SIGNATURE, sig, wechat_sha1(&mut [token, ts, nonce]))
}

/// Checks a safe-mode callback's `msg_signature`, which covers the body's
/// `<Encrypt>` value besides token, timestamp and nonce.
pub fn verify_wechat_msg(
    token: &str,
    msg_signature: Option<&str>,
    timestamp: Option<&str>,
    nonce: Option<&str>,
    encrypt: &str,
) -> Result<(), SignatureError> {
    let sig = msg_signature.ok_or(SignatureError::Missing(WECHAT_MSG_SIGNATURE))?;
    let ts = timestamp.ok_or(SignatureError::Missing(WECHAT_TIMESTAMP))?;
    let nonce = nonce.ok_or(SignatureError::Missing("nonce (query)"))?;
    compare_wechat(
        WECHAT_MSG_SIGNATURE,
        sig,
        wechat_sha1(&mut [token, ts, nonce, encrypt]),
    )
}

/// The callback's `timestamp`, refused when it is more than
/// [`MAX_SKEW_SECS`] away from `now` (a replayed URL, or a clock off).
pub fn check_wechat_timestamp(timestamp: Option<&str>, now: Millis) -> Result<i64, SignatureError> {
    let raw = timestamp.ok_or(SignatureError::Missing(WECHAT_TIMESTAMP))?;
    let ts = parse_unix_secs(WECHAT_TIMESTAMP, raw)?;
    let skew = skew_secs(ts, now);
    if skew > MAX_SKEW_SECS {
        return Err(SignatureError::Stale {
            header: WECHAT_TIMESTAMP,
            skew_secs: skew,
        });
    }
    Ok(ts)
}

// ---------------------------------------------------------------- Standard Webhooks

/// The HMAC key of a Standard Webhooks secret: `whsec_<base64>` decodes to
/// the key; anything else is used as raw bytes.
pub fn standard_webhook_key(secret: &str) -> Result<Vec<u8>, SignatureError> {
    match secret.strip_prefix("whsec_") {
        Some(b64) => BASE64.decode(b64.trim()).map_err(|e| {
            SignatureError::BadSecret(format!(
                "the channel's webhook_secret starts with \"whsec_\" but the rest is not valid base64 ({e}); fix the secret"
            ))
        }),
        None => Ok(secret.as_bytes().to_vec()),
    }
}

/// `v1,<base64>` for one Standard Webhooks message.
pub fn standard_webhook_signature(key: &[u8], id: &str, timestamp: &str, body: &[u8]) -> String {
    let mac = hmac_sha256(
        key,
        &[id.as_bytes(), b".", timestamp.as_bytes(), b".", body],
    );
    format!("v1,{}", BASE64.encode(mac))
}

/// Checks Standard Webhooks headers: the timestamp is within five minutes of
/// `now`, and one of the space-separated `v1,<base64>` signatures matches
/// (several are sent while a secret is being rotated).
pub fn verify_standard_webhook(
    key: &[u8],
    id: Option<&str>,
    timestamp: Option<&str>,
    signatures: Option<&str>,
    body: &[u8],
    now: Millis,
) -> Result<(), SignatureError> {
    let id = id.ok_or(SignatureError::Missing("webhook-id"))?;
    let ts_raw = timestamp.ok_or(SignatureError::Missing("webhook-timestamp"))?;
    let sigs = signatures.ok_or(SignatureError::Missing("webhook-signature"))?;
    let ts = parse_unix_secs("webhook-timestamp", ts_raw)?;
    let skew = skew_secs(ts, now);
    if skew > MAX_SKEW_SECS {
        return Err(SignatureError::Stale {
            header: "webhook-timestamp",
            skew_secs: skew,
        });
    }
    let expected = hmac_sha256(
        key,
        &[id.as_bytes(), b".", ts_raw.trim().as_bytes(), b".", body],
    );
    let mut saw_v1 = false;
    let mut matched = false;
    for entry in sigs.split_ascii_whitespace() {
        let Some(("v1", b64)) = entry.split_once(',') else {
            continue;
        };
        saw_v1 = true;
        let mut presented = [0u8; 32];
        if let Ok(32) = BASE64.decode_slice(b64, &mut presented) {
            matched |= ct_eq(&presented, &expected);
        }
    }
    if matched {
        Ok(())
    } else if !saw_v1 {
        Err(SignatureError::Malformed {
            header: "webhook-signature",
            why: "expected space-separated \"v1,<base64>\" entries".into(),
        })
    } else {
        Err(SignatureError::Mismatch {
            header: "webhook-signature",
            secret: "the channel's webhook_secret",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn hmac_matches_rfc4231_case_2() {
        // RFC 4231 test case 2: key "Jefe", data "what do ya want for nothing?".
        let mac = hmac_sha256(b"Jefe", &[b"what do ya want ", b"for nothing?"]);
        assert_eq!(
            hex::encode(mac),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn meta_valid_invalid_missing_malformed() {
        let body = br#"{"object":"page","entry":[]}"#;
        let sig = meta_signature(b"app-secret", body);
        assert!(sig.starts_with("sha256=") && sig.len() == 7 + 64);
        assert_eq!(verify_meta(b"app-secret", Some(&sig), body), Ok(()));
        assert_eq!(
            verify_meta(
                b"app-secret",
                Some(&sig.to_uppercase().replace("SHA256=", "sha256=")),
                body
            ),
            Ok(()),
            "hex case does not matter"
        );
        assert!(matches!(
            verify_meta(b"other-secret", Some(&sig), body),
            Err(SignatureError::Mismatch { .. })
        ));
        assert!(matches!(
            verify_meta(
                b"app-secret",
                Some(&sig),
                b"{\"object\":\"page\",\"entry\":[1]}"
            ),
            Err(SignatureError::Mismatch { .. })
        ));
        assert_eq!(
            verify_meta(b"app-secret", None, body),
            Err(SignatureError::Missing("X-Hub-Signature-256"))
        );
        for bad in ["", "sha1=abcd", "sha256=zz", "sha256=abcd", &sig[7..]] {
            assert!(
                matches!(
                    verify_meta(b"app-secret", Some(bad), body),
                    Err(SignatureError::Malformed { .. })
                ),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn slack_valid_invalid_missing_stale() {
        // Slack's documented example (api.slack.com/authentication/verifying-requests-from-slack).
        let secret = b"8f742231b10e8888abcd99yyyzzz85a5";
        let body = b"token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c";
        let ts = "1531420618";
        let sig = "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503";
        assert_eq!(slack_signature(secret, ts, body), sig);
        let now = 1_531_420_618_000;
        assert_eq!(verify_slack(secret, Some(ts), Some(sig), body, now), Ok(()));
        assert_eq!(
            verify_slack(secret, Some(ts), Some(sig), body, now + 300_000),
            Ok(()),
            "exactly five minutes is accepted"
        );
        assert!(matches!(
            verify_slack(secret, Some(ts), Some(sig), body, now + 301_000),
            Err(SignatureError::Stale { skew_secs: 301, .. })
        ));
        assert!(matches!(
            verify_slack(secret, Some(ts), Some(sig), body, now - 301_000),
            Err(SignatureError::Stale { .. })
        ));
        assert!(matches!(
            verify_slack(b"wrong", Some(ts), Some(sig), body, now),
            Err(SignatureError::Mismatch { .. })
        ));
        // The timestamp is part of the signed string: a different one fails.
        let ts2 = "1531420619";
        assert!(matches!(
            verify_slack(secret, Some(ts2), Some(sig), body, now),
            Err(SignatureError::Mismatch { .. })
        ));
        assert_eq!(
            verify_slack(secret, None, Some(sig), body, now),
            Err(SignatureError::Missing("X-Slack-Request-Timestamp"))
        );
        assert_eq!(
            verify_slack(secret, Some(ts), None, body, now),
            Err(SignatureError::Missing("X-Slack-Signature"))
        );
        assert!(matches!(
            verify_slack(secret, Some("soon"), Some(sig), body, now),
            Err(SignatureError::Malformed { .. })
        ));
        assert!(matches!(
            verify_slack(secret, Some(ts), Some(&sig[3..]), body, now),
            Err(SignatureError::Malformed { .. })
        ));
    }

    #[test]
    fn telegram_secret_token() {
        assert_eq!(
            verify_telegram("s3cr3t_Token-1", Some("s3cr3t_Token-1")),
            Ok(())
        );
        assert!(matches!(
            verify_telegram("s3cr3t_Token-1", Some("s3cr3t_Token-2")),
            Err(SignatureError::Mismatch { .. })
        ));
        assert!(matches!(
            verify_telegram("s3cr3t_Token-1", Some("s3cr3t")),
            Err(SignatureError::Mismatch { .. })
        ));
        assert!(matches!(
            verify_telegram("s3cr3t_Token-1", None),
            Err(SignatureError::Missing(_))
        ));
    }

    #[test]
    fn wechat_query_signature() {
        // Worked by hand: sorted("tok","1478317060","nonce123") = ["1478317060","nonce123","tok"].
        let sig = wechat_signature("tok", "1478317060", "nonce123");
        let mut h = Sha1::new();
        h.update(b"1478317060nonce123tok");
        assert_eq!(sig, hex::encode(h.finalize()));
        assert_eq!(
            verify_wechat("tok", Some(&sig), Some("1478317060"), Some("nonce123")),
            Ok(())
        );
        assert!(matches!(
            verify_wechat("other", Some(&sig), Some("1478317060"), Some("nonce123")),
            Err(SignatureError::Mismatch { .. })
        ));
        assert!(matches!(
            verify_wechat("tok", Some(&sig), Some("1478317061"), Some("nonce123")),
            Err(SignatureError::Mismatch { .. })
        ));
        assert!(matches!(
            verify_wechat("tok", None, Some("1"), Some("n")),
            Err(SignatureError::Missing(_))
        ));
        assert!(matches!(
            verify_wechat("tok", Some(&sig), None, Some("n")),
            Err(SignatureError::Missing(_))
        ));
        assert!(matches!(
            verify_wechat("tok", Some("xyz"), Some("1"), Some("n")),
            Err(SignatureError::Malformed { .. })
        ));
    }

    #[test]
    fn wechat_msg_signature_matches_wechats_sample() {
        // WeChat's WXBizMsgCrypt demo: token "spamtest", its timestamp,
        // nonce and <Encrypt>, and the msg_signature it ships with.
        let (token, ts, nonce) = ("spamtest", "1409735669", "1320562132");
        let encrypt = crate::receipts::wechat_crypto::tests::SAMPLE_ENCRYPT;
        let expected = "5d197aaffba7e9b25a30732f161a50dee96bd5fa";
        assert_eq!(wechat_msg_signature(token, ts, nonce, encrypt), expected);
        assert_eq!(
            verify_wechat_msg(token, Some(expected), Some(ts), Some(nonce), encrypt),
            Ok(())
        );
        // One changed character of the body fails.
        let tampered = encrypt.replacen('h', "H", 1);
        assert!(matches!(
            verify_wechat_msg(token, Some(expected), Some(ts), Some(nonce), &tampered),
            Err(SignatureError::Mismatch {
                header: "msg_signature (query)",
                ..
            })
        ));
        assert_eq!(
            verify_wechat_msg(token, None, Some(ts), Some(nonce), encrypt),
            Err(SignatureError::Missing("msg_signature (query)"))
        );
    }

    #[test]
    fn wechat_timestamp_window() {
        let now = 1_749_416_400_000;
        assert_eq!(
            check_wechat_timestamp(Some("1749416400"), now),
            Ok(1_749_416_400)
        );
        assert_eq!(
            check_wechat_timestamp(Some("1749416700"), now),
            Ok(1_749_416_700)
        );
        assert_eq!(
            check_wechat_timestamp(Some("1749416099"), now),
            Err(SignatureError::Stale {
                header: "timestamp (query)",
                skew_secs: 301
            })
        );
        assert!(matches!(
            check_wechat_timestamp(Some("1749416701"), now),
            Err(SignatureError::Stale { .. })
        ));
        assert!(matches!(
            check_wechat_timestamp(Some("-5"), now),
            Err(SignatureError::Malformed { .. })
        ));
        assert_eq!(
            check_wechat_timestamp(None, now),
            Err(SignatureError::Missing("timestamp (query)"))
        );
    }

    #[test]
    fn standard_webhooks_reference_vector() {
        // The Standard Webhooks reference libraries' test vector.
        let key = standard_webhook_key("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let id = "msg_p5jXN8AQM9LWM0D4loKWxJek";
        let ts = "1614265330";
        let body = br#"{"test": 2432232314}"#;
        let expected = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";
        assert_eq!(standard_webhook_signature(&key, id, ts, body), expected);
        let now = 1_614_265_330_000;
        assert_eq!(
            verify_standard_webhook(&key, Some(id), Some(ts), Some(expected), body, now),
            Ok(())
        );
        // Rotation: several signatures, one of them good, in any position.
        let several = format!("v1,Zm9vYmFyYmF6 v1a,abc {expected}");
        assert_eq!(
            verify_standard_webhook(&key, Some(id), Some(ts), Some(&several), body, now),
            Ok(())
        );
        assert!(matches!(
            verify_standard_webhook(&key, Some(id), Some(ts), Some("v1,Zm9vYmFyYmF6"), body, now),
            Err(SignatureError::Mismatch { .. })
        ));
        assert!(matches!(
            verify_standard_webhook(&key, Some("msg_other"), Some(ts), Some(expected), body, now),
            Err(SignatureError::Mismatch { .. })
        ));
        assert!(matches!(
            verify_standard_webhook(&key, Some(id), Some(ts), Some("v2,abc"), body, now),
            Err(SignatureError::Malformed { .. })
        ));
        assert!(matches!(
            verify_standard_webhook(
                &key,
                Some(id),
                Some(ts),
                Some(expected),
                body,
                now + 301_000
            ),
            Err(SignatureError::Stale { .. })
        ));
        assert!(matches!(
            verify_standard_webhook(
                &key,
                Some(id),
                Some(ts),
                Some(expected),
                body,
                now - 301_000
            ),
            Err(SignatureError::Stale { .. })
        ));
        for (i, t, s) in [
            (None, Some(ts), Some(expected)),
            (Some(id), None, Some(expected)),
            (Some(id), Some(ts), None),
        ] {
            assert!(matches!(
                verify_standard_webhook(&key, i, t, s, body, now),
                Err(SignatureError::Missing(_))
            ));
        }
    }

    #[test]
    fn standard_webhook_keys() {
        assert_eq!(standard_webhook_key("raw-secret").unwrap(), b"raw-secret");
        assert_eq!(standard_webhook_key("whsec_aGVsbG8=").unwrap(), b"hello");
        let err = standard_webhook_key("whsec_!!!").unwrap_err().to_string();
        assert!(
            err.contains("webhook_secret") && err.contains("base64"),
            "{err}"
        );
    }

    #[test]
    fn errors_become_401_without_the_expected_value() {
        let body = b"{}";
        let good = meta_signature(b"k", body);
        let err: WebhookError = verify_meta(b"k", Some("sha256=00"), body)
            .unwrap_err()
            .into();
        match err {
            WebhookError::Unauthorized(m) => {
                assert!(m.contains("x-hub-signature-256"), "{m}");
                assert!(!m.contains(&good[7..]), "{m}");
            }
            other => panic!("{other:?}"),
        }
    }

    proptest! {
        #![proptest_config(crate::receipts::webhook::testing::proptest_config())]

        #[test]
        fn signature_parsers_never_panic(
            header in proptest::option::of(".{0,200}"),
            ts in proptest::option::of("[0-9a-z ]{0,24}"),
            body in proptest::collection::vec(any::<u8>(), 0..256),
            now in any::<i64>(),
        ) {
            let h = header.as_deref();
            let t = ts.as_deref();
            prop_assert!(verify_meta(b"k", h, &body).is_err());
            prop_assert!(verify_slack(b"k", t, h, &body, now).is_err());
            let _ = verify_telegram("k", h);
            let _ = verify_wechat("k", h, t, t);
            prop_assert!(verify_standard_webhook(b"k", t, t, h, &body, now).is_err());
            let _ = standard_webhook_key(h.unwrap_or(""));
        }

        #[test]
        fn meta_roundtrip_and_single_bit_flip(
            secret in proptest::collection::vec(any::<u8>(), 0..80),
            body in proptest::collection::vec(any::<u8>(), 0..512),
            flip in any::<usize>(),
        ) {
            let sig = meta_signature(&secret, &body);
            prop_assert_eq!(verify_meta(&secret, Some(&sig), &body), Ok(()));
            if !body.is_empty() {
                let mut tampered = body.clone();
                let i = flip % tampered.len();
                tampered[i] ^= 1 << (flip % 8);
                prop_assert!(verify_meta(&secret, Some(&sig), &tampered).is_err());
            }
        }

        #[test]
        fn standard_roundtrip(
            key in proptest::collection::vec(any::<u8>(), 1..64),
            id in "[a-zA-Z0-9_]{1,40}",
            ts in 1_000_000_000i64..4_000_000_000i64,
            skew in -300i64..=300,
            body in proptest::collection::vec(any::<u8>(), 0..256),
        ) {
            let sig = standard_webhook_signature(&key, &id, &ts.to_string(), &body);
            let now = (ts + skew) * 1000;
            prop_assert_eq!(
                verify_standard_webhook(&key, Some(&id), Some(&ts.to_string()), Some(&sig), &body, now),
                Ok(())
            );
        }
    }

    #[test]
    fn skew_is_symmetric_and_overflow_free() {
        assert_eq!(
            skew_secs(i64::MAX, i64::MIN),
            i64::MAX.abs_diff(i64::MIN.div_euclid(1000))
        );
        assert_eq!(skew_secs(100, 99_000), 1);
        assert_eq!(skew_secs(98, 99_000), 1);
    }
}
