//! Inbound webhooks of `custom` and `webchat` channels: pushd's own format,
//! the contract a custom platform implements to report receipts and replies.
//!
//! # Transport and signature ([Standard Webhooks](https://www.standardwebhooks.com/))
//!
//! `POST /webhooks/{channel}` with `Content-Type: application/json` and:
//!
//! | header | value |
//! |---|---|
//! | `webhook-id` | a unique id for this delivery (keep it when retrying) |
//! | `webhook-timestamp` | unix seconds when it was signed; refused if more than 5 minutes from pushd's clock |
//! | `webhook-signature` | `v1,<base64 HMAC-SHA256>`; several may be given, space-separated, while rotating secrets |
//!
//! The signed content is `"{webhook-id}.{webhook-timestamp}.{raw body}"`; the
//! key is the channel's `webhook_secret`: base64-decoded when it starts with
//! `whsec_` (`whsec_<base64>`, as Standard Webhooks libraries generate it),
//! otherwise its UTF-8 bytes. Missing, wrong or stale signatures get 401.
//!
//! # Body
//!
//! One event object, or `{"events": [ … ]}` for a batch. Timestamps are unix
//! seconds (integer or fractional); when absent, the time of receipt is used.
//!
//! ```json
//! {"type": "status", "message_id": "<id returned by your send API>",
//!  "status": "sent" | "delivered" | "read" | "failed",
//!  "timestamp": 1718000000,
//!  "user": "<optional: your user id>",
//!  "error": {"code": "<your error code>", "message": "<human text>"}}   // with "failed"
//!
//! {"type": "message", "id": "<unique id of this inbound message>",
//!  "user": "<your user id, as in the member's channel_user_id>",
//!  "name": "<optional display name>", "text": "<optional>",
//!  "payload": "<optional: button payload when a button was clicked>",
//!  "context_id": "<optional: message_id of the push this replies to>",
//!  "timestamp": 1718000100}
//!
//! {"type": "unsubscribed", "user": "<your user id>", "timestamp": 1718000200}
//! ```
//!
//! Required: `type`; `message_id` and `status` for a status; `id` and `user`
//! for a message; `user` for unsubscribed. A failed status without `error`
//! gets code `unknown`. Other `type`s are accepted and ignored (so a
//! platform may send more than pushd reads); anything else malformed gets 400
//! with the reason, and no event of that body is applied. pushd answers 200
//! with an empty body.

use serde_json::Value;

use super::signature::{
    self, STANDARD_ID_HEADER, STANDARD_SIGNATURE_HEADER, STANDARD_TIMESTAMP_HEADER,
};
use super::webhook::{Json, bad, events, expect_post, header, parse_json, secret};
use super::{WebhookError, WebhookOutcome, WebhookRequest};
use crate::config::ChannelConfig;
use crate::model::{InboundEvent, Millis, StatusUpdate};

pub fn handle(
    cfg: &ChannelConfig,
    req: &WebhookRequest<'_>,
) -> Result<WebhookOutcome, WebhookError> {
    expect_post(req)?;
    if let Some(s) = secret(cfg, cfg.secrets.webhook_secret.as_ref(), "webhook_secret")? {
        let key = signature::standard_webhook_key(s)?;
        signature::verify_standard_webhook(
            &key,
            header(req, STANDARD_ID_HEADER)?,
            header(req, STANDARD_TIMESTAMP_HEADER)?,
            header(req, STANDARD_SIGNATURE_HEADER)?,
            req.body,
            req.now,
        )?;
    }
    parse(req.body, req.now).map(events)
}

/// Parses a (verified) body; `now` stamps events without a timestamp.
pub fn parse(body: &[u8], now: Millis) -> Result<Vec<InboundEvent>, WebhookError> {
    let doc = parse_json(body)?;
    let root = Json::root(&doc);
    if !doc.is_object() {
        return Err(bad(
            "the body must be an event object or {\"events\": [...]}",
        ));
    }
    let items = match root.get("events") {
        Some(list) if root.get("type").is_none() => list.items()?,
        _ => vec![root],
    };
    let mut out = Vec::with_capacity(items.len());
    for item in items {
        if let Some(ev) = event(&item, now)? {
            out.push(ev);
        }
    }
    Ok(out)
}

