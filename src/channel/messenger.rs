//! Facebook Messenger Send API (and, through [`Flavor::Instagram`], the
//! Messenger API for Instagram): `POST {base}/{version}/{page_id}/messages?access_token=<page token>`.
//!
//! | pushd message | Send API message |
//! |---|---|
//! | text | `message.text` (Messenger ≤ 2000, Instagram < 1000 characters) |
//! | buttons (≤ 3, postback or URL) | button template, `text` ≤ 640 |
//! | image + text | generic template: title = text (≤ 80), `image_url`, buttons |
//! | image only | image attachment (`is_reusable`) |
//! | quick replies (≤ 13, title ≤ 20) | `message.quick_replies`, on any of the above |
//!
//! `messaging_type` is `RESPONSE`, or `MESSAGE_TAG` + `tag` when the outbound
//! carries a tag (outside the 24 h window). Sources: CHANNELS.md §2–3;
//! developers.facebook.com …/messenger-platform/send-messages/{quick-replies,
//! template/button, template/generic}; …/instagram-messaging/button-template.
//! The reply's `message_id` is the provider id delivery/read webhooks refer to.

use crate::channel::http::{self, HttpSettings, Scrubber};
use crate::channel::meta::{self, GraphError};
use crate::channel::{Channel, ChannelContext, ChannelError, Recipient, Rule, RuleError};
use crate::config::{ChannelConfig, Secret};
use crate::model::{ErrorClass, Message, Outbound, Platform, SendError, SendOk};
use async_trait::async_trait;
use serde_json::{Value, json};

pub(crate) mod probe;

/// Send API: "300 calls per second per Page" for text, links, reactions and
/// stickers (…/messenger-platform/overview/rate-limiting); the same figure
/// applies per Instagram professional account.
const DEFAULT_RATE: f64 = 300.0;

const QUICK_REPLIES_MAX: usize = 13;
const QUICK_REPLY_TITLE_MAX: usize = 20;
const BUTTONS_MAX: usize = 3;
const BUTTON_TITLE_MAX: usize = 20;
const PAYLOAD_MAX: usize = 1000;
const BUTTON_TEMPLATE_TEXT_MAX: usize = 640;
const GENERIC_TITLE_MAX: usize = 80;

/// Which Meta inbox this instance sends to; decides limits and tags.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flavor {
    Messenger,
    Instagram,
}

impl Flavor {
    fn label(self) -> &'static str {
        match self {
            Flavor::Messenger => "Messenger",
            Flavor::Instagram => "Instagram",
        }
    }

    fn text_max(self) -> usize {
        match self {
            Flavor::Messenger => 2000,
            // Instagram: "less than 1000 characters"
            // (…/messenger-platform/instagram/features/send-message).
            Flavor::Instagram => 999,
        }
    }

    /// Message tags allowed for sends outside the standard window.
    fn tags(self) -> &'static [&'static str] {
        match self {
            Flavor::Messenger => &[
                "ACCOUNT_UPDATE",
                "CONFIRMED_EVENT_UPDATE",
                "CUSTOMER_FEEDBACK",
                "HUMAN_AGENT",
                "POST_PURCHASE_UPDATE",
            ],
            // The only tag Instagram accepts for replies after the 24 h window.
            Flavor::Instagram => &["HUMAN_AGENT"],
        }
    }
}

pub struct Messenger {
    name: String,
    flavor: Flavor,
    http: HttpSettings,
    url: reqwest::Url,
    token: Secret,
    scrubber: Scrubber,
}

