//! WhatsApp Business Cloud API: `POST {base}/{version}/{phone_number_id}/messages`
//! with `Authorization: Bearer <token>`.
//!
//! | pushd message | WhatsApp message |
//! |---|---|
//! | text only | `type: text` (≤ 4096 characters) |
//! | image (+ text as caption) | `type: image` with `link` (caption ≤ 1024) |
//! | reply buttons / quick replies (≤ 3 together) | `type: interactive`, `interactive.type: button` (body ≤ 1024, title ≤ 20, id ≤ 256); an image becomes the header |
//! | one URL button | `type: interactive`, `interactive.type: cta_url` (display text ≤ 20) |
//! | `Outbound::Template` | `type: template`, params as body text parameters |
//!
//! Sources: the project's CHANNELS.md reference §1; Meta's "Interactive reply buttons
//! messages" and "Interactive Call-to-Action URL Button Messages" pages. The
//! success reply carries `messages[0].id` (a `wamid.`), the provider id that
//! status webhooks refer to. Message tags are a Messenger concept and are
//! ignored here: outside the 24 h window WhatsApp only takes templates.

use crate::channel::http::{self, HttpSettings, Scrubber};
use crate::channel::meta::{self, GraphError};
use crate::channel::{Channel, ChannelContext, ChannelError, Recipient, Rule, RuleError};
use crate::config::{ChannelConfig, Secret};
use crate::model::{Button, ErrorClass, Message, Outbound, Platform, SendError, SendOk};
use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::borrow::Cow;
use std::collections::HashSet;

pub(crate) mod probe;

/// Default Cloud API throughput per business number: "up to 80 messages per
/// second" (developers.facebook.com/documentation/business-messaging/whatsapp/throughput).
const DEFAULT_RATE: f64 = 80.0;

const TEXT_MAX: usize = 4096;
const BODY_WITH_BUTTONS_MAX: usize = 1024;
const CAPTION_MAX: usize = 1024;
const REPLY_BUTTONS_MAX: usize = 3;
const BUTTON_TITLE_MAX: usize = 20;
const BUTTON_ID_MAX: usize = 256;

pub struct WhatsApp {
    name: String,
    http: HttpSettings,
    /// The messages endpoint (no credentials in it).
    url: reqwest::Url,
    /// `Bearer <token>`, built once (marked sensitive: never logged).
    auth: reqwest::header::HeaderValue,
    scrubber: Scrubber,
}

impl WhatsApp {
    pub fn new(
        name: &str,
        cfg: &ChannelConfig,
        ctx: &ChannelContext,
    ) -> Result<Self, ChannelError> {
        let phone_number_id = cfg
            .phone_number_id
            .clone()
            .filter(|s| !s.is_empty())
            .ok_or_else(|| http::missing_setting(name, "phone_number_id"))?;
        let token = cfg
            .secrets
            .token
            .clone()
            .ok_or_else(|| http::missing_setting(name, "token"))?;
        let http = HttpSettings::new(cfg, ctx, meta::DEFAULT_BASE_URL);
        let version = cfg
            .api_version
            .as_deref()
            .unwrap_or(meta::DEFAULT_API_VERSION);
        let url = http.endpoint(&format!("/{version}/{phone_number_id}/messages"))?;
        Ok(WhatsApp {
            name: name.to_string(),
            scrubber: Scrubber::new(cfg.secrets.all().cloned()),
            auth: bearer(&token).map_err(|_| ChannelError::TokenNotHeaderSafe {
                channel: name.to_string(),
            })?,
            http,
            url,
        })
    }

    async fn post(&self, body: Vec<u8>) -> Result<SendOk, SendError> {
        let request = self
            .http
            .client
            .post(self.url.clone())
            .header(reqwest::header::AUTHORIZATION, self.auth.clone())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body);
        let reply = http::execute(request, self.http.timeout).await?;
        // The usual answer, read without building a JSON tree; anything
        // else (errors, odd shapes) goes through the general reader.
        if reply.status.is_success()
            && let Ok(Accepted {
                messages,
                error: None,
            }) = serde_json::from_slice::<Accepted<'_>>(&reply.body)
            && let Some(first) = messages.into_iter().next()
        {
            return Ok(SendOk {
                provider_message_id: first.id.into_owned(),
            });
        }
        let json = meta::read_reply(&reply, classify)?;
        json.pointer("/messages/0/id")
            .and_then(Value::as_str)
            .map(|id| SendOk {
                provider_message_id: id.to_string(),
            })
            .ok_or_else(|| reply.missing("messages[0].id"))
    }
}