fn event(e: &Json<'_>, now: Millis) -> Result<Option<InboundEvent>, WebhookError> {
    let at = match e.get("timestamp") {
        Some(t) => unix_secs(&t)?,
        None => now,
    };
    Ok(Some(match e.req_str("type")? {
        "status" => {
            let update = match e.req_str("status")? {
                "sent" => StatusUpdate::Sent,
                "delivered" => StatusUpdate::Delivered,
                "read" => StatusUpdate::Read,
                "failed" => {
                    let (code, message) = match e.get("error") {
                        Some(err) => (
                            err.opt_id("code")?.unwrap_or_else(|| "unknown".into()),
                            err.opt_str("message")?.unwrap_or("").to_string(),
                        ),
                        None => ("unknown".into(), String::new()),
                    };
                    let message = if message.is_empty() {
                        "the platform reported a failure without details".to_string()
                    } else {
                        message
                    };
                    StatusUpdate::Failed { code, message }
                }
                other => {
                    return Err(bad(format!(
                        "`{}.status` is {other:?}; expected sent, delivered, read or failed",
                        e.path()
                    )));
                }
            };
            InboundEvent::Status {
                provider_message_id: e.req_id("message_id")?,
                update,
                user: e.opt_id("user")?,
                at,
            }
        }
        "message" => InboundEvent::Message {
            user: e.req_id("user")?,
            id: e.req_id("id")?,
            name: e.opt_str("name")?.map(str::to_string),
            text: e.opt_str("text")?.map(str::to_string),
            payload: e.opt_str("payload")?.map(str::to_string),
            context_id: e.opt_id("context_id")?,
            at,
        },
        "unsubscribed" => InboundEvent::Unsubscribed {
            user: e.req_id("user")?,
            at,
        },
        _ => return Ok(None),
    }))
}

/// Unix seconds, integer or fractional, in ms.
fn unix_secs(t: &Json<'_>) -> Result<Millis, WebhookError> {
    let err = || bad(format!("`{}` must be unix seconds", t.path()));
    match t.value() {
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                super::webhook::secs_to_ms(i, t.path())
            } else {
                let f = n.as_f64().ok_or_else(err)?;
                let ms = (f * 1000.0).round();
                if ms.is_finite() && ms.abs() < 9.0e15 {
                    Ok(ms as Millis)
                } else {
                    Err(err())
                }
            }
        }
        _ => Err(err()),
    }
}

#[cfg(test)]
mod tests {
    use super::super::webhook::fixtures::*;
    use super::super::webhook::testing::*;
    use super::*;
    use crate::model::Platform;
    use proptest::prelude::*;

    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

    fn signed(body: &str) -> Req {
        Req::post(body.to_string()).headers(&standard_webhook_headers(
            SECRET,
            "msg_1",
            NOW / 1000,
            body.as_bytes(),
        ))
    }

    fn ok(kind: Platform, body: &str) -> Vec<InboundEvent> {
        events_of(run(kind, &config_with(kind, SECRET), &signed(body)))
    }

    #[test]
    fn every_event_kind() {
        for kind in [Platform::Custom, Platform::Webchat] {
            assert_eq!(
                ok(kind, &custom_status("out-1", "delivered", 1718000000)),
                vec![InboundEvent::Status {
                    provider_message_id: "out-1".into(),
                    update: StatusUpdate::Delivered,
                    user: None,
                    at: 1_718_000_000_000,
                }]
            );
            assert_eq!(
                ok(
                    kind,
                    &custom_failed("out-2", "blocked", "user blocked the bot", 1718000001)
                ),
                vec![InboundEvent::Status {
                    provider_message_id: "out-2".into(),
                    update: StatusUpdate::Failed {
                        code: "blocked".into(),
                        message: "user blocked the bot".into()
                    },
                    user: None,
                    at: 1_718_000_001_000,
                }]
            );
            assert_eq!(
                ok(
                    kind,
                    &custom_message(
                        "in-1",
                        "user-7",
                        Some("Yes"),
                        Some("YES"),
                        Some("out-1"),
                        1718000100
                    )
                ),
                vec![InboundEvent::Message {
                    user: "user-7".into(),
                    id: "in-1".into(),
                    name: None,
                    text: Some("Yes".into()),
                    payload: Some("YES".into()),
                    context_id: Some("out-1".into()),
                    at: 1_718_000_100_000,
                }]
            );
            assert_eq!(
                ok(kind, &custom_unsubscribed("user-7", 1718000200)),
                vec![InboundEvent::Unsubscribed {
                    user: "user-7".into(),
                    at: 1_718_000_200_000
                }]
            );
        }
    }

    #[test]
    fn batches_defaults_and_unknown_types() {
        let body = custom_batch(&[
            custom_status("a", "sent", 1718000000),
            custom_status("a", "read", 1718000005),
            r#"{"type":"typing","user":"u"}"#.to_string(),
            r#"{"type":"message","id":"m","user":"u","name":"Ada"}"#.to_string(),
        ]);
        let ev = ok(Platform::Custom, &body);
        assert_eq!(ev.len(), 3);
        assert_eq!(ev[1].kind(), "status_read");
        assert!(
            matches!(&ev[2], InboundEvent::Message { at, text: None, name: Some(n), .. } if *at == NOW && n == "Ada")
        );
        let failed =
            r#"{"type":"status","message_id":"a","status":"failed","timestamp":1718000000.5}"#;
        assert!(matches!(
            &ok(Platform::Custom, failed)[0],
            InboundEvent::Status { update: StatusUpdate::Failed { code, .. }, at, .. } if code == "unknown" && *at == 1_718_000_000_500
        ));
    }

