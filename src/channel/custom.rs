//! Custom platforms and web chat (kinds `custom` and `webchat`): one signed
//! JSON webhook per message. This comment is the contract a receiver
//! implements.
//!
//! # Request
//!
//! `POST {url}` with `Content-Type: application/json` and one of:
//!
//! ```json
//! {"type":"message.send","id":"msg_42","to":"<channel_user_id>",
//!  "message":{"text":"Hi Ann, 30% off today!",
//!             "buttons":[{"title":"Shop","payload":"SHOP"},{"title":"Site","url":"https://example.com"}],
//!             "quick_replies":[{"title":"Stop","payload":"STOP"}],
//!             "image_url":null},
//!  "tag":"ACCOUNT_UPDATE"}
//!
//! {"type":"template.send","id":"msg_42","to":"<channel_user_id>",
//!  "template":{"name":"bf_offer","language":"en","params":["Ann"]}}
//! ```
//!
//! - `id` is `msg_<delivery id>`: the same on every retry of one delivery, so
//!   a receiver can drop duplicates by it.
//! - `message` always has the four keys; `buttons`/`quick_replies` may be
//!   empty; a button has `title` and either `payload` (post back) or `url`.
//!   `tag` appears only when the route set a message tag.
//!
//! # Signature ([Standard Webhooks](https://www.standardwebhooks.com/))
//!
//! - `webhook-id`: the body's `id`
//! - `webhook-timestamp`: Unix seconds when this attempt was sent
//! - `webhook-signature`: `v1,<base64 HMAC-SHA256(key, "{webhook-id}.{webhook-timestamp}.{raw body}")>`
//!
//! The key is the base64-decoded part after `whsec_` when `webhook_secret`
//! starts with `whsec_`, else the secret's raw UTF-8 bytes. Receivers should
//! compare in constant time and reject timestamps more than 5 minutes off.
//! Without a `webhook_secret` (only with `insecure_webhooks = true`) requests
//! are unsigned.
//!
//! # Reply
//!
//! | reply | outcome |
//! |---|---|
//! | 2xx `{"message_id":"…"}` | sent; `message_id` is the provider id receipts refer to (an empty body or no `message_id`: the webhook id is used) |
//! | 429 (+ `Retry-After: <seconds>`) | rate limited, retried after that delay |
//! | 408, 5xx | transient, retried with backoff |
//! | 401, 403 | auth: the push pauses until an operator fixes the secret |
//! | other 4xx `{"error":{"code":"…","message":"…"}}` | `code` is one of `blocked`, `invalid_recipient`, `outside_window`, `rate_limited`, `transient`, `auth`, `rejected`; anything else counts as `rejected`, keeping the receiver's code and message |
//!
//! A 2xx with a body that is not JSON is treated as transient: a proxy's page
//! is not an acknowledgement.
//!
//! # Ping and test messages
//!
//! `pushd channel test` posts `{"type":"ping","id":"ping_<unix ms>"}`, signed
//! as above: answer it 2xx and send nothing. `pushd channel test --to USER`
//! then sends one `message.send` whose id is `msg_-<unix ms>` (negative:
//! never a delivery's).

use crate::channel::http::{self, HttpSettings, Scrubber};
use crate::channel::{Channel, ChannelContext, ChannelError, Recipient, Rule, RuleError};
use crate::config::ChannelConfig;
use crate::model::{ErrorClass, Outbound, Platform, SendError, SendOk};
use async_trait::async_trait;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{KeyInit, Mac};
use serde_json::{Value, json};

pub(crate) mod probe;

type HmacSha256 = hmac::Hmac<sha2::Sha256>;

pub struct Custom {
    name: String,
    platform: Platform,
    http: HttpSettings,
    url: reqwest::Url,
    /// HMAC key; `None` sends unsigned (only allowed with `insecure_webhooks`).
    key: Option<Vec<u8>>,
    scrubber: Scrubber,
}