impl Messenger {
    pub fn new(
        name: &str,
        cfg: &ChannelConfig,
        ctx: &ChannelContext,
        flavor: Flavor,
    ) -> Result<Self, ChannelError> {
        let token = cfg
            .secrets
            .token
            .clone()
            .ok_or_else(|| http::missing_setting(name, "token"))?;
        let page = cfg
            .page_id
            .as_deref()
            .filter(|p| !p.is_empty())
            .unwrap_or("me");
        let version = cfg
            .api_version
            .as_deref()
            .unwrap_or(meta::DEFAULT_API_VERSION);
        let http = HttpSettings::new(cfg, ctx, meta::DEFAULT_BASE_URL);
        let url = http.endpoint(&format!("/{version}/{page}/messages"))?;
        Ok(Messenger {
            name: name.to_string(),
            flavor,
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
            .query(&[("access_token", self.token.expose())])
            .json(body);
        let reply = http::execute(request, self.http.timeout).await?;
        let json = meta::read_reply(&reply, classify)?;
        json.get("message_id")
            .and_then(Value::as_str)
            .map(|id| SendOk {
                provider_message_id: id.to_string(),
            })
            .ok_or_else(|| reply.missing("message_id"))
    }
}

/// Messenger's or Instagram's message rules (what [`Channel::validate`]
/// checks); the error names the rule broken.
pub(crate) fn rules(flavor: Flavor, outbound: &Outbound) -> Result<(), RuleError> {
    validate_outbound(flavor, outbound).map_err(|rule| rule.on(flavor.label()))
}

fn validate_outbound(flavor: Flavor, outbound: &Outbound) -> Result<(), Rule> {
    let (message, tag) = match outbound {
        Outbound::Template { .. } => {
            return Err(Rule::Other(format!(
                "{} has no pre-approved message templates; outside the 24 h window send a message with a `tag` ({})",
                flavor.label(),
                flavor.tags().join(", ")
            )));
        }
        Outbound::Message { message, tag } => (message, tag),
    };
    if let Some(tag) = tag
        && !flavor.tags().contains(&tag.as_str())
    {
        return Err(Rule::Other(format!(
            "message tag {tag:?} is not one of {}",
            flavor.tags().join(", ")
        )));
    }
    validate_message(flavor, message)
}

#[async_trait]
impl Channel for Messenger {
    fn name(&self) -> &str {
        &self.name
    }

    fn platform(&self) -> Platform {
        match self.flavor {
            Flavor::Messenger => Platform::Messenger,
            Flavor::Instagram => Platform::Instagram,
        }
    }

    fn validate(&self, outbound: &Outbound) -> Result<(), RuleError> {
        rules(self.flavor, outbound)
    }

    async fn send(&self, to: &Recipient, outbound: &Outbound) -> Result<SendOk, SendError> {
        let result = match self.validate(outbound) {
            Err(e) => Err(http::invalid_message(e)),
            Ok(()) => {
                self.post(&request_body(self.flavor, &to.channel_user_id, outbound))
                    .await
            }
        };
        result.map_err(|e| http::failed(&self.name, &self.scrubber, e))
    }

    fn default_rate_per_second(&self) -> Option<f64> {
        Some(DEFAULT_RATE)
    }

    async fn probe(&self) -> crate::channel::Probe {
        self.check_page().await
    }
}

/// Subcodes Meta uses for "sent outside of allowed window" (Messenger and Instagram).
const WINDOW_SUBCODES: &[i64] = &[2018278, 2018065, 2534022];

/// Messenger Platform error codes (…/messenger-platform/error-codes).
fn classify(e: &GraphError) -> ErrorClass {
    if e.code == 551 || e.error_subcode == Some(1545041) {
        // "This person isn't available right now": blocked the Page,
        // turned off messages, or deactivated.
        return ErrorClass::Blocked;
    }
    if e.error_subcode
        .is_some_and(|s| WINDOW_SUBCODES.contains(&s))
        || e.says("outside of allowed window")
    {
        return ErrorClass::OutsideWindow;
    }
    if e.error_subcode == Some(2018001) || (e.code == 100 && e.says("no matching user")) {
        return ErrorClass::InvalidRecipient;
    }
    match e.code {
        // Without a window subcode, 10 is "application does not have
        // permission for this action".
        10 => ErrorClass::Auth,
        _ => meta::common_class(e).unwrap_or(ErrorClass::Rejected),
    }
}

fn validate_message(flavor: Flavor, m: &Message) -> Result<(), Rule> {
    if let Some(url) = &m.image_url {
        http::check_http_url("image_url", url)?;
    }
    http::check_count("quick replies", m.quick_replies.len(), QUICK_REPLIES_MAX)?;
    for q in &m.quick_replies {
        if q.url.is_some() {
            return Err(Rule::QuickReplyWithUrl(q.title.clone()));
        }
        non_empty("quick reply title", &q.title)?;
        http::check_chars("quick reply title", &q.title, QUICK_REPLY_TITLE_MAX)?;
        http::check_chars("quick reply payload", http::payload(q), PAYLOAD_MAX)?;
    }
    http::check_count("buttons", m.buttons.len(), BUTTONS_MAX)?;
    for b in &m.buttons {
        non_empty("button title", &b.title)?;
        http::check_chars("button title", &b.title, BUTTON_TITLE_MAX)?;
        match &b.url {
            Some(url) => http::check_http_url("button url", url)?,
            None => http::check_chars("button payload", http::payload(b), PAYLOAD_MAX)?,
        }
    }
    let text = m.text.as_str();
    match (&m.image_url, m.buttons.is_empty()) {
        (Some(_), _) if !text.trim().is_empty() => http::check_chars(
            "text of a message with an image (shown as the generic-template title)",
            text,
            GENERIC_TITLE_MAX,
        ),
        (Some(_), false) => Err(Rule::Other(
            "a message with an image and buttons needs text (the generic-template title)".into(),
        )),
        (Some(_), true) => Ok(()),
        (None, false) => {
            non_empty("text of a message with buttons", text)?;
            http::check_chars(
                "text of a message with buttons (button template)",
                text,
                BUTTON_TEMPLATE_TEXT_MAX,
            )
        }
        (None, true) => {
            non_empty("text", text)?;
            http::check_chars("text", text, flavor.text_max())
        }
    }
}

fn non_empty(what: &'static str, s: &str) -> Result<(), Rule> {
    if s.trim().is_empty() {
        Err(Rule::Empty(what))
    } else {
        Ok(())
    }
}

/// The Send API request body (assumes validation passed).
fn request_body(flavor: Flavor, to: &str, outbound: &Outbound) -> Value {
    let (message, tag) = match outbound {
        Outbound::Message { message, tag } => (message, tag.as_deref()),
        // Refused by validation; never sent.
        Outbound::Template { .. } => return Value::Null,
    };
    let mut body = json!({ "recipient": { "id": to }, "message": message_object(message) });
    match tag {
        Some(tag) => {
            body["messaging_type"] = json!("MESSAGE_TAG");
            body["tag"] = json!(tag);
        }
        // Instagram's send examples carry no messaging_type; Messenger's
        // policy asks for one on every send.
        None if flavor == Flavor::Messenger => body["messaging_type"] = json!("RESPONSE"),
        None => {}
    }
    body
}

fn message_object(m: &Message) -> Value {
    let buttons: Vec<Value> = m
        .buttons
        .iter()
        .map(|b| match &b.url {
            Some(url) => json!({ "type": "web_url", "url": url, "title": b.title }),
            None => json!({ "type": "postback", "title": b.title, "payload": http::payload(b) }),
        })
        .collect();
    let mut message = match (&m.image_url, m.text.trim().is_empty()) {
        (Some(image), false) => {
            let mut element = json!({ "title": m.text, "image_url": image });
            if !buttons.is_empty() {
                element["buttons"] = json!(buttons);
            }
            json!({ "attachment": { "type": "template", "payload": {
                "template_type": "generic", "elements": [element] } } })
        }
        (Some(image), true) => json!({ "attachment": { "type": "image", "payload": {
            "url": image, "is_reusable": true } } }),
        (None, _) if !buttons.is_empty() => {
            json!({ "attachment": { "type": "template", "payload": {
            "template_type": "button", "text": m.text, "buttons": buttons } } })
        }
        (None, _) => json!({ "text": m.text }),
    };
    if !m.quick_replies.is_empty() {
        message["quick_replies"] = m
            .quick_replies
            .iter()
            .map(|q| json!({ "content_type": "text", "title": q.title, "payload": http::payload(q) }))
            .collect();
    }
    message
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Button;

    #[test]
    fn limits() {
        let mut m = Message {
            text: "x".repeat(2001),
            ..Message::default()
        };
        assert!(
            validate_message(Flavor::Messenger, &m)
                .unwrap_err()
                .to_string()
                .contains("2000")
        );
        m.text = "x".repeat(1000);
        assert!(validate_message(Flavor::Messenger, &m).is_ok());
        assert!(
            validate_message(Flavor::Instagram, &m)
                .unwrap_err()
                .to_string()
                .contains("999")
        );
        m.text = "pick".into();
        m.quick_replies = (0..14)
            .map(|i| Button {
                title: format!("q{i}"),
                ..Button::default()
            })
            .collect();
        let e = validate_message(Flavor::Messenger, &m)
            .unwrap_err()
            .to_string();
        assert!(e.contains("14 quick replies") && e.contains("13"), "{e}");
    }

    #[test]
    fn tagged_send() {
        let b = request_body(
            Flavor::Messenger,
            "PSID",
            &Outbound::Message {
                message: Message {
                    text: "hi".into(),
                    ..Message::default()
                },
                tag: Some("ACCOUNT_UPDATE".into()),
            },
        );
        assert_eq!(b["messaging_type"], "MESSAGE_TAG");
        assert_eq!(b["tag"], "ACCOUNT_UPDATE");
        assert_eq!(b["message"]["text"], "hi");
    }
}
