//! Slack Web API `chat.postMessage`: `POST {base}/chat.postMessage` with
//! `Authorization: Bearer xoxb-…` and a JSON body.
//!
//! | pushd message | chat.postMessage |
//! |---|---|
//! | text | `text` (Slack truncates past 40,000 characters) |
//! | buttons, quick replies, image | `blocks`: a `section` with the text (≤ 3000), an `image` block, an `actions` block of ≤ 25 buttons (text ≤ 75, value ≤ 2000); `text` stays as the notification fallback |
//!
//! `channel` is the member's `channel_user_id`: a conversation id, or a user
//! id (U…) to post in the app's DM with that user. Errors come as HTTP 200
//! `{"ok":false,"error":"channel_not_found"}`, rate limiting as HTTP 429 with
//! `Retry-After`. Sources: CHANNELS.md §5; docs.slack.dev (chat.postMessage,
//! block kit reference for section/actions/button/image). The provider id is
//! `"<channel>:<ts>"`: `ts` is only unique within a conversation.

use crate::channel::http::{self, HttpSettings, Scrubber};
use crate::channel::{Channel, ChannelContext, ChannelError, Recipient, Rule, RuleError};
use crate::config::{ChannelConfig, Secret};
use crate::model::{Button, ErrorClass, Message, Outbound, Platform, SendError, SendOk};
use async_trait::async_trait;
use serde_json::{Value, json};

pub(crate) mod probe;

const DEFAULT_BASE_URL: &str = "https://slack.com/api";

/// chat.postMessage "generally allows posting one message per second per
/// channel" (api.slack.com/docs/rate-limits). The limit is per conversation,
/// and a push writes to many DMs, but Slack also keeps an unpublished
/// workspace-wide limit, so 1/s is the documented-safe default; raise
/// `rate_per_second` if your workspace tolerates more.
const DEFAULT_RATE: f64 = 1.0;

const TEXT_MAX: usize = 40_000;
const SECTION_TEXT_MAX: usize = 3000;
const ACTIONS_MAX: usize = 25;
const BUTTON_TEXT_MAX: usize = 75;
const BUTTON_VALUE_MAX: usize = 2000;
const BUTTON_URL_MAX: usize = 3000;
const IMAGE_URL_MAX: usize = 3000;

pub struct Slack {
    name: String,
    http: HttpSettings,
    url: reqwest::Url,
    token: Secret,
    scrubber: Scrubber,
}

impl Slack {
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
        let http = HttpSettings::new(cfg, ctx, DEFAULT_BASE_URL);
        let url = http.endpoint("/chat.postMessage")?;
        Ok(Slack {
            name: name.to_string(),
            scrubber: Scrubber::new(cfg.secrets.all().cloned()),
            http,
            url,
            token,
        })
    }

    async fn post(&self, body: &Value) -> Result<SendOk, SendError> {
        let request = self
            .http
            .client
            .post(self.url.clone())
            .bearer_auth(self.token.expose())
            .header(
                reqwest::header::CONTENT_TYPE,
                "application/json; charset=utf-8",
            )
            .body(body.to_string());
        let reply = http::execute(request, self.http.timeout).await?;
        let json = reply.json();
        if reply.status.as_u16() == 429 {
            let error = json
                .as_ref()
                .and_then(|j| j.get("error"))
                .and_then(Value::as_str)
                .unwrap_or("ratelimited")
                .to_string();
            return Err(SendError::new(
                ErrorClass::RateLimited,
                error,
                "HTTP 429 Too Many Requests (chat.postMessage rate limit)",
            )
            .with_retry_after(reply.retry_after()));
        }
        let Some(json) = json else {
            return Err(reply.not_json());
        };
        match json.get("ok").and_then(Value::as_bool) {
            Some(true) => {
                let channel = json.get("channel").and_then(Value::as_str);
                let ts = json.get("ts").and_then(Value::as_str);
                match (channel, ts) {
                    (Some(c), Some(t)) => Ok(SendOk {
                        provider_message_id: format!("{c}:{t}"),
                    }),
                    _ => Err(reply.missing("channel and ts")),
                }
            }
            Some(false) => {
                let error = json
                    .get("error")
                    .and_then(Value::as_str)
                    .unwrap_or("unknown_error");
                let mut class = classify(error);
                if reply.status.is_server_error() && class == ErrorClass::Rejected {
                    class = ErrorClass::Transient;
                }
                Err(SendError::new(class, error, describe_reply(error, &json))
                    .with_retry_after(reply.retry_after()))
            }
            None => Err(reply.status_error()),
        }
    }
}

