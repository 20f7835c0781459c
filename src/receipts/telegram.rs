//! Telegram Bot API webhooks: one `Update` per POST, authenticated by the
//! `X-Telegram-Bot-Api-Secret-Token` header (the `secret_token` given to
//! `setWebhook`). Telegram has no delivery or read receipts.
//!
//! | update | becomes |
//! |---|---|
//! | `message` | [`InboundEvent::Message`]: `id = update_id`, `user = chat.id`, `text` (or media `caption`), `context_id = "<chat_id>:<reply_to_message.message_id>"` |
//! | `callback_query` (inline button) | [`InboundEvent::Message`]: `payload = data`, `context_id = "<chat_id>:<message_id>"` of the message carrying the button |
//! | `my_chat_member`, new status `kicked` (blocked) or `left` | [`InboundEvent::Unsubscribed`] |
//!
//! `user` is the chat id, the address the adapter sends to (equal to the
//! user id in private chats); provider ids are `"<chat_id>:<message_id>"`,
//! the adapter's format. Edits, channel posts, inline queries and the rest
//! are skipped. A callback query is answered in the webhook reply itself
//! (`answerCallbackQuery`), which stops the button's progress spinner
//! without another API call.
//! Sources: CHANNELS.md §4.4–4.5; Bot API `Update`, `CallbackQuery`,
//! `ChatMemberUpdated`.

use super::signature::{self, TELEGRAM_HEADER};
use super::webhook::{Json, events, expect_post, header, parse_json, secret};
use super::{WebhookError, WebhookOutcome, WebhookRequest};
use crate::config::ChannelConfig;
use crate::model::{InboundEvent, Millis};

pub fn handle(
    cfg: &ChannelConfig,
    req: &WebhookRequest<'_>,
) -> Result<WebhookOutcome, WebhookError> {
    expect_post(req)?;
    if let Some(token) = secret(cfg, cfg.secrets.secret_token.as_ref(), "secret_token")? {
        signature::verify_telegram(token, header(req, TELEGRAM_HEADER)?)?;
    }
    let parsed = parse(req.body, req.now)?;
    let mut out = events(parsed.events);
    if let (
        Some(id),
        WebhookOutcome::Events {
            reply, reply_type, ..
        },
    ) = (parsed.callback_query_id, &mut out)
    {
        *reply = serde_json::json!({ "method": "answerCallbackQuery", "callback_query_id": id })
            .to_string();
        *reply_type = "application/json";
    }
    Ok(out)
}

/// A parsed update: its events, and the callback query to acknowledge.
#[derive(Debug, Default, PartialEq)]
pub struct Parsed {
    pub events: Vec<InboundEvent>,
    pub callback_query_id: Option<String>,
}

/// Parses a (verified) update; `now` stamps callback queries, which carry no time.
pub fn parse(body: &[u8], now: Millis) -> Result<Parsed, WebhookError> {
    let doc = parse_json(body)?;
    let update = Json::root(&doc);
    let update_id = update.req("update_id")?.i64()?;
    let id = update_id.to_string();
    let mut out = Parsed::default();
    if let Some(m) = update.get("message") {
        out.events.push(message(&m, id)?);
    } else if let Some(q) = update.get("callback_query") {
        out.callback_query_id = Some(q.req_id("id")?);
        if let Some(ev) = callback(&q, id, now)? {
            out.events.push(ev);
        }
    } else if let Some(c) = update.get("my_chat_member") {
        let chat_id = c.req("chat")?.req_id("id")?;
        let at = c.req("date")?.unix_secs_ms()?;
        let status = c.req("new_chat_member")?.req_str("status")?;
        if matches!(status, "kicked" | "left") {
            out.events
                .push(InboundEvent::Unsubscribed { user: chat_id, at });
        }
    }
    // edited_message, channel_post, inline_query, poll, …: nothing we count.
    Ok(out)
}

