//! Custom / web chat webhook receiver mock: `POST /hook`, verifying the
//! Standard Webhooks signature independently of pushd's implementation
//! (HMAC-SHA256 with the base64 key after `whsec_` in
//! [`creds::WEBHOOK_SECRET`](super::creds::WEBHOOK_SECRET)), the timestamp
//! window (5 minutes), and that `webhook-id` equals the body's `id`.
//!
//! | behaviour | answer |
//! |---|---|
//! | Succeed | 200 `{"message_id":"cm_<seq>"}` |
//! | Block | 422 `{"error":{"code":"blocked",...}}` |
//! | InvalidRecipient | 404 `{"error":{"code":"invalid_recipient",...}}` |
//! | OutsideWindow | 422 `{"error":{"code":"outside_window",...}}` |
//! | RateLimit | 429 with `Retry-After: N` |
//! | ServerError | 503 `{"error":{"code":"unavailable",...}}` |
//! | BadToken / bad signature | 401 `{"error":{"code":"auth",...}}` |
//!
//! A signed `{"type":"ping","id":"ping_…"}` gets 200 `{}`; with the
//! PingUnsupported account fault, 400 `{"error":{"code":"invalid_request",
//! "message":"unknown type"}}` as a receiver that predates pings answers.

use super::{AccountFault, Api, Failure, Incoming, Reply, Shared, creds};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{KeyInit, Mac};
use serde_json::{Value, json};

pub const PATH: &str = "/hook";

pub struct CustomApi;

fn error(status: u16, code: &str, message: &str) -> Reply {
    Reply::json(
        status,
        json!({ "error": { "code": code, "message": message } }),
    )
}

impl Api for CustomApi {
    fn recipient(&self, req: &Incoming) -> Option<String> {
        req.body()
            .get("to")
            .and_then(Value::as_str)
            .map(str::to_string)
    }

    fn check(&self, mock: &Shared, req: &Incoming) -> Result<(), Reply> {
        if req.method != "POST" || req.path != PATH {
            return Err(error(404, "not_found", "no such endpoint"));
        }
        verify_signature(req).map_err(|m| error(401, "auth", &m))?;
        let b = req.body();
        if b.get("type").and_then(Value::as_str) == Some("ping") {
            let id = b.get("id").and_then(Value::as_str).unwrap_or("");
            return Err(
                if mock.state().account_fault == Some(AccountFault::PingUnsupported) {
                    error(400, "invalid_request", "unknown type")
                } else if id.starts_with("ping_") && req.header("webhook-id") == Some(id) {
                    Reply::json(200, json!({}))
                } else {
                    error(
                        400,
                        "invalid_request",
                        "id must be ping_… and equal webhook-id",
                    )
                },
            );
        }
        let id = b.get("id").and_then(Value::as_str).unwrap_or("");
        if !id.starts_with("msg_") || req.header("webhook-id") != Some(id) {
            return Err(error(
                400,
                "invalid_request",
                "id must be msg_… and equal webhook-id",
            ));
        }
        if self.recipient(req).is_none_or(|t| t.is_empty()) {
            return Err(error(400, "invalid_request", "to is required"));
        }
        match b.get("type").and_then(Value::as_str) {
            Some("message.send") => {
                let m = b.get("message").cloned().unwrap_or(Value::Null);
                let complete = m.get("text").is_some_and(Value::is_string)
                    && m.get("buttons").is_some_and(Value::is_array)
                    && m.get("quick_replies").is_some_and(Value::is_array)
                    && m.get("image_url").is_some();
                if !complete {
                    return Err(error(
                        400,
                        "invalid_request",
                        "message needs text, buttons, quick_replies, image_url",
                    ));
                }
            }
            Some("template.send") => {
                let t = b.get("template").cloned().unwrap_or(Value::Null);
                if t.get("name").and_then(Value::as_str).is_none()
                    || t.get("language").and_then(Value::as_str).is_none()
                    || !t.get("params").is_some_and(Value::is_array)
                {
                    return Err(error(
                        400,
                        "invalid_request",
                        "template needs name, language, params",
                    ));
                }
            }
            _ => return Err(error(400, "invalid_request", "unknown type")),
        }
        Ok(())
    }

    fn success(&self, req: &Incoming, _recipient: &str) -> Value {
        json!({ "message_id": format!("cm_{}", req.seq) })
    }

    fn failure(&self, failure: Failure, _req: &Incoming, _recipient: &str) -> Reply {
        match failure {
            Failure::Block => error(422, "blocked", "the user blocked this bot"),
            Failure::InvalidRecipient => error(404, "invalid_recipient", "no such user"),
            Failure::OutsideWindow => error(
                422,
                "outside_window",
                "the user has not written in 24 hours",
            ),
            Failure::RateLimit(secs) => {
                error(429, "rate_limited", "slow down").with_header("retry-after", secs.to_string())
            }
            Failure::ServerError => error(503, "unavailable", "try again later"),
            Failure::BadToken => error(401, "auth", "unknown signing key"),
        }
    }
}

/// The Standard Webhooks check a receiver does.
fn verify_signature(req: &Incoming) -> Result<(), String> {
    let id = req.header("webhook-id").ok_or("missing webhook-id")?;
    let ts = req
        .header("webhook-timestamp")
        .ok_or("missing webhook-timestamp")?;
    let sigs = req
        .header("webhook-signature")
        .ok_or("missing webhook-signature")?;
    let ts_num: i64 = ts
        .parse()
        .map_err(|_| "webhook-timestamp is not a number")?;
    if (chrono::Utc::now().timestamp() - ts_num).abs() > 300 {
        return Err("webhook-timestamp is more than 5 minutes off".into());
    }
    let key = BASE64
        .decode(
            creds::WEBHOOK_SECRET
                .strip_prefix("whsec_")
                .ok_or("mock secret must start with whsec_")?,
        )
        .map_err(|_| "mock secret is not base64")?;
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(&key).map_err(|_| "bad key")?;
    mac.update(format!("{id}.{ts}.").as_bytes());
    mac.update(&req.raw_body);
    let expected = BASE64.encode(mac.finalize().into_bytes());
    let matches = sigs.split(' ').any(|s| {
        s.strip_prefix("v1,").is_some_and(|sig| {
            subtle::ConstantTimeEq::ct_eq(sig.as_bytes(), expected.as_bytes()).into()
        })
    });
    if matches {
        Ok(())
    } else {
        Err("invalid webhook signature".into())
    }
}
