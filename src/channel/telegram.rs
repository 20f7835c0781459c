//! Telegram Bot API: `POST {base}/bot<token>/sendMessage` or `/sendPhoto`,
//! JSON body, the token in the path (so no URL is ever logged or put in an
//! error).
//!
//! | pushd message | Bot API call |
//! |---|---|
//! | text (≤ 4096 characters) | `sendMessage {chat_id, text}` |
//! | image (+ text as caption ≤ 1024) | `sendPhoto {chat_id, photo: <url>, caption}` |
//! | buttons | `reply_markup.inline_keyboard`, one row each: callback buttons (`callback_data` ≤ 64 bytes) or URL buttons |
//! | quick replies | callback buttons, together in a last row |
//!
//! Replies: `{"ok":true,"result":Message}`; errors
//! `{"ok":false,"error_code":N,"description":"...","parameters":{"retry_after":s}}`.
//! Sources: CHANNELS.md §4; core.telegram.org/bots/api (sendMessage,
//! sendPhoto, InlineKeyboardButton); github.com/TelegramBotAPI/errors.
//! The provider id is `"<chat_id>:<message_id>"`, since message ids are only
//! unique within a chat.

use crate::channel::http::{self, HttpSettings, Scrubber};
use crate::channel::{Channel, ChannelContext, ChannelError, Recipient, Rule, RuleError};
use crate::config::{ChannelConfig, Secret};
use crate::model::{Button, ErrorClass, Message, Outbound, Platform, SendError, SendOk};
use async_trait::async_trait;
use serde_json::{Value, json};
use std::time::Duration;

pub(crate) mod probe;

const DEFAULT_BASE_URL: &str = "https://api.telegram.org";

/// Bot FAQ: "the API will not allow more than 30 messages per second or so"
/// for bulk notifications (and about 1 per second per chat).
const DEFAULT_RATE: f64 = 30.0;

const TEXT_MAX: usize = 4096;
const CAPTION_MAX: usize = 1024;
const CALLBACK_DATA_MAX_BYTES: usize = 64;

pub struct Telegram {
    name: String,
    http: HttpSettings,
    token: Secret,
    /// Given to `setWebhook`; Telegram echoes it on every webhook.
    secret_token: Option<Secret>,
    scrubber: Scrubber,
}

impl Telegram {
    pub fn new(
        name: &str,
        cfg: &ChannelConfig,
        ctx: &ChannelContext,
    ) -> Result<Self, ChannelError> {
        let token = cfg
            .secrets
            .token
            .clone()
            .ok_or_else(|| http::missing_setting(name, "token"))?;
        Ok(Telegram {
            name: name.to_string(),
            http: HttpSettings::new(cfg, ctx, DEFAULT_BASE_URL),
            scrubber: Scrubber::new(cfg.secrets.all().cloned()),
            secret_token: cfg.secrets.secret_token.clone(),
            token,
        })
    }

    async fn call(&self, method: &str, body: &Value) -> Result<SendOk, SendError> {
        let (reply, json) = self.api(method, body).await?;
        let message_id = json.pointer("/result/message_id").and_then(Value::as_i64);
        let chat_id = json.pointer("/result/chat/id").and_then(id_text);
        match (chat_id, message_id) {
            (Some(chat), Some(id)) => Ok(SendOk {
                provider_message_id: format!("{chat}:{id}"),
            }),
            _ => Err(reply.missing("result.message_id and result.chat.id")),
        }
    }