#[async_trait]
impl Channel for WhatsApp {
    fn name(&self) -> &str {
        &self.name
    }

    fn platform(&self) -> Platform {
        Platform::Whatsapp
    }

    fn validate(&self, outbound: &Outbound) -> Result<(), RuleError> {
        rules(outbound)
    }

    async fn send(&self, to: &Recipient, outbound: &Outbound) -> Result<SendOk, SendError> {
        let result = match self.validate(outbound) {
            Err(e) => Err(http::invalid_message(e)),
            Ok(()) => match body_bytes(&to.channel_user_id, outbound) {
                Ok(body) => self.post(body).await,
                Err(e) => Err(e),
            },
        };
        result.map_err(|e| http::failed(&self.name, &self.scrubber, e))
    }

    fn default_rate_per_second(&self) -> Option<f64> {
        Some(DEFAULT_RATE)
    }

    async fn probe(&self) -> crate::channel::Probe {
        self.check_phone_number().await
    }
}

/// Meta's WhatsApp error codes
/// (developers.facebook.com/documentation/business-messaging/whatsapp/support/error-codes).
fn classify(e: &GraphError) -> ErrorClass {
    match e.code {
        // Re-engagement message: more than 24 h since the customer last wrote.
        131047 => ErrorClass::OutsideWindow,
        // Undeliverable (not on WhatsApp, old client, ToS not accepted),
        // recipient cannot be sender, recipient not in the test allow-list.
        131026 | 131021 | 131030 => ErrorClass::InvalidRecipient,
        // The user chose to stop receiving marketing messages.
        131050 => ErrorClass::Blocked,
        // Throughput (130429), spam rate limit (131048), per-user marketing
        // cap (131049), business/consumer pair rate limit (131056).
        130429 | 131048 | 131049 | 131056 => ErrorClass::RateLimited,
        // Permission denied, account locked, payment/eligibility problem,
        // certificate, number not registered or deleted.
        3 | 10 | 33 | 131005 | 131031 | 131042 | 131045 | 133010 => ErrorClass::Auth,
        // "Something went wrong", service unavailable, maintenance mode,
        // server temporarily unavailable.
        131000 | 131016 | 131057 | 133004 => ErrorClass::Transient,
        _ => meta::common_class(e).unwrap_or(ErrorClass::Rejected),
    }
}

/// WhatsApp's message rules (what [`Channel::validate`] checks); the error
/// names the rule broken.
pub(crate) fn rules(outbound: &Outbound) -> Result<(), RuleError> {
    validate(outbound).map_err(|rule| rule.on("WhatsApp"))
}

fn validate(outbound: &Outbound) -> Result<(), Rule> {
    let message = match outbound {
        Outbound::Template { name, language, .. } => {
            if name.trim().is_empty() {
                return Err(Rule::Empty("template name"));
            }
            if language.trim().is_empty() {
                return Err(Rule::Other(format!(
                    "template {name:?} has no language code (e.g. \"en_US\")"
                )));
            }
            return Ok(());
        }
        Outbound::Message { message, .. } => message,
    };
    if let Some(url) = &message.image_url {
        http::check_http_url("image_url", url)?;
    }
    let (replies, links) = split_buttons(message)?;
    if !links.is_empty() {
        if links.len() > 1 || !replies.is_empty() {
            return Err(Rule::Other(format!(
                "one message carries up to {REPLY_BUTTONS_MAX} reply buttons (quick replies count as reply buttons) or one URL button, never both; this one has {} reply and {} URL button(s) (a link can go in the text instead)",
                replies.len(),
                links.len()
            )));
        }
        check_body(&message.text)?;
        let (title, url) = links[0];
        check_title("URL button title", title)?;
        http::check_http_url("URL button url", url)?;
        return Ok(());
    }
    if !replies.is_empty() {
        http::check_count(
            "reply buttons and quick replies",
            replies.len(),
            REPLY_BUTTONS_MAX,
        )?;
        check_body(&message.text)?;
        let mut ids = HashSet::new();
        for b in &replies {
            check_title("button title", &b.title)?;
            let id = http::payload(b);
            http::check_chars("button payload (reply id)", id, BUTTON_ID_MAX)?;
            if !ids.insert(id) {
                return Err(Rule::Other(format!(
                    "two buttons have the payload {id:?}; reply ids must be unique"
                )));
            }
        }
        return Ok(());
    }
    if message.image_url.is_some() {
        return http::check_chars("image caption (text)", &message.text, CAPTION_MAX);
    }
    if message.text.trim().is_empty() {
        return Err(Rule::EmptyMessage);
    }
    http::check_chars("text", &message.text, TEXT_MAX)
}