impl Custom {
    pub fn new(
        name: &str,
        cfg: &ChannelConfig,
        ctx: &ChannelContext,
        platform: Platform,
    ) -> Result<Self, ChannelError> {
        let url = cfg
            .url
            .clone()
            .filter(|u| !u.is_empty())
            .ok_or_else(|| http::missing_setting(name, "url"))?;
        let url = http::parse_url(&url)?;
        let key = cfg
            .secrets
            .webhook_secret
            .as_ref()
            .map(|s| signing_key(s.expose()))
            .transpose()
            .map_err(|_| ChannelError::WebhookSecretNotBase64 {
                channel: name.to_string(),
            })?;
        Ok(Custom {
            name: name.to_string(),
            platform,
            http: HttpSettings::new(cfg, ctx, ""),
            url,
            key,
            scrubber: Scrubber::new(cfg.secrets.all().cloned()),
        })
    }

    async fn post(&self, webhook_id: &str, body: &Value) -> Result<SendOk, SendError> {
        let raw = body.to_string();
        let timestamp = chrono::Utc::now().timestamp().to_string();
        let mut request = self
            .http
            .client
            .post(self.url.clone())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header("webhook-id", webhook_id)
            .header("webhook-timestamp", &timestamp);
        if let Some(key) = &self.key {
            request = request.header(
                "webhook-signature",
                signature(key, webhook_id, &timestamp, &raw),
            );
        }
        let reply = http::execute(request.body(raw), self.http.timeout).await?;
        let json = reply.json();
        let status = reply.status.as_u16();
        if reply.status.is_success() {
            if reply.body.iter().all(u8::is_ascii_whitespace) {
                return Ok(SendOk {
                    provider_message_id: webhook_id.to_string(),
                });
            }
            let Some(json) = json else {
                return Err(reply.not_json());
            };
            let id = json
                .get("message_id")
                .and_then(|v| {
                    v.as_str()
                        .map(str::to_string)
                        .or_else(|| v.as_i64().map(|n| n.to_string()))
                })
                .unwrap_or_else(|| webhook_id.to_string());
            return Ok(SendOk {
                provider_message_id: id,
            });
        }
        let error = json.as_ref().and_then(|j| j.get("error"));
        let code = error
            .and_then(|e| e.get("code"))
            .and_then(Value::as_str)
            .map(str::to_string);
        let message = error
            .and_then(|e| e.get("message"))
            .and_then(Value::as_str)
            .map(str::to_string);
        let class = match status {
            429 => ErrorClass::RateLimited,
            408 | 500..=599 => ErrorClass::Transient,
            401 | 403 => ErrorClass::Auth,
            _ => code
                .as_deref()
                .and_then(ErrorClass::parse)
                .filter(|c| *c != ErrorClass::Interrupted)
                .unwrap_or(ErrorClass::Rejected),
        };
        let message = match (message, &json) {
            (Some(m), _) => format!("HTTP {status}: {m}"),
            (None, Some(_)) => format!("HTTP {status}: {}", reply.snippet()),
            (None, None) if reply.body.is_empty() => format!("HTTP {status} with an empty body"),
            (None, None) => format!(
                "HTTP {status} with a non-JSON body ({}): {}",
                reply.content_type(),
                reply.snippet()
            ),
        };
        let retry_after = reply.retry_after().or_else(|| {
            error
                .and_then(|e| e.get("retry_after"))
                .and_then(Value::as_f64)
                .filter(|s| s.is_finite() && *s >= 0.0)
                .map(std::time::Duration::from_secs_f64)
        });
        Err(SendError::new(
            class,
            code.unwrap_or_else(|| format!("http_{status}")),
            message,
        )
        .with_retry_after(retry_after))
    }
}

#[async_trait]
impl Channel for Custom {
    fn name(&self) -> &str {
        &self.name
    }

    fn platform(&self) -> Platform {
        self.platform
    }

