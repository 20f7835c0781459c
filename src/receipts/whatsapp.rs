//! WhatsApp Cloud API webhooks (`object = whatsapp_business_account`).
//!
//! `entry[].changes[]` with `field = messages` carry:
//! - `value.statuses[]`: `sent | delivered | read | failed` for a `wamid` we
//!   sent → [`InboundEvent::Status`] (`user = recipient_id`); `failed` carries
//!   `errors[0]` (`code`, `title`, `message`, `error_data.details`).
//! - `value.messages[]`: user messages → [`InboundEvent::Message`]: text,
//!   interactive `button_reply` / `list_reply` (payload = id, text = title),
//!   template quick-reply `type: button` (payload = `button.payload`), media
//!   (text = caption); `context.id` is the message replied to; the sender's
//!   name comes from `value.contacts[].profile.name`.
//!
//! Reactions, system notices, unsupported messages and other fields are
//! skipped. Timestamps are unix-seconds strings.
//! Sources: CHANNELS.md §1.5; WhatsApp/WhatsApp-Nodejs-SDK src/types/webhooks.ts.

use super::meta::{self, MetaRequest};
use super::webhook::{Json, bad, events, parse_json};
use super::{WebhookError, WebhookOutcome, WebhookRequest};
use crate::config::ChannelConfig;
use crate::model::{InboundEvent, StatusUpdate};

pub fn handle(
    cfg: &ChannelConfig,
    req: &WebhookRequest<'_>,
) -> Result<WebhookOutcome, WebhookError> {
    match meta::verify(cfg, req)? {
        MetaRequest::Handshake(out) => Ok(out),
        MetaRequest::Payload => parse(req.body).map(events),
    }
}

/// Parses a (verified) webhook body.
pub fn parse(body: &[u8]) -> Result<Vec<InboundEvent>, WebhookError> {
    // Nearly every webhook in a push's wake carries statuses only: those are
    // read straight into typed fields. Anything else, and anything the typed
    // reader does not take, is read by the general reader below, whose
    // errors name the field.
    if let Some(events) = statuses::parse(body) {
        return Ok(events);
    }
    parse_general(body)
}

/// Reads any webhook through a JSON tree, field by field.
fn parse_general(body: &[u8]) -> Result<Vec<InboundEvent>, WebhookError> {
    let doc = parse_json(body)?;
    let root = Json::root(&doc);
    let object = root.req_str("object")?;
    if object != "whatsapp_business_account" {
        return Err(bad(format!(
            "`object` is {object:?}, expected \"whatsapp_business_account\": is this webhook pointed at the right channel?"
        )));
    }
    let mut out = Vec::new();
    for entry in root.req("entry")?.items()? {
        for change in entry.opt_items("changes")? {
            // Other fields (template status, account updates, echoes) are not receipts.
            if change.opt_str("field")? != Some("messages") {
                continue;
            }
            let value = change.req("value")?;
            for status in value.opt_items("statuses")? {
                if let Some(ev) = status_event(&status)? {
                    out.push(ev);
                }
            }
            let contacts = value.opt_items("contacts")?;
            for message in value.opt_items("messages")? {
                if let Some(ev) = message_event(&message, &contacts)? {
                    out.push(ev);
                }
            }
        }
    }
    Ok(out)
}

fn status_event(s: &Json<'_>) -> Result<Option<InboundEvent>, WebhookError> {
    let id = s.req_str("id")?;
    let at = s.req("timestamp")?.unix_secs_ms()?;
    let user = s.opt_id("recipient_id")?;
    let update = match s.req_str("status")? {
        "sent" => StatusUpdate::Sent,
        "delivered" => StatusUpdate::Delivered,
        "read" => StatusUpdate::Read,
        "failed" => failure(s)?,
        // `played` (voice) and statuses added later tell us nothing we count.
        _ => return Ok(None),
    };
    Ok(Some(InboundEvent::Status {
        provider_message_id: id.to_string(),
        update,
        user,
        at,
    }))
}