/// Reply buttons, and URL buttons as (title, url).
type SplitButtons<'a> = (Vec<&'a Button>, Vec<(&'a str, &'a str)>);

/// Reply buttons (buttons without a URL, then quick replies) and URL buttons.
fn split_buttons(message: &Message) -> Result<SplitButtons<'_>, Rule> {
    let mut replies = Vec::new();
    let mut links = Vec::new();
    for b in &message.buttons {
        match &b.url {
            Some(url) => links.push((b.title.as_str(), url.as_str())),
            None => replies.push(b),
        }
    }
    for q in &message.quick_replies {
        if q.url.is_some() {
            return Err(Rule::QuickReplyWithUrl(q.title.clone()));
        }
        replies.push(q);
    }
    Ok((replies, links))
}

fn check_body(text: &str) -> Result<(), Rule> {
    if text.trim().is_empty() {
        return Err(Rule::Other(
            "a message with buttons needs text (the interactive body)".into(),
        ));
    }
    http::check_chars(
        "text of a message with buttons",
        text,
        BODY_WITH_BUTTONS_MAX,
    )
}

fn check_title(what: &'static str, title: &str) -> Result<(), Rule> {
    if title.trim().is_empty() {
        return Err(Rule::Empty(what));
    }
    http::check_chars(what, title, BUTTON_TITLE_MAX)
}

/// The Cloud API request body for one recipient (assumes `validate` passed).
/// `Authorization: Bearer <token>`, checked once when the channel is built.
fn bearer(
    token: &Secret,
) -> Result<reqwest::header::HeaderValue, reqwest::header::InvalidHeaderValue> {
    let mut v = reqwest::header::HeaderValue::from_str(&format!("Bearer {}", token.expose()))?;
    v.set_sensitive(true);
    Ok(v)
}

/// A success reply: `{"messages": [{"id": "wamid…"}], …}`.
#[derive(Deserialize)]
struct Accepted<'a> {
    #[serde(borrow)]
    messages: Vec<AcceptedId<'a>>,
    error: Option<serde::de::IgnoredAny>,
}

#[derive(Deserialize)]
struct AcceptedId<'a> {
    #[serde(borrow)]
    id: Cow<'a, str>,
}

/// A plain text message, serialized straight from the message (most pushes).
#[derive(Serialize)]
struct TextBody<'a> {
    messaging_product: &'static str,
    recipient_type: &'static str,
    to: &'a str,
    #[serde(rename = "type")]
    kind: &'static str,
    text: TextPart<'a>,
}

#[derive(Serialize)]
struct TextPart<'a> {
    preview_url: bool,
    body: &'a str,
}

/// The request body as sent.
fn body_bytes(to: &str, outbound: &Outbound) -> Result<Vec<u8>, SendError> {
    let encoded = match outbound {
        Outbound::Message { message, .. }
            if message.image_url.is_none()
                && message.buttons.is_empty()
                && message.quick_replies.is_empty() =>
        {
            serde_json::to_vec(&TextBody {
                messaging_product: "whatsapp",
                recipient_type: "individual",
                to,
                kind: "text",
                text: TextPart {
                    preview_url: has_link(&message.text),
                    body: &message.text,
                },
            })
        }
        _ => serde_json::to_vec(&request_body(to, outbound)),
    };
    encoded.map_err(|e| http::invalid_message(format!("cannot encode the request: {e}")))
}

fn has_link(text: &str) -> bool {
    text.contains("https://") || text.contains("http://")
}

fn request_body(to: &str, outbound: &Outbound) -> Value {
    let mut body = json!({
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "to": to,
    });
    let fields = match outbound {
        Outbound::Template {
            name,
            language,
            params,
        } => {
            let mut template = json!({ "name": name, "language": { "code": language } });
            if !params.is_empty() {
                let parameters: Vec<Value> = params
                    .iter()
                    .map(|p| json!({ "type": "text", "text": p }))
                    .collect();
                template["components"] = json!([{ "type": "body", "parameters": parameters }]);
            }
            json!({ "type": "template", "template": template })
        }
        Outbound::Message { message, .. } => message_fields(message),
    };
    if let (Some(body), Value::Object(fields)) = (body.as_object_mut(), fields) {
        body.extend(fields);
    }
    body
}