fn message(m: &Json<'_>, id: String) -> Result<InboundEvent, WebhookError> {
    let chat_id = m.req("chat")?.req_id("id")?;
    let at = m.req("date")?.unix_secs_ms()?;
    let text = match m.opt_str("text")? {
        Some(t) => Some(t),
        None => m.opt_str("caption")?,
    };
    let context_id = match m.get("reply_to_message") {
        Some(r) => Some(format!("{chat_id}:{}", r.req_id("message_id")?)),
        None => None,
    };
    let name = match m.get("from") {
        Some(f) => display_name(&f)?,
        None => None,
    };
    Ok(InboundEvent::Message {
        user: chat_id,
        id,
        name,
        text: text.map(str::to_string),
        payload: None,
        context_id,
        at,
    })
}

fn callback(q: &Json<'_>, id: String, now: Millis) -> Result<Option<InboundEvent>, WebhookError> {
    // Game buttons send `game_short_name` instead of `data`: not one of ours.
    let Some(data) = q.opt_str("data")? else {
        return Ok(None);
    };
    let from = q.req("from")?;
    // Inline-mode buttons carry `inline_message_id` and no `message`.
    let (user, context_id) = match q.get("message") {
        Some(m) => {
            let chat_id = m.req("chat")?.req_id("id")?;
            let msg_id = m.req_id("message_id")?;
            (chat_id.clone(), Some(format!("{chat_id}:{msg_id}")))
        }
        None => (from.req_id("id")?, None),
    };
    Ok(Some(InboundEvent::Message {
        user,
        id,
        name: display_name(&from)?,
        text: None,
        payload: Some(data.to_string()),
        context_id,
        at: now,
    }))
}

/// "First Last", or the username when no name is set.
fn display_name(user: &Json<'_>) -> Result<Option<String>, WebhookError> {
    let first = user.opt_str("first_name")?;
    let last = user.opt_str("last_name")?;
    Ok(match (first, last) {
        (Some(f), Some(l)) => Some(format!("{f} {l}")),
        (Some(f), None) => Some(f.to_string()),
        (None, Some(l)) => Some(l.to_string()),
        (None, None) => user.opt_str("username")?.map(str::to_string),
    })
}

#[cfg(test)]
mod tests {
    use super::super::webhook::fixtures::*;
    use super::super::webhook::testing::*;
    use super::*;
    use crate::model::Platform;
    use proptest::prelude::*;

    const TG: Platform = Platform::Telegram;
    const SECRET: &str = "tg_Secret-token_123";

    fn signed(body: &str) -> Req {
        Req::post(body.to_string()).header("X-Telegram-Bot-Api-Secret-Token", SECRET)
    }

    fn ok(body: &str) -> Vec<InboundEvent> {
        events_of(run(TG, &config_with(TG, SECRET), &signed(body)))
    }

    #[test]
    fn user_message() {
        let body = telegram_message(10001, 123456789, 43, "hi", 1718000100);
        assert_eq!(
            ok(&body),
            vec![InboundEvent::Message {
                user: "123456789".into(),
                id: "10001".into(),
                name: Some("John".into()),
                text: Some("hi".into()),
                payload: None,
                context_id: None,
                at: 1_718_000_100_000,
            }]
        );
    }

    #[test]
    fn reply_to_our_message_carries_its_provider_id() {
        let mut v: serde_json::Value = serde_json::from_str(&telegram_message(
            10003,
            123456789,
            44,
            "yes please",
            1718000200,
        ))
        .unwrap();
        v["message"]["reply_to_message"] = serde_json::json!({
            "message_id": 42, "from": {"id": 987654321, "is_bot": true, "first_name": "Shop"},
            "chat": {"id": 123456789, "type": "private", "first_name": "John"}, "date": 1718000000, "text": "30% off"
        });
        let ev = ok(&v.to_string());
        assert!(
            matches!(&ev[0], InboundEvent::Message { context_id: Some(c), .. } if c == "123456789:42"),
            "{ev:?}"
        );
    }