#[async_trait]
impl Channel for Slack {
    fn name(&self) -> &str {
        &self.name
    }

    fn platform(&self) -> Platform {
        Platform::Slack
    }

    fn validate(&self, outbound: &Outbound) -> Result<(), RuleError> {
        rules(outbound)
    }

    async fn send(&self, to: &Recipient, outbound: &Outbound) -> Result<SendOk, SendError> {
        let result = match (self.validate(outbound), outbound) {
            (Err(e), _) => Err(http::invalid_message(e)),
            (Ok(()), Outbound::Message { message, .. }) => {
                self.post(&request_body(&to.channel_user_id, message)).await
            }
            (Ok(()), Outbound::Template { .. }) => {
                Err(http::invalid_message(Rule::NoTemplates("Slack")))
            }
        };
        result.map_err(|e| http::failed(&self.name, &self.scrubber, e))
    }

    fn default_rate_per_second(&self) -> Option<f64> {
        Some(DEFAULT_RATE)
    }

    async fn probe(&self) -> crate::channel::Probe {
        self.auth_test().await
    }
}

/// chat.postMessage error strings (docs.slack.dev/reference/methods/chat.postMessage).
fn classify(error: &str) -> ErrorClass {
    match error {
        "invalid_auth"
        | "not_authed"
        | "token_revoked"
        | "token_expired"
        | "account_inactive"
        | "missing_scope"
        | "no_permission"
        | "not_allowed_token_type"
        | "ekm_access_denied"
        | "team_access_not_granted"
        | "access_denied"
        | "org_login_required" => ErrorClass::Auth,
        "ratelimited" | "rate_limited" => ErrorClass::RateLimited,
        "channel_not_found" | "user_not_found" | "cannot_dm_bot" => ErrorClass::InvalidRecipient,
        // The conversation exists but the bot cannot post there any more.
        "is_archived"
        | "not_in_channel"
        | "messages_tab_disabled"
        | "restricted_action_read_only_channel" => ErrorClass::Blocked,
        "fatal_error" | "internal_error" | "service_unavailable" | "request_timeout" => {
            ErrorClass::Transient
        }
        _ => ErrorClass::Rejected,
    }
}

/// Slack's own words for the errors operators meet most.
fn describe(error: &str) -> String {
    let text = match error {
        "channel_not_found" => "Value passed for channel was invalid",
        "not_in_channel" => "The bot is not a member of the channel",
        "is_archived" => "Channel has been archived",
        "messages_tab_disabled" => "The user turned off direct messages from this app",
        "invalid_auth" => "Some aspect of authentication cannot be validated",
        "not_authed" => "No authentication token provided",
        "token_revoked" => "The token has been revoked or the app has been removed",
        "account_inactive" => "The token is for a deleted user or workspace",
        "missing_scope" => "The token lacks a scope this method needs",
        "rate_limited" | "ratelimited" => "Application has posted too many messages",
        "msg_too_long" => "Message text is too long",
        "no_text" => "No message text provided",
        "invalid_blocks" => "The blocks are invalid",
        _ => return format!("chat.postMessage failed: {error}"),
    };
    format!("{error}: {text}")
}

/// [`describe`], with the scope a `missing_scope` error names and the
/// scopes the token has (`needed`, `provided` in the reply).
fn describe_reply(error: &str, json: &Value) -> String {
    let mut text = describe(error);
    if let Some(needed) = json.get("needed").and_then(Value::as_str) {
        let provided = json.get("provided").and_then(Value::as_str).unwrap_or("");
        text.push_str(&format!(" (needed: {needed}; provided: {provided})"));
    }
    text
}