    #[test]
    fn missing_or_wrong_fields_are_400() {
        for (body, needle) in [
            ("[1]", "event object"),
            ("nope", "not valid JSON"),
            (r#"{"message_id":"a"}"#, "`type`"),
            (r#"{"type":"status","status":"read"}"#, "`message_id`"),
            (
                r#"{"type":"status","message_id":"a","status":"seen"}"#,
                "\"seen\"",
            ),
            (r#"{"type":"message","user":"u"}"#, "`id`"),
            (r#"{"type":"message","id":"m"}"#, "`user`"),
            (r#"{"type":"unsubscribed"}"#, "`user`"),
            (
                r#"{"type":"message","id":"m","user":"u","timestamp":"today"}"#,
                "unix seconds",
            ),
            (
                r#"{"type":"message","id":"m","user":"u","timestamp":1e300}"#,
                "unix seconds",
            ),
            (r#"{"events":[{"type":"status"}]}"#, "events[0].status"),
            (r#"{"events":{}}"#, "must be an array"),
        ] {
            match run(
                Platform::Custom,
                &config_with(Platform::Custom, SECRET),
                &signed(body),
            ) {
                Err(WebhookError::BadRequest(m)) => assert!(m.contains(needle), "{body}: {m}"),
                other => panic!("{body}: {other:?}"),
            }
        }
    }

    #[test]
    fn signatures_valid_wrong_missing_stale_rotated() {
        let body = custom_status("a", "read", 1718000000);
        let cfg = config_with(Platform::Custom, SECRET);
        let ts = NOW / 1000;
        assert_eq!(ok(Platform::Custom, &body).len(), 1);
        let wrong = Req::post(body.clone()).headers(&standard_webhook_headers(
            "whsec_c2VjcmV0",
            "msg_1",
            ts,
            body.as_bytes(),
        ));
        assert!(matches!(
            run(Platform::Custom, &cfg, &wrong),
            Err(WebhookError::Unauthorized(_))
        ));
        assert!(matches!(
            run(Platform::Custom, &cfg, &Req::post(body.clone())),
            Err(WebhookError::Unauthorized(_))
        ));
        let stale = Req::post(body.clone()).headers(&standard_webhook_headers(
            SECRET,
            "msg_1",
            ts - 301,
            body.as_bytes(),
        ));
        assert!(
            matches!(run(Platform::Custom, &cfg, &stale), Err(WebhookError::Unauthorized(m)) if m.contains("webhook-timestamp"))
        );
        // The same signed request, arriving more than five minutes later.
        let late = signed(&body).now(NOW + 301_000);
        assert!(matches!(
            run(Platform::Custom, &cfg, &late),
            Err(WebhookError::Unauthorized(_))
        ));
        // Rotation: the old secret's signature first, ours second.
        let mut headers = standard_webhook_headers(SECRET, "msg_1", ts, body.as_bytes());
        let old = standard_webhook_headers("whsec_c2VjcmV0", "msg_1", ts, body.as_bytes());
        let old_sig = old
            .iter()
            .find(|(k, _)| *k == "webhook-signature")
            .unwrap()
            .1
            .clone();
        for (k, v) in headers.iter_mut() {
            if *k == "webhook-signature" {
                *v = format!("{old_sig} {v}");
            }
        }
        assert_eq!(
            events_of(run(
                Platform::Custom,
                &cfg,
                &Req::post(body.clone()).headers(&headers)
            ))
            .len(),
            1
        );
        // A raw (non-whsec_) secret is used as bytes.
        let raw = config_with(Platform::Webchat, "plain secret");
        let req = Req::post(body.clone()).headers(&standard_webhook_headers(
            "plain secret",
            "msg_2",
            ts,
            body.as_bytes(),
        ));
        assert_eq!(events_of(run(Platform::Webchat, &raw, &req)).len(), 1);
    }

    #[test]
    fn garbage_is_401_unsigned_and_400_signed() {
        let cfg = config_with(Platform::Custom, SECRET);
        assert!(matches!(
            run(Platform::Custom, &cfg, &Req::post("\u{0}garbage")),
            Err(WebhookError::Unauthorized(_))
        ));
        assert!(is_bad_request(&run(
            Platform::Custom,
            &cfg,
            &signed("\u{0}garbage")
        )));
    }

    proptest! {
        #![proptest_config(proptest_config())]

        #[test]
        fn arbitrary_bytes_never_panic(body in proptest::collection::vec(any::<u8>(), 0..512)) {
            let out = run(Platform::Custom, &config(Platform::Custom), &Req::post(body));
            prop_assert!(is_clean(&out));
        }

        #[test]
        fn mutated_real_payloads_never_panic(which in 0usize..5, choices in proptest::collection::vec(any::<u32>(), 1..12)) {
            let base = [
                custom_status("a", "delivered", 1718000000),
                custom_failed("a", "x", "y", 1718000000),
                custom_message("m", "u", Some("t"), Some("p"), Some("c"), 1718000000),
                custom_unsubscribed("u", 1718000000),
                custom_batch(&[custom_status("a", "read", 1), custom_unsubscribed("u", 2)]),
            ];
            let mut v: serde_json::Value = serde_json::from_str(&base[which]).unwrap();
            mutate_json(&mut v, &mut choices.into_iter());
            let out = run(Platform::Webchat, &config_with(Platform::Webchat, SECRET), &signed(&v.to_string()));
            prop_assert!(is_clean(&out), "{out:?}");
        }
    }
}