/// `errors[0]` of a failed status: code, and the most specific text Meta gave.
fn failure(s: &Json<'_>) -> Result<StatusUpdate, WebhookError> {
    let errors = s.opt_items("errors")?;
    let Some(e) = errors.first() else {
        return Ok(StatusUpdate::Failed {
            code: "unknown".into(),
            message: "WhatsApp reported the message failed without an error object".into(),
        });
    };
    let code = e.opt_id("code")?.unwrap_or_else(|| "unknown".into());
    let title = e.opt_str("title")?.or(e.opt_str("message")?);
    let details = match e.get("error_data") {
        Some(d) => d.opt_str("details")?,
        None => None,
    };
    let message = match (title, details) {
        (Some(t), Some(d)) if t != d => format!("{t}: {d}"),
        (Some(t), _) => t.to_string(),
        (None, Some(d)) => d.to_string(),
        (None, None) => "no error details given".to_string(),
    };
    Ok(StatusUpdate::Failed { code, message })
}

fn message_event(
    m: &Json<'_>,
    contacts: &[Json<'_>],
) -> Result<Option<InboundEvent>, WebhookError> {
    let from = m.req_id("from")?;
    let id = m.req_str("id")?.to_string();
    let at = m.req("timestamp")?.unix_secs_ms()?;
    let kind = m.req_str("type")?;
    let (text, payload) = match kind {
        "text" => (Some(m.req("text")?.req_str("body")?.to_string()), None),
        "interactive" => {
            let i = m.req("interactive")?;
            let reply = match i.req_str("type")? {
                "button_reply" => Some(i.req("button_reply")?),
                "list_reply" => Some(i.req("list_reply")?),
                // Flows (nfm_reply) and newer kinds: still the user acting on our message.
                _ => None,
            };
            match reply {
                Some(r) => (
                    r.opt_str("title")?.map(str::to_string),
                    Some(r.req_id("id")?),
                ),
                None => (None, None),
            }
        }
        "button" => {
            let b = m.req("button")?;
            (
                b.opt_str("text")?.map(str::to_string),
                Some(b.req_str("payload")?.to_string()),
            )
        }
        "image" | "video" | "document" => {
            let caption = match m.get(kind) {
                Some(media) => media.opt_str("caption")?.map(str::to_string),
                None => None,
            };
            (caption, None)
        }
        "audio" | "sticker" | "location" | "contacts" | "order" => (None, None),
        // reaction, system, unsupported, request_welcome, …: not a reply.
        _ => return Ok(None),
    };
    let context_id = match m.get("context") {
        Some(c) => c.opt_str("id")?.map(str::to_string),
        None => None,
    };
    Ok(Some(InboundEvent::Message {
        name: contact_name(contacts, &from)?,
        user: from,
        id,
        text,
        payload,
        context_id,
        at,
    }))
}

/// The profile name of the contact who sent `from` (the first contact when
/// none lists a `wa_id`, as in single-message webhooks).
fn contact_name(contacts: &[Json<'_>], from: &str) -> Result<Option<String>, WebhookError> {
    let mut fallback = None;
    for c in contacts {
        let name = match c.get("profile") {
            Some(p) => p.opt_str("name")?,
            None => None,
        };
        match c.opt_id("wa_id")? {
            Some(wa) if wa == from => return Ok(name.map(str::to_string)),
            Some(_) => {}
            None => fallback = fallback.or(name),
        }
    }
    Ok(fallback.map(str::to_string))
}

/// The typed reader for status-only webhooks. It accepts a body only when
/// the general reader would read the same events from it: every value is
/// checked as `parse_json` checks it ([`Skip`]), a repeated key counts by its
/// last value (as in a JSON tree), `null` counts as absent, and whatever it
/// does not handle (messages, contacts, `failed` statuses with their error
/// objects, any field of an unexpected type) makes it give up (`None`), so
/// the general reader decides, with its error messages.
mod statuses {
    use super::super::webhook::{Skip, Str, secs_to_ms};
    use crate::model::{InboundEvent, Millis, StatusUpdate};
    use serde::Deserialize;
    use serde::de::{self, Deserializer, MapAccess, Visitor};
    use std::fmt;

    pub(super) fn parse(body: &[u8]) -> Option<Vec<InboundEvent>> {
        // `parse_json` refuses invalid UTF-8 anywhere; checked once up front.
        let text = std::str::from_utf8(body).ok()?;
        let root: Root = serde_json::from_str(text).ok()?;
        if root.object?.0 != "whatsapp_business_account" {
            return None;
        }
        let mut out = Vec::new();
        for entry in root.entry? {
            for change in entry.changes.into_iter().flatten() {
                if change.field.as_ref().map(|f| &*f.0) != Some("messages") {
                    continue;
                }
                for s in change.value?.statuses.into_iter().flatten() {
                    let update = match &*s.status.0 {
                        "sent" => StatusUpdate::Sent,
                        "delivered" => StatusUpdate::Delivered,
                        "read" => StatusUpdate::Read,
                        "failed" => return None,
                        _ => continue,
                    };
                    out.push(InboundEvent::Status {
                        provider_message_id: s.id.0.into_owned(),
                        update,
                        user: s.recipient_id,
                        at: s.at,
                    });
                }
            }
        }
        Some(out)
    }

    /// The typed reader gives up; the general reader takes over.
    fn give_up<E: de::Error>() -> E {
        E::custom("not a plain status webhook")
    }

    /// Reads an object's members with `member`, which answers whether it
    /// took the value; the rest are read as [`Skip`].
    fn members<'de, A: MapAccess<'de>>(
        mut map: A,
        mut member: impl FnMut(&str, &mut A) -> Result<bool, A::Error>,
    ) -> Result<(), A::Error> {
        while let Some(key) = map.next_key::<Str<'de>>()? {
            if !member(&key.0, &mut map)? {
                map.next_value::<Skip>()?;
            }
        }
        Ok(())
    }

    /// `impl Deserialize` for an object read by `visit_map`.
    macro_rules! object {
        ($name:ident, $what:literal) => {
            impl<'de> Deserialize<'de> for $name<'de> {
                fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                    struct V;
                    impl<'de> Visitor<'de> for V {
                        type Value = $name<'de>;
                        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                            f.write_str($what)
                        }
                        fn visit_map<A: MapAccess<'de>>(
                            self,
                            map: A,
                        ) -> Result<$name<'de>, A::Error> {
                            $name::read(map)
                        }
                    }
                    d.deserialize_map(V)
                }
            }
        };
    }

    struct Root<'a> {
        object: Option<Str<'a>>,
        entry: Option<Vec<Entry<'a>>>,
    }
    object!(Root, "a webhook object");

    impl<'a> Root<'a> {
        fn read<A: MapAccess<'a>>(map: A) -> Result<Root<'a>, A::Error> {
            let mut root = Root {
                object: None,
                entry: None,
            };
            members(map, |k, map| {
                match k {
                    "object" => root.object = map.next_value()?,
                    "entry" => root.entry = map.next_value()?,
                    _ => return Ok(false),
                }
                Ok(true)
            })?;
            Ok(root)
        }
    }

    struct Entry<'a> {
        changes: Option<Vec<Change<'a>>>,
    }
    object!(Entry, "an entry object");

    impl<'a> Entry<'a> {
        fn read<A: MapAccess<'a>>(map: A) -> Result<Entry<'a>, A::Error> {
            let mut entry = Entry { changes: None };
            members(map, |k, map| {
                if k != "changes" {
                    return Ok(false);
                }
                entry.changes = map.next_value()?;
                Ok(true)
            })?;
            Ok(entry)
        }
    }

    struct Change<'a> {
        field: Option<Str<'a>>,
        value: Option<Value<'a>>,
    }
    object!(Change, "a change object");

    impl<'a> Change<'a> {
        fn read<A: MapAccess<'a>>(map: A) -> Result<Change<'a>, A::Error> {
            let mut change = Change {
                field: None,
                value: None,
            };
            members(map, |k, map| {
                match k {
                    "field" => change.field = map.next_value()?,
                    "value" => change.value = map.next_value()?,
                    _ => return Ok(false),
                }
                Ok(true)
            })?;
            Ok(change)
        }
    }

    struct Value<'a> {
        statuses: Option<Vec<Status<'a>>>,
    }
    object!(Value, "a change value object");

    impl<'a> Value<'a> {
        fn read<A: MapAccess<'a>>(map: A) -> Result<Value<'a>, A::Error> {
            let mut value = Value { statuses: None };
            members(map, |k, map| {
                match k {
                    "statuses" => value.statuses = map.next_value()?,
                    // Messages (and the contacts that name their senders)
                    // are the general reader's.
                    "messages" | "contacts" => {
                        if map.next_value::<Option<Skip>>()?.is_some() {
                            return Err(give_up());
                        }
                    }
                    _ => return Ok(false),
                }
                Ok(true)
            })?;
            Ok(value)
        }
    }

    /// A status with everything the general reader requires of one.
    struct Status<'a> {
        id: Str<'a>,
        status: Str<'a>,
        at: Millis,
        recipient_id: Option<String>,
    }

    impl<'de> Deserialize<'de> for Status<'de> {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct V;
            impl<'de> Visitor<'de> for V {
                type Value = Status<'de>;
                fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                    f.write_str("a status object")
                }
                fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Status<'de>, A::Error> {
                    let (mut id, mut status, mut at, mut recipient_id) = (None, None, None, None);
                    members(map, |k, map| {
                        match k {
                            "id" => id = map.next_value::<Option<Str>>()?,
                            "status" => status = map.next_value::<Option<Str>>()?,
                            "timestamp" => at = map.next_value::<Option<UnixSecs>>()?,
                            "recipient_id" => recipient_id = map.next_value::<Option<Id>>()?,
                            _ => return Ok(false),
                        }
                        Ok(true)
                    })?;
                    let at = secs_to_ms(at.ok_or_else(give_up)?.0, "timestamp")
                        .map_err(|_| give_up::<A::Error>())?;
                    Ok(Status {
                        id: id.ok_or_else(give_up)?,
                        status: status.ok_or_else(give_up)?,
                        at,
                        recipient_id: recipient_id.map(|i| i.0),
                    })
                }
            }
            d.deserialize_map(V)
        }
    }

    /// Unix seconds as a JSON integer or a string of digits (`Json::unix_secs_ms`).
    struct UnixSecs(i64);

    impl<'de> Deserialize<'de> for UnixSecs {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct V;
            impl Visitor<'_> for V {
                type Value = UnixSecs;
                fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                    f.write_str("unix seconds")
                }
                fn visit_i64<E: de::Error>(self, n: i64) -> Result<UnixSecs, E> {
                    Ok(UnixSecs(n))
                }
                fn visit_u64<E: de::Error>(self, n: u64) -> Result<UnixSecs, E> {
                    i64::try_from(n).map(UnixSecs).map_err(|_| give_up())
                }
                fn visit_str<E: de::Error>(self, s: &str) -> Result<UnixSecs, E> {
                    s.trim().parse().map(UnixSecs).map_err(|_| give_up())
                }
            }
            d.deserialize_any(V)
        }
    }

    /// An id sent as a string or a JSON integer (`Json::id`).
    struct Id(String);

    impl<'de> Deserialize<'de> for Id {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct V;
            impl Visitor<'_> for V {
                type Value = Id;
                fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                    f.write_str("a string or an integer id")
                }
                fn visit_i64<E: de::Error>(self, n: i64) -> Result<Id, E> {
                    Ok(Id(n.to_string()))
                }
                fn visit_u64<E: de::Error>(self, n: u64) -> Result<Id, E> {
                    Ok(Id(n.to_string()))
                }
                fn visit_str<E: de::Error>(self, s: &str) -> Result<Id, E> {
                    Ok(Id(s.to_string()))
                }
            }
            d.deserialize_any(V)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::webhook::fixtures::*;
    use super::super::webhook::testing::*;
    use super::*;
    use crate::model::Platform;
    use proptest::prelude::*;

    const WA: Platform = Platform::Whatsapp;
    const SECRET: &str = "wa-app-secret";

    fn signed(body: &str) -> Req {
        Req::post(body.to_string())
            .header("X-Hub-Signature-256", &sign_meta(SECRET, body.as_bytes()))
    }

    fn ok(body: &str) -> Vec<InboundEvent> {
        events_of(run(WA, &config_with(WA, SECRET), &signed(body)))
    }

    #[test]
    fn the_documented_delivered_status() {
        // CHANNELS.md §1.5, verbatim shape (conversation + pricing included).
        let body = whatsapp_status(
            "wamid.HBgLMTY1MDM4Nzk0MzkVAgARGBI...",
            "delivered",
            1749416400,
        );
        assert!(
            body.contains("\"pricing\""),
            "fixture carries the full documented shape"
        );
        assert_eq!(
            ok(&body),
            vec![InboundEvent::Status {
                provider_message_id: "wamid.HBgLMTY1MDM4Nzk0MzkVAgARGBI...".into(),
                update: StatusUpdate::Delivered,
                user: Some("16505551234".into()),
                at: 1_749_416_400_000,
            }]
        );
    }

    #[test]
    fn sent_and_read_statuses() {
        for (s, u) in [("sent", StatusUpdate::Sent), ("read", StatusUpdate::Read)] {
            let ev = ok(&whatsapp_status_to(
                "447700900123",
                "wamid.A",
                s,
                1749416401,
            ));
            assert_eq!(
                ev,
                vec![InboundEvent::Status {
                    provider_message_id: "wamid.A".into(),
                    update: u,
                    user: Some("447700900123".into()),
                    at: 1_749_416_401_000,
                }]
            );
        }
    }

    #[test]
    fn failed_status_carries_code_title_and_details() {
        let body = whatsapp_failed(
            "wamid.F",
            "16505551234",
            131047,
            "Re-engagement message",
            "Message failed to send because more than 24 hours have passed since the customer last replied to this number.",
            1749416400,
        );
        assert_eq!(
            ok(&body),
            vec![InboundEvent::Status {
                provider_message_id: "wamid.F".into(),
                update: StatusUpdate::Failed {
                    code: "131047".into(),
                    message: "Re-engagement message: Message failed to send because more than 24 hours have passed since the customer last replied to this number.".into(),
                },
                user: Some("16505551234".into()),
                at: 1_749_416_400_000,
            }]
        );
    }

    #[test]
    fn failed_without_errors_is_still_a_failure() {
        let body = whatsapp_status("wamid.F", "failed", 1749416400);
        let ev = ok(&body);
        assert!(matches!(
            &ev[0],
            InboundEvent::Status { update: StatusUpdate::Failed { code, .. }, .. } if code == "unknown"
        ));
    }

    #[test]
    fn text_message_with_contact_name() {
        let body = whatsapp_text(
            "16505551234",
            "Sheena Nelson",
            "wamid.HBgLMTY1MDM4Nzk0MzkVAgASGBQzQTRBNjU5OUFFRTAzODEwMTQ0RgA=",
            "Does it come in another color?",
            1749416383,
        );
        assert_eq!(
            ok(&body),
            vec![InboundEvent::Message {
                user: "16505551234".into(),
                id: "wamid.HBgLMTY1MDM4Nzk0MzkVAgASGBQzQTRBNjU5OUFFRTAzODEwMTQ0RgA=".into(),
                name: Some("Sheena Nelson".into()),
                text: Some("Does it come in another color?".into()),
                payload: None,
                context_id: None,
                at: 1_749_416_383_000,
            }]
        );
    }

    #[test]
    fn reply_button_click() {
        let body = whatsapp_button_reply(
            "16505551234",
            "wamid.CLICK",
            "wamid.PUSHED",
            "resolved_yes",
            "Yes",
            1749416500,
        );
        assert_eq!(
            ok(&body),
            vec![InboundEvent::Message {
                user: "16505551234".into(),
                id: "wamid.CLICK".into(),
                name: Some("Sheena Nelson".into()),
                text: Some("Yes".into()),
                payload: Some("resolved_yes".into()),
                context_id: Some("wamid.PUSHED".into()),
                at: 1_749_416_500_000,
            }]
        );
    }

    #[test]
    fn list_reply_pick() {
        let body = whatsapp_list_reply(
            "16505551234",
            "wamid.LIST",
            "wamid.PUSHED",
            "row_2",
            "Blue",
            1749416500,
        );
        let ev = ok(&body);
        assert!(
            matches!(
                &ev[0],
                InboundEvent::Message { payload: Some(p), text: Some(t), context_id: Some(c), .. }
                    if p == "row_2" && t == "Blue" && c == "wamid.PUSHED"
            ),
            "{ev:?}"
        );
    }

    #[test]
    fn template_quick_reply_button() {
        let body = whatsapp_template_button(
            "16505551234",
            "wamid.QR",
            "wamid.TPL",
            "TRACK_12345",
            "Track",
            1749416500,
        );
        let ev = ok(&body);
        assert!(
            matches!(
                &ev[0],
                InboundEvent::Message { payload: Some(p), text: Some(t), context_id: Some(c), .. }
                    if p == "TRACK_12345" && t == "Track" && c == "wamid.TPL"
            ),
            "{ev:?}"
        );
    }

    #[test]
    fn reactions_and_other_fields_are_skipped() {
        let reaction = r#"{"object":"whatsapp_business_account","entry":[{"id":"1","changes":[{"field":"messages","value":{"messaging_product":"whatsapp","metadata":{"display_phone_number":"15550783881","phone_number_id":"106540352242922"},"contacts":[{"profile":{"name":"Sheena Nelson"},"wa_id":"16505551234"}],"messages":[{"from":"16505551234","id":"wamid.R","timestamp":"1749416500","type":"reaction","reaction":{"message_id":"wamid.PUSHED","emoji":"\ud83d\udc4d"}}]}}]}]}"#;
        assert_eq!(ok(reaction), vec![]);
        let template_update = r#"{"object":"whatsapp_business_account","entry":[{"id":"1","changes":[{"field":"message_template_status_update","value":{"event":"APPROVED","message_template_id":1}}]}]}"#;
        assert_eq!(ok(template_update), vec![]);
        let played = whatsapp_status("wamid.V", "played", 1749416400);
        assert_eq!(ok(&played), vec![]);
    }

    #[test]
    fn several_statuses_and_entries_in_one_post() {
        let a: serde_json::Value =
            serde_json::from_str(&whatsapp_status("wamid.1", "delivered", 1749416400)).unwrap();
        let b: serde_json::Value =
            serde_json::from_str(&whatsapp_status("wamid.2", "read", 1749416401)).unwrap();
        let both = serde_json::json!({
            "object": "whatsapp_business_account",
            "entry": [a["entry"][0].clone(), b["entry"][0].clone()],
        });
        let ev = ok(&both.to_string());
        assert_eq!(ev.len(), 2);
        assert_eq!(ev[1].kind(), "status_read");
    }

    #[test]
    fn malformed_and_incomplete_bodies_are_400() {
        let cases = [
            ("not json", "not valid JSON"),
            (
                r#"{"object":"page","entry":[]}"#,
                "whatsapp_business_account",
            ),
            (r#"{"object":"whatsapp_business_account"}"#, "`entry`"),
            (
                r#"{"object":"whatsapp_business_account","entry":[{"changes":[{"field":"messages","value":{"statuses":[{"status":"read","timestamp":"1"}]}}]}]}"#,
                "entry[0].changes[0].value.statuses[0].id",
            ),
            (
                r#"{"object":"whatsapp_business_account","entry":[{"changes":[{"field":"messages","value":{"statuses":[{"id":"w","status":"read","timestamp":"soon"}]}}]}]}"#,
                "unix seconds",
            ),
            (
                r#"{"object":"whatsapp_business_account","entry":[{"changes":[{"field":"messages","value":{"messages":[{"from":"1","id":"w","timestamp":"1","type":"text"}]}}]}]}"#,
                "messages[0].text",
            ),
        ];
        for (body, needle) in cases {
            match run(WA, &config_with(WA, SECRET), &signed(body)) {
                Err(WebhookError::BadRequest(m)) => assert!(m.contains(needle), "{body}: {m}"),
                other => panic!("{body}: {other:?}"),
            }
        }
    }

    #[test]
    fn garbage_is_401_unsigned_and_400_signed() {
        let cfg = config_with(WA, SECRET);
        let garbage = "\u{0}\u{1}garbage{";
        assert!(matches!(
            run(WA, &cfg, &Req::post(garbage)),
            Err(WebhookError::Unauthorized(_))
        ));
        assert!(is_bad_request(&run(WA, &cfg, &signed(garbage))));
    }

    /// The typed reader's answer, which must be the general reader's.
    fn typed(body: &str) -> Option<Vec<InboundEvent>> {
        let fast = statuses::parse(body.as_bytes());
        if let Some(events) = &fast {
            assert_eq!(
                parse_general(body.as_bytes()).as_ref(),
                Ok(events),
                "{body}"
            );
        }
        fast
    }

    #[test]
    fn status_webhooks_take_the_typed_reader() {
        let a: serde_json::Value =
            serde_json::from_str(&whatsapp_status("wamid.1", "delivered", 1749416400)).unwrap();
        let b: serde_json::Value =
            serde_json::from_str(&whatsapp_status("wamid.2", "read", 1749416401)).unwrap();
        let two = serde_json::json!({
            "object": "whatsapp_business_account",
            "entry": [a["entry"][0].clone(), b["entry"][0].clone()],
        })
        .to_string();
        for body in [
            whatsapp_status("wamid.HBgLMTY1MDM4Nzk0MzkVAgARGBI...", "delivered", 1749416400),
            whatsapp_status_to("447700900123", "wamid.A", "sent", 1749416401),
            whatsapp_status("wamid.V", "played", 1749416400),
            two,
            r#"{"object":"whatsapp_business_account","entry":[{"id":"1","changes":[{"field":"message_template_status_update","value":{"event":"APPROVED","message_template_id":1}}]}]}"#.into(),
        ] {
            assert!(typed(&body).is_some(), "{body}");
        }
    }

    #[test]
    fn the_typed_reader_leaves_the_rest_to_the_general_one() {
        let failed = whatsapp_failed(
            "wamid.F",
            "1",
            131047,
            "Re-engagement message",
            "x",
            1749416400,
        );
        let text = whatsapp_text("1", "N", "wamid.3", "hi", 1749416400);
        let click = whatsapp_button_reply("1", "wamid.4", "wamid.0", "id", "T", 1749416400);
        for body in [failed, text, click] {
            assert_eq!(typed(&body), None, "{body}");
            assert_eq!(ok(&body).len(), 1, "{body}");
        }
    }

    /// A status webhook with `status` spliced in as the status object's JSON.
    fn with_status(status: &str) -> String {
        format!(
            r#"{{"object":"whatsapp_business_account","entry":[{{"id":"1","changes":[{{"field":"messages","value":{{"messaging_product":"whatsapp","statuses":[{status}]}}}}]}}]}}"#
        )
    }

    #[test]
    fn the_typed_reader_reads_json_as_the_general_reader_does() {
        let status = |s: &str| InboundEvent::Status {
            provider_message_id: "wamid.A".into(),
            update: StatusUpdate::Delivered,
            user: Some(s.into()),
            at: 1_749_416_400_000,
        };
        let same = [
            // Escapes, a repeated key (the last counts), integer ids and times.
            (
                r#"{"id":"wamid.\u0041","status":"read","status":"delivered","timestamp":"1749416400","recipient_id":"1"}"#,
                vec![status("1")],
            ),
            (
                r#"{"id":"wamid.A","status":"delivered","timestamp":1749416400,"recipient_id":16505551234}"#,
                vec![status("16505551234")],
            ),
            (
                r#"{"id":"wamid.A","status":"delivered","timestamp":" 1749416400 ","recipient_id":"x","pricing":{"a":[1.5,-2,true,null,{"b":"\n"}]}}"#,
                vec![status("x")],
            ),
        ];
        for (s, events) in same {
            let body = with_status(s);
            assert_eq!(typed(&body), Some(events), "{body}");
        }
        let mut null_recipient = with_status(
            r#"{"id":"wamid.A","status":"delivered","timestamp":"1749416400","recipient_id":null}"#,
        );
        assert!(matches!(
            &typed(&null_recipient).unwrap()[..],
            [InboundEvent::Status { user: None, .. }]
        ));
        null_recipient = null_recipient.replace(r#""statuses":["#, r#""statuses":null,"x":["#);
        assert_eq!(typed(&null_recipient), Some(vec![]));
        // What the general reader refuses, the typed one never accepts, even
        // in fields it does not read.
        let refused = [
            r#"{"id":"wamid.A","status":"delivered","timestamp":"1749416400","pricing":{"x":1e400}}"#,
            r#"{"id":"wamid.A","status":"delivered","timestamp":"1749416400","pricing":{"x":"\ud800"}}"#,
            r#"{"id":"wamid.A","status":"delivered","timestamp":"soon"}"#,
            r#"{"id":"wamid.A","status":"delivered","timestamp":"99999999999999999"}"#,
            r#"{"id":"wamid.A","status":"delivered","timestamp":1.5}"#,
            r#"{"id":"wamid.A","status":"delivered","timestamp":"1","recipient_id":1.5}"#,
            r#"{"id":null,"status":"delivered","timestamp":"1"}"#,
            r#"{"id":"wamid.A","timestamp":"1"}"#,
            r#"{"id":"wamid.A","status":"played"}"#,
        ];
        for s in refused {
            let body = with_status(s);
            assert_eq!(statuses::parse(body.as_bytes()), None, "{body}");
            assert!(parse_general(body.as_bytes()).is_err(), "{body}");
        }
        let mut invalid_utf8 =
            with_status(r#"{"id":"wamid.A","status":"delivered","timestamp":"1","pricing":"@"}"#)
                .into_bytes();
        let at = invalid_utf8.iter().position(|b| *b == b'@').unwrap();
        invalid_utf8[at] = 0xff;
        assert_eq!(statuses::parse(&invalid_utf8), None);
        assert!(parse_general(&invalid_utf8).is_err());
        let deep = with_status(&format!(
            r#"{{"id":"wamid.A","status":"delivered","timestamp":"1","x":{}{}}}"#,
            "[".repeat(200),
            "]".repeat(200)
        ));
        assert_eq!(statuses::parse(deep.as_bytes()), None);
        assert!(parse_general(deep.as_bytes()).is_err());
    }

    proptest! {
        #![proptest_config(proptest_config())]

        #[test]
        fn arbitrary_bytes_never_panic(body in proptest::collection::vec(any::<u8>(), 0..512)) {
            let cfg = config(WA);
            let out = run(WA, &cfg, &Req::post(body));
            prop_assert!(is_clean(&out));
        }

        #[test]
        fn the_typed_reader_agrees_with_the_general_one(which in 0usize..3, choices in proptest::collection::vec(any::<u32>(), 1..12)) {
            let base = [
                whatsapp_status("wamid.1", "delivered", 1749416400),
                whatsapp_status_to("447700900123", "wamid.2", "read", 1749416401),
                with_status(r#"{"id":"wamid.3","status":"sent","timestamp":1749416400,"recipient_id":1}"#),
            ];
            let mut v: serde_json::Value = serde_json::from_str(&base[which]).unwrap();
            let mut it = choices.into_iter();
            mutate_json(&mut v, &mut it);
            let body = v.to_string();
            if let Some(events) = statuses::parse(body.as_bytes()) {
                prop_assert_eq!(parse_general(body.as_bytes()), Ok(events), "{}", body);
            }
        }

        #[test]
        fn the_typed_reader_takes_no_garbage(body in proptest::collection::vec(any::<u8>(), 0..512)) {
            if let Some(events) = statuses::parse(&body) {
                prop_assert_eq!(parse_general(&body), Ok(events));
            }
        }

        #[test]
        fn mutated_real_payloads_never_panic(which in 0usize..6, choices in proptest::collection::vec(any::<u32>(), 1..12)) {
            let base = [
                whatsapp_status("wamid.1", "delivered", 1749416400),
                whatsapp_failed("wamid.2", "1", 131026, "Message Undeliverable", "x", 1749416400),
                whatsapp_text("1", "N", "wamid.3", "hi", 1749416400),
                whatsapp_button_reply("1", "wamid.4", "wamid.0", "id", "T", 1749416400),
                whatsapp_list_reply("1", "wamid.5", "wamid.0", "id", "T", 1749416400),
                whatsapp_template_button("1", "wamid.6", "wamid.0", "P", "T", 1749416400),
            ];
            let mut v: serde_json::Value = serde_json::from_str(&base[which]).unwrap();
            let mut it = choices.into_iter();
            mutate_json(&mut v, &mut it);
            let body = v.to_string();
            let out = run(WA, &config_with(WA, SECRET), &signed(&body));
            prop_assert!(is_clean(&out), "{out:?}");
        }
    }
}