/// Slack's message rules (what [`Channel::validate`] checks); the error
/// names the rule broken.
pub(crate) fn rules(outbound: &Outbound) -> Result<(), RuleError> {
    validate(outbound).map_err(|rule| rule.on("Slack"))
}

fn validate(outbound: &Outbound) -> Result<(), Rule> {
    let m = match outbound {
        Outbound::Template { .. } => return Err(Rule::NoTemplates("Slack")),
        Outbound::Message { message, .. } => message,
    };
    if m.text.trim().is_empty() && m.image_url.is_none() {
        return Err(Rule::Empty("text"));
    }
    if uses_blocks(m) {
        http::check_chars(
            "text of a message with buttons or an image (section block)",
            &m.text,
            SECTION_TEXT_MAX,
        )?;
    } else {
        http::check_chars("text", &m.text, TEXT_MAX)?;
    }
    if let Some(url) = &m.image_url {
        http::check_http_url("image_url", url)?;
        http::check_chars("image_url", url, IMAGE_URL_MAX)?;
    }
    http::check_count(
        "buttons and quick replies (one actions block)",
        m.buttons.len() + m.quick_replies.len(),
        ACTIONS_MAX,
    )?;
    for b in m.buttons.iter().chain(&m.quick_replies) {
        if b.title.trim().is_empty() {
            return Err(Rule::Empty("button text"));
        }
        http::check_chars("button text", &b.title, BUTTON_TEXT_MAX)?;
        http::check_chars("button value (payload)", http::payload(b), BUTTON_VALUE_MAX)?;
        if let Some(url) = &b.url {
            http::check_chars("button url", url, BUTTON_URL_MAX)?;
        }
    }
    Ok(())
}

fn uses_blocks(m: &Message) -> bool {
    m.image_url.is_some() || !m.buttons.is_empty() || !m.quick_replies.is_empty()
}

/// The chat.postMessage body (assumes validation passed).
fn request_body(channel: &str, m: &Message) -> Value {
    let fallback = if m.text.trim().is_empty() {
        m.image_url.clone().unwrap_or_default()
    } else {
        m.text.clone()
    };
    let mut body = json!({ "channel": channel, "text": fallback });
    if !uses_blocks(m) {
        return body;
    }
    let mut blocks = Vec::new();
    if !m.text.trim().is_empty() {
        blocks.push(json!({ "type": "section", "text": { "type": "mrkdwn", "text": m.text } }));
    }
    if let Some(url) = &m.image_url {
        blocks.push(json!({ "type": "image", "image_url": url, "alt_text": "image" }));
    }
    let elements: Vec<Value> = m
        .buttons
        .iter()
        .chain(&m.quick_replies)
        .enumerate()
        .map(|(i, b)| button(i, b))
        .collect();
    if !elements.is_empty() {
        blocks
            .push(json!({ "type": "actions", "block_id": "pushd_actions", "elements": elements }));
    }
    body["blocks"] = json!(blocks);
    body
}

fn button(i: usize, b: &Button) -> Value {
    let mut e = json!({
        "type": "button",
        "action_id": format!("pushd_{i}"),
        "text": { "type": "plain_text", "text": b.title },
        "value": http::payload(b),
    });
    if let Some(url) = &b.url {
        e["url"] = json!(url);
    }
    e
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classification() {
        assert_eq!(classify("invalid_auth"), ErrorClass::Auth);
        assert_eq!(classify("account_inactive"), ErrorClass::Auth);
        assert_eq!(classify("channel_not_found"), ErrorClass::InvalidRecipient);
        assert_eq!(classify("is_archived"), ErrorClass::Blocked);
        assert_eq!(classify("rate_limited"), ErrorClass::RateLimited);
        assert_eq!(classify("msg_too_long"), ErrorClass::Rejected);
    }

    #[test]
    fn too_many_buttons() {
        let m = Message {
            text: "pick".into(),
            buttons: (0..26)
                .map(|i| Button {
                    title: format!("b{i}"),
                    ..Button::default()
                })
                .collect(),
            ..Message::default()
        };
        let e = validate(&Outbound::Message {
            message: m,
            tag: None,
        })
        .unwrap_err()
        .to_string();
        assert!(e.contains("26") && e.contains("25"), "{e}");
    }
}