    fn validate(&self, outbound: &Outbound) -> Result<(), RuleError> {
        rules(self.platform, outbound)
    }

    async fn send(&self, to: &Recipient, outbound: &Outbound) -> Result<SendOk, SendError> {
        let id = format!("msg_{}", to.delivery_id);
        let result = match self.validate(outbound) {
            Err(e) => Err(http::invalid_message(e)),
            Ok(()) => {
                self.post(&id, &request_body(&id, &to.channel_user_id, outbound))
                    .await
            }
        };
        result.map_err(|e| http::failed(&self.name, &self.scrubber, e))
    }

    /// A custom platform's capacity is unknown: only `rate_per_second` and the
    /// global rate limit it.
    fn default_rate_per_second(&self) -> Option<f64> {
        None
    }

    async fn probe(&self) -> crate::channel::Probe {
        self.ping().await
    }
}

/// The message rules of a custom or webchat platform (what
/// [`Channel::validate`] checks): the contract carries any message, so only
/// an empty one or an empty button title is refused.
pub(crate) fn rules(platform: Platform, outbound: &Outbound) -> Result<(), RuleError> {
    let broken = match outbound {
        Outbound::Template { name, .. } if name.trim().is_empty() => Rule::Empty("template name"),
        Outbound::Message { message, .. }
            if message.text.trim().is_empty()
                && message.image_url.is_none()
                && message.buttons.is_empty() =>
        {
            Rule::EmptyMessage
        }
        Outbound::Message { message, .. }
            if message
                .buttons
                .iter()
                .chain(&message.quick_replies)
                .any(|b| b.title.trim().is_empty()) =>
        {
            Rule::Other("a button has an empty title".into())
        }
        _ => return Ok(()),
    };
    Err(broken.on(platform.as_str()))
}

/// The webhook body (see the module documentation).
pub fn request_body(id: &str, to: &str, outbound: &Outbound) -> Value {
    match outbound {
        Outbound::Message { message, tag } => {
            let mut body = json!({
                "type": "message.send",
                "id": id,
                "to": to,
                "message": {
                    "text": message.text,
                    "buttons": message.buttons,
                    "quick_replies": message.quick_replies,
                    "image_url": message.image_url,
                },
            });
            if let Some(tag) = tag {
                body["tag"] = json!(tag);
            }
            body
        }
        Outbound::Template {
            name,
            language,
            params,
        } => json!({
            "type": "template.send",
            "id": id,
            "to": to,
            "template": { "name": name, "language": language, "params": params },
        }),
    }
}

/// The HMAC key for a `webhook_secret`: base64 after `whsec_`, else raw bytes.
pub fn signing_key(secret: &str) -> Result<Vec<u8>, base64::DecodeError> {
    match secret.strip_prefix("whsec_") {
        Some(b64) => BASE64.decode(b64.trim()),
        None => Ok(secret.as_bytes().to_vec()),
    }
}

/// `v1,<base64 HMAC-SHA256(key, "{id}.{timestamp}.{body}")>`.
pub fn signature(key: &[u8], id: &str, timestamp: &str, body: &str) -> String {
    // HMAC accepts keys of any length; this cannot fail.
    let mut mac = match HmacSha256::new_from_slice(key) {
        Ok(mac) => mac,
        Err(_) => return String::new(),
    };
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body.as_bytes());
    format!("v1,{}", BASE64.encode(mac.finalize().into_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example from the Standard Webhooks specification's test vectors.
    #[test]
    fn standard_webhooks_vector() {
        let key = signing_key("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let sig = signature(
            &key,
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            "1614265330",
            r#"{"test": 2432232314}"#,
        );
        assert_eq!(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    }

    #[test]
    fn raw_secret_without_prefix() {
        assert_eq!(signing_key("plain").unwrap(), b"plain");
        assert!(signing_key("whsec_!!!").is_err());
    }
}