    #[test]
    fn callback_query_click_is_answered_in_the_reply() {
        let body = telegram_callback_update(10002, 123456789, 42, "resolved:yes");
        let out = run(TG, &config_with(TG, SECRET), &signed(&body));
        match out {
            Ok(WebhookOutcome::Events {
                events,
                reply,
                reply_type,
            }) => {
                assert_eq!(
                    events,
                    vec![InboundEvent::Message {
                        user: "123456789".into(),
                        id: "10002".into(),
                        name: Some("John".into()),
                        text: None,
                        payload: Some("resolved:yes".into()),
                        context_id: Some("123456789:42".into()),
                        at: NOW,
                    }]
                );
                assert_eq!(reply_type, "application/json");
                let r: serde_json::Value = serde_json::from_str(&reply).unwrap();
                assert_eq!(r["method"], "answerCallbackQuery");
                assert_eq!(r["callback_query_id"], "4382bfdwdsb323b2d9");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn fixture_helper_numbers_updates() {
        let a = telegram_callback(1, 2, "x");
        let b = telegram_callback(1, 2, "x");
        assert_ne!(a, b, "each callback gets its own update_id");
    }

    #[test]
    fn blocked_bot_unsubscribes_and_unblock_is_ignored() {
        assert_eq!(
            ok(&telegram_blocked(10004, 123456789, 1737277000)),
            vec![InboundEvent::Unsubscribed {
                user: "123456789".into(),
                at: 1_737_277_000_000,
            }]
        );
        let unblock = telegram_blocked(10005, 123456789, 1737277338)
            .replace("\"status\":\"kicked\"", "\"status\":\"member\"");
        assert_eq!(ok(&unblock), vec![]);
    }

    #[test]
    fn other_updates_are_skipped() {
        let edited = r#"{"update_id":10006,"edited_message":{"message_id":43,"chat":{"id":1,"type":"private"},"date":1,"edit_date":2,"text":"x"}}"#;
        assert_eq!(ok(edited), vec![]);
    }

    #[test]
    fn secret_token_valid_wrong_missing() {
        let body = telegram_message(1, 2, 3, "hi", 1718000100);
        let cfg = config_with(TG, SECRET);
        assert!(matches!(
            run(
                TG,
                &cfg,
                &Req::post(body.clone()).header("X-Telegram-Bot-Api-Secret-Token", "nope")
            ),
            Err(WebhookError::Unauthorized(_))
        ));
        assert!(matches!(
            run(TG, &cfg, &Req::post(body.clone())),
            Err(WebhookError::Unauthorized(_))
        ));
        assert_eq!(ok(&body).len(), 1);
        assert_eq!(
            run(TG, &cfg, &Req::get("")),
            Err(WebhookError::MethodNotAllowed)
        );
    }

    #[test]
    fn garbage_and_incomplete_updates() {
        let cfg = config_with(TG, SECRET);
        assert!(matches!(
            run(TG, &cfg, &Req::post("garbage")),
            Err(WebhookError::Unauthorized(_))
        ));
        for (body, needle) in [
            ("garbage", "not valid JSON"),
            (r#"{"message":{}}"#, "update_id"),
            (
                r#"{"update_id":1,"message":{"message_id":1,"date":1}}"#,
                "message.chat",
            ),
            (
                r#"{"update_id":1,"callback_query":{"data":"x","from":{"id":1}}}"#,
                "callback_query.id",
            ),
            (
                r#"{"update_id":1,"my_chat_member":{"chat":{"id":1},"date":1}}"#,
                "new_chat_member",
            ),
        ] {
            match run(TG, &cfg, &signed(body)) {
                Err(WebhookError::BadRequest(m)) => assert!(m.contains(needle), "{body}: {m}"),
                other => panic!("{body}: {other:?}"),
            }
        }
    }

    proptest! {
        #![proptest_config(proptest_config())]

        #[test]
        fn arbitrary_bytes_never_panic(body in proptest::collection::vec(any::<u8>(), 0..512)) {
            let out = run(TG, &config(TG), &Req::post(body));
            prop_assert!(is_clean(&out));
        }

        #[test]
        fn mutated_real_payloads_never_panic(which in 0usize..3, choices in proptest::collection::vec(any::<u32>(), 1..12)) {
            let base = [
                telegram_message(1, 123456789, 43, "hi", 1718000100),
                telegram_callback_update(2, 123456789, 42, "resolved:yes"),
                telegram_blocked(3, 123456789, 1737277000),
            ];
            let mut v: serde_json::Value = serde_json::from_str(&base[which]).unwrap();
            mutate_json(&mut v, &mut choices.into_iter());
            let out = run(TG, &config_with(TG, SECRET), &signed(&v.to_string()));
            prop_assert!(is_clean(&out), "{out:?}");
        }
    }
}