fn message_fields(message: &Message) -> Value {
    let header = message
        .image_url
        .as_ref()
        .map(|url| json!({ "type": "image", "image": { "link": url } }));
    let replies: Vec<&Button> = message
        .buttons
        .iter()
        .filter(|b| b.url.is_none())
        .chain(&message.quick_replies)
        .collect();
    if let Some(link) = message.buttons.iter().find(|b| b.url.is_some()) {
        let mut interactive = json!({
            "type": "cta_url",
            "body": { "text": message.text },
            "action": {
                "name": "cta_url",
                "parameters": { "display_text": link.title, "url": link.url },
            },
        });
        if let Some(h) = header {
            interactive["header"] = h;
        }
        return json!({ "type": "interactive", "interactive": interactive });
    }
    if !replies.is_empty() {
        let buttons: Vec<Value> = replies
            .iter()
            .map(|b| json!({ "type": "reply", "reply": { "id": http::payload(b), "title": b.title } }))
            .collect();
        let mut interactive = json!({
            "type": "button",
            "body": { "text": message.text },
            "action": { "buttons": buttons },
        });
        if let Some(h) = header {
            interactive["header"] = h;
        }
        return json!({ "type": "interactive", "interactive": interactive });
    }
    if let Some(url) = &message.image_url {
        let mut image = json!({ "link": url });
        if !message.text.is_empty() {
            image["caption"] = json!(message.text);
        }
        return json!({ "type": "image", "image": image });
    }
    json!({ "type": "text", "text": { "preview_url": has_link(&message.text), "body": message.text } })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(text: &str) -> Message {
        Message {
            text: text.into(),
            ..Message::default()
        }
    }

    fn button(title: &str) -> Button {
        Button {
            title: title.into(),
            payload: Some(format!("P_{title}")),
            url: None,
        }
    }

    fn out(message: Message) -> Outbound {
        Outbound::Message { message, tag: None }
    }

    #[test]
    fn limits() {
        assert!(validate(&out(msg(&"x".repeat(4096)))).is_ok());
        let e = validate(&out(msg(&"x".repeat(4097))))
            .unwrap_err()
            .to_string();
        assert!(e.contains("4096"), "{e}");
        let mut m = msg("pick");
        m.buttons = vec![button("a"), button("b"), button("c"), button("d")];
        let e = validate(&out(m)).unwrap_err().to_string();
        assert!(
            e.contains("4 reply buttons") && e.contains("limit is 3"),
            "{e}"
        );
        let mut m = msg("pick");
        m.buttons = vec![button("this title is far too long")];
        assert!(
            validate(&out(m))
                .unwrap_err()
                .to_string()
                .contains("limit is 20")
        );
        let mut m = msg(&"x".repeat(1025));
        m.buttons = vec![button("a")];
        assert!(validate(&out(m)).unwrap_err().to_string().contains("1024"));
    }

    #[test]
    fn template_body() {
        let b = request_body(
            "15550001",
            &Outbound::Template {
                name: "order_update".into(),
                language: "en_US".into(),
                params: vec!["#1".into()],
            },
        );
        assert_eq!(b["type"], "template");
        assert_eq!(b["template"]["language"]["code"], "en_US");
        assert_eq!(
            b["template"]["components"][0]["parameters"][0]["text"],
            "#1"
        );
    }

    #[test]
    fn text_messages_are_encoded_directly_as_the_general_body_would_be() {
        for text in [
            "Hi Ava, 30% off",
            "see https://example.com",
            "引号 \"quoted\"\n",
        ] {
            let direct: Value =
                serde_json::from_slice(&body_bytes("15550001", &out(msg(text))).unwrap()).unwrap();
            assert_eq!(direct, request_body("15550001", &out(msg(text))), "{text}");
        }
        // Anything richer goes through the general body.
        let mut m = msg("pick");
        m.buttons = vec![button("a")];
        let rich: Value =
            serde_json::from_slice(&body_bytes("1", &out(m.clone())).unwrap()).unwrap();
        assert_eq!(rich, request_body("1", &out(m)));
    }
}