    /// One Bot API call: the reply and its JSON when `ok` is true, else the
    /// classified error.
    async fn api(&self, method: &str, body: &Value) -> Result<(http::Reply, Value), SendError> {
        // Holds the token: used for this request only, never logged.
        let url = self
            .http
            .url(&format!("/bot{}/{method}", self.token.expose()));
        let request = self.http.client.post(url).json(body);
        let reply = http::execute(request, self.http.timeout).await?;
        let Some(json) = reply.json() else {
            return Err(reply.not_json());
        };
        if json.get("ok").and_then(Value::as_bool) == Some(true) {
            return Ok((reply, json));
        }
        let Some(code) = json.get("error_code").and_then(Value::as_i64) else {
            return Err(reply.status_error());
        };
        let description = json
            .get("description")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let retry_after = json
            .pointer("/parameters/retry_after")
            .and_then(Value::as_f64)
            .filter(|s| s.is_finite() && *s >= 0.0)
            .map(Duration::from_secs_f64)
            .or_else(|| reply.retry_after());
        let mut message = description.clone();
        if let Some(to) = json
            .pointer("/parameters/migrate_to_chat_id")
            .and_then(id_text)
        {
            message.push_str(&format!(" (the group moved to chat id {to})"));
        }
        Err(
            SendError::new(classify(code, &description), code.to_string(), message)
                .with_retry_after(retry_after),
        )
    }
}

#[async_trait]
impl Channel for Telegram {
    fn name(&self) -> &str {
        &self.name
    }

    fn platform(&self) -> Platform {
        Platform::Telegram
    }

    fn validate(&self, outbound: &Outbound) -> Result<(), RuleError> {
        rules(outbound)
    }

    async fn send(&self, to: &Recipient, outbound: &Outbound) -> Result<SendOk, SendError> {
        let result = match (self.validate(outbound), outbound) {
            (Err(e), _) => Err(http::invalid_message(e)),
            (Ok(()), Outbound::Message { message, .. }) => {
                let (method, body) = request(&to.channel_user_id, message);
                self.call(method, &body).await
            }
            (Ok(()), Outbound::Template { .. }) => {
                Err(http::invalid_message(Rule::NoTemplates("Telegram")))
            }
        };
        result.map_err(|e| http::failed(&self.name, &self.scrubber, e))
    }

    fn default_rate_per_second(&self) -> Option<f64> {
        Some(DEFAULT_RATE)
    }

    async fn probe(&self) -> crate::channel::Probe {
        self.get_me().await
    }

    async fn register_webhook(&self, url: Option<&str>) -> Option<crate::channel::Probe> {
        Some(match url {
            Some(url) => self.set_webhook(url).await,
            None => self.delete_webhook().await,
        })
    }
}

/// A chat id as text, whether the JSON has it as a number or a string.
fn id_text(v: &Value) -> Option<String> {
    v.as_i64()
        .map(|n| n.to_string())
        .or_else(|| v.as_str().map(str::to_string))
}

/// Bot API error codes and descriptions (github.com/TelegramBotAPI/errors).
fn classify(code: i64, description: &str) -> ErrorClass {
    let d = description.to_ascii_lowercase();
    match code {
        429 => ErrorClass::RateLimited,
        // 401 "Unauthorized": wrong token; 404 "Not Found": malformed token.
        401 | 404 => ErrorClass::Auth,
        403 if d.contains("can't initiate conversation") => ErrorClass::OutsideWindow,
        403 if d.contains("bots can't send messages to bots")
            || d.contains("can't send messages to bots") =>
        {
            ErrorClass::InvalidRecipient
        }
        // Blocked by the user, user deactivated, kicked from the group.
        403 => ErrorClass::Blocked,
        400 if [
            "chat not found",
            "user not found",
            "peer_id_invalid",
            "chat_id is empty",
            "upgraded to a supergroup",
        ]
        .iter()
        .any(|s| d.contains(s)) =>
        {
            ErrorClass::InvalidRecipient
        }
        400 if d.contains("not enough rights") || d.contains("have no rights") => {
            ErrorClass::Blocked
        }
        500..=599 => ErrorClass::Transient,
        _ => ErrorClass::Rejected,
    }
}

/// Telegram's message rules (what [`Channel::validate`] checks); the error
/// names the rule broken.
pub(crate) fn rules(outbound: &Outbound) -> Result<(), RuleError> {
    validate(outbound).map_err(|rule| rule.on("Telegram"))
}

fn validate(outbound: &Outbound) -> Result<(), Rule> {
    let m = match outbound {
        Outbound::Template { .. } => return Err(Rule::NoTemplates("Telegram")),
        Outbound::Message { message, .. } => message,
    };
    match &m.image_url {
        Some(url) => {
            http::check_http_url("image_url", url)?;
            http::check_chars("photo caption (text)", &m.text, CAPTION_MAX)?;
        }
        None => {
            if m.text.trim().is_empty() {
                return Err(Rule::Other(
                    "text is empty (Telegram needs 1-4096 characters)".into(),
                ));
            }
            http::check_chars("text", &m.text, TEXT_MAX)?;
        }
    }
    for b in &m.buttons {
        check_button(b)?;
    }
    for q in &m.quick_replies {
        if q.url.is_some() {
            return Err(Rule::QuickReplyWithUrl(q.title.clone()));
        }
        check_button(q)?;
    }
    Ok(())
}

fn check_button(b: &Button) -> Result<(), Rule> {
    if b.title.trim().is_empty() {
        return Err(Rule::Empty("button text"));
    }
    match &b.url {
        Some(url) => {
            if !(url.starts_with("https://")
                || url.starts_with("http://")
                || url.starts_with("tg://"))
            {
                return Err(Rule::Other(format!(
                    "button url {url:?} is not an http(s) or tg:// URL"
                )));
            }
        }
        None => {
            let data = http::payload(b);
            if data.is_empty() {
                return Err(Rule::Other(format!(
                    "button {:?} has an empty payload",
                    b.title
                )));
            }
            http::check_bytes(
                &format!("callback_data of button {:?}", b.title),
                data,
                CALLBACK_DATA_MAX_BYTES,
            )?;
        }
    }
    Ok(())
}

/// `chat_id` as Telegram takes it: an integer, or `@channelusername`.
fn chat_id(to: &str) -> Value {
    match to.parse::<i64>() {
        Ok(n) => json!(n),
        Err(_) => json!(to),
    }
}

/// The method and body for one message (assumes validation passed).
fn request(to: &str, m: &Message) -> (&'static str, Value) {
    let mut body = json!({ "chat_id": chat_id(to) });
    let method = match &m.image_url {
        Some(url) => {
            body["photo"] = json!(url);
            if !m.text.is_empty() {
                body["caption"] = json!(m.text);
            }
            "sendPhoto"
        }
        None => {
            body["text"] = json!(m.text);
            "sendMessage"
        }
    };
    let mut rows: Vec<Value> = m.buttons.iter().map(|b| json!([key(b)])).collect();
    if !m.quick_replies.is_empty() {
        rows.push(m.quick_replies.iter().map(key).collect());
    }
    if !rows.is_empty() {
        body["reply_markup"] = json!({ "inline_keyboard": rows });
    }
    (method, body)
}

fn key(b: &Button) -> Value {
    match &b.url {
        Some(url) => json!({ "text": b.title, "url": url }),
        None => json!({ "text": b.title, "callback_data": http::payload(b) }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classification() {
        assert_eq!(
            classify(403, "Forbidden: bot was blocked by the user"),
            ErrorClass::Blocked
        );
        assert_eq!(
            classify(403, "Forbidden: user is deactivated"),
            ErrorClass::Blocked
        );
        assert_eq!(
            classify(
                403,
                "Forbidden: bot can't initiate conversation with a user"
            ),
            ErrorClass::OutsideWindow
        );
        assert_eq!(
            classify(400, "Bad Request: chat not found"),
            ErrorClass::InvalidRecipient
        );
        assert_eq!(
            classify(400, "Bad Request: message is too long"),
            ErrorClass::Rejected
        );
        assert_eq!(classify(401, "Unauthorized"), ErrorClass::Auth);
        assert_eq!(classify(502, "Bad Gateway"), ErrorClass::Transient);
    }

    #[test]
    fn callback_data_is_limited_in_bytes() {
        let m = Message {
            text: "pick".into(),
            buttons: vec![Button {
                title: "ok".into(),
                payload: Some("é".repeat(33)),
                url: None,
            }],
            ..Message::default()
        };
        let e = validate(&Outbound::Message {
            message: m,
            tag: None,
        })
        .unwrap_err()
        .to_string();
        assert!(e.contains("66 bytes") && e.contains("64"), "{e}");
    }
}
