//! Messenger (`object = page`) and Instagram (`object = instagram`) webhooks:
//! `entry[].messaging[]` events, one per user action.
//!
//! | event | becomes |
//! |---|---|
//! | `delivery{mids?, watermark}` (Messenger) | [`InboundEvent::Watermark`] `read: false` |
//! | `read{watermark}` (Messenger `message_reads`) | [`InboundEvent::Watermark`] `read: true` |
//! | `read{mid}` (Instagram `messaging_seen`) | [`InboundEvent::Status`] `Read` for that mid (and a watermark too if one is sent) |
//! | `message{mid, text?, quick_reply?.payload, reply_to?.mid}` | [`InboundEvent::Message`]; echoes (`is_echo`) and deletions are skipped |
//! | `postback{mid?, title, payload}` | [`InboundEvent::Message`] with `payload`, `text = title` |
//!
//! Reactions, referrals, opt-ins, handovers and `standby` are skipped.
//! Timestamps are ms (a seconds value, as in one documented example, is
//! scaled). Sources: CHANNELS.md §2.5 and §3; the Instagram `read{mid}` shape
//! is confirmed only by secondary sources (client libraries).

use super::meta::{self, MetaRequest, meta_ms};
use super::webhook::{Json, bad, events, parse_json};
use super::{WebhookError, WebhookOutcome, WebhookRequest};
use crate::config::ChannelConfig;
use crate::model::{InboundEvent, Millis, Platform, StatusUpdate};

pub fn handle(
    platform: Platform,
    cfg: &ChannelConfig,
    req: &WebhookRequest<'_>,
) -> Result<WebhookOutcome, WebhookError> {
    match meta::verify(cfg, req)? {
        MetaRequest::Handshake(out) => Ok(out),
        MetaRequest::Payload => parse(platform, req.body, req.now).map(events),
    }
}

/// Parses a (verified) webhook body for a Messenger or Instagram channel;
/// `now` stamps events that carry no time of their own.
pub fn parse(
    platform: Platform,
    body: &[u8],
    now: Millis,
) -> Result<Vec<InboundEvent>, WebhookError> {
    let expected = match platform {
        Platform::Instagram => "instagram",
        _ => "page",
    };
    let doc = parse_json(body)?;
    let root = Json::root(&doc);
    let object = root.req_str("object")?;
    if object != expected {
        return Err(bad(format!(
            "`object` is {object:?}, expected {expected:?} for a {platform} channel: is this webhook pointed at the right channel?"
        )));
    }
    let mut out = Vec::new();
    for entry in root.req("entry")?.items()? {
        let entry_time = match entry.get("time") {
            Some(t) => meta_ms(t.i64()?),
            None => now,
        };
        for ev in entry.opt_items("messaging")? {
            messaging_event(&ev, entry_time, &mut out)?;
        }
    }
    Ok(out)
}

fn messaging_event(
    ev: &Json<'_>,
    entry_time: Millis,
    out: &mut Vec<InboundEvent>,
) -> Result<(), WebhookError> {
    let at = match ev.get("timestamp") {
        Some(t) => meta_ms(t.i64()?),
        None => entry_time,
    };
    if let Some(m) = ev.get("message") {
        // Our own sends come back as echoes; deletions and edits are not replies.
        if m.bool_or_false("is_echo") || m.bool_or_false("is_deleted") || m.bool_or_false("is_self")
        {
            return Ok(());
        }
        let user = sender(ev)?;
        let payload = match m.get("quick_reply") {
            Some(q) => Some(q.req_str("payload")?.to_string()),
            None => None,
        };
        let context_id = match m.get("reply_to") {
            Some(r) => r.opt_str("mid")?.map(str::to_string),
            None => None,
        };
        out.push(InboundEvent::Message {
            user,
            id: m.req_str("mid")?.to_string(),
            name: None,
            text: m.opt_str("text")?.map(str::to_string),
            payload,
            context_id,
            at,
        });
    } else if let Some(p) = ev.get("postback") {
        let user = sender(ev)?;
        let title = p.opt_str("title")?;
        let payload = p
            .opt_str("payload")?
            .or(title)
            .ok_or_else(|| bad(format!("`{}` has neither `payload` nor `title`", p.path())))?;
        // `mid` needs API v11+; older subscriptions get none.
        let id = match p.opt_str("mid")? {
            Some(mid) => mid.to_string(),
            None => format!("postback:{user}:{at}"),
        };
        out.push(InboundEvent::Message {
            user,
            id,
            name: None,
            text: title.map(str::to_string),
            payload: Some(payload.to_string()),
            context_id: None,
            at,
        });
    } else if let Some(d) = ev.get("delivery") {
        let user = sender(ev)?;
        let watermark = meta_ms(d.req("watermark")?.i64()?);
        let mids = d
            .opt_items("mids")?
            .iter()
            .map(|m| m.str().map(str::to_string))
            .collect::<Result<Vec<_>, _>>()?;
        out.push(InboundEvent::Watermark {
            user,
            read: false,
            watermark,
            mids,
            at: if ev.get("timestamp").is_some() {
                at
            } else {
                watermark
            },
        });
    } else if let Some(r) = ev.get("read") {
        let user = sender(ev)?;
        let mid = r.opt_str("mid")?;
        let watermark = r.get("watermark").map(|w| w.i64()).transpose()?;
        if mid.is_none() && watermark.is_none() {
            return Err(bad(format!(
                "`{}` has neither `mid` nor `watermark`",
                r.path()
            )));
        }
        if let Some(mid) = mid {
            out.push(InboundEvent::Status {
                provider_message_id: mid.to_string(),
                update: StatusUpdate::Read,
                user: Some(user.clone()),
                at,
            });
        }
        if let Some(w) = watermark {
            out.push(InboundEvent::Watermark {
                user,
                read: true,
                watermark: meta_ms(w),
                mids: Vec::new(),
                at,
            });
        }
    }
    // reaction, referral, optin, pass_thread_control, …: nothing we count.
    Ok(())
}

fn sender(ev: &Json<'_>) -> Result<String, WebhookError> {
    ev.req("sender")?.req_id("id")
}

#[cfg(test)]
mod tests {
    use super::super::webhook::fixtures::*;
    use super::super::webhook::testing::*;
    use super::*;
    use proptest::prelude::*;

    const FB: Platform = Platform::Messenger;
    const IG: Platform = Platform::Instagram;
    const SECRET: &str = "fb-app-secret";

    fn ok(kind: Platform, body: &str) -> Vec<InboundEvent> {
        let req = Req::post(body.to_string())
            .header("X-Hub-Signature-256", &sign_meta(SECRET, body.as_bytes()));
        events_of(run(kind, &config_with(kind, SECRET), &req))
    }

    #[test]
    fn delivery_watermark_with_mids() {
        let body = messenger_delivery(
            "1254477777772919",
            &["mid.1458668856218:ed81099e15d3f4f233"],
            1458668856253,
        );
        assert_eq!(
            ok(FB, &body),
            vec![InboundEvent::Watermark {
                user: "1254477777772919".into(),
                read: false,
                watermark: 1458668856253,
                mids: vec!["mid.1458668856218:ed81099e15d3f4f233".into()],
                at: 1458668856253,
            }]
        );
        // `mids` may be absent (older clients).
        let ev = ok(
            FB,
            &messenger_delivery("1254477777772919", &[], 1458668856253),
        );
        assert!(
            matches!(&ev[0], InboundEvent::Watermark { mids, read: false, .. } if mids.is_empty())
        );
    }

    #[test]
    fn read_watermark() {
        assert_eq!(
            ok(FB, &messenger_read("1254477777772919", 1458668856253)),
            vec![InboundEvent::Watermark {
                user: "1254477777772919".into(),
                read: true,
                watermark: 1458668856253,
                mids: vec![],
                at: 1458668856463,
            }]
        );
    }

    #[test]
    fn text_and_quick_reply() {
        let ev = ok(
            FB,
            &messenger_text(
                "1254477777772919",
                "mid.1457764197618:41d102a3e1ae206a38",
                "hello, world!",
                1458692752478,
            ),
        );
        assert_eq!(
            ev,
            vec![InboundEvent::Message {
                user: "1254477777772919".into(),
                id: "mid.1457764197618:41d102a3e1ae206a38".into(),
                name: None,
                text: Some("hello, world!".into()),
                payload: None,
                context_id: None,
                at: 1458692752478,
            }]
        );
        let ev = ok(
            FB,
            &messenger_quick_reply(
                "1254477777772919",
                "mid.QR",
                "Red",
                "COLOR_RED",
                1458692752478,
            ),
        );
        assert!(matches!(
            &ev[0],
            InboundEvent::Message { payload: Some(p), text: Some(t), .. } if p == "COLOR_RED" && t == "Red"
        ));
    }

    #[test]
    fn postback_click() {
        let ev = ok(
            FB,
            &messenger_postback(
                "1254477777772919",
                "m_MESSAGE-ID",
                "TITLE-FOR-THE-CTA",
                "USER-DEFINED-PAYLOAD",
                1527459824,
            ),
        );
        assert_eq!(
            ev,
            vec![InboundEvent::Message {
                user: "1254477777772919".into(),
                id: "m_MESSAGE-ID".into(),
                name: None,
                text: Some("TITLE-FOR-THE-CTA".into()),
                payload: Some("USER-DEFINED-PAYLOAD".into()),
                context_id: None,
                // The documented example's timestamp is in seconds.
                at: 1_527_459_824_000,
            }]
        );
    }

    #[test]
    fn echoes_and_reactions_are_skipped() {
        assert_eq!(
            ok(
                FB,
                &messenger_echo(
                    "1254477777772919",
                    "mid.ECHO",
                    "we said this",
                    1458692752478
                )
            ),
            vec![]
        );
        let reaction = r#"{"object":"page","entry":[{"id":"PAGE","time":1458692752478,"messaging":[{"sender":{"id":"1"},"recipient":{"id":"PAGE"},"timestamp":1458692752478,"reaction":{"mid":"m","action":"react","emoji":"\u2764"}}]}]}"#;
        assert_eq!(ok(FB, reaction), vec![]);
        let standby = r#"{"object":"page","entry":[{"id":"PAGE","time":1458692752478,"standby":[{"sender":{"id":"1"},"recipient":{"id":"PAGE"}}]}]}"#;
        assert_eq!(ok(FB, standby), vec![]);
    }

    #[test]
    fn instagram_text_postback_and_seen() {
        let ev = ok(
            IG,
            &instagram_text("IGSID1", "aWdfZAG1", "MESSAGE-TEXT", 1569262485349),
        );
        assert!(matches!(
            &ev[0],
            InboundEvent::Message { user, id, text: Some(t), .. } if user == "IGSID1" && id == "aWdfZAG1" && t == "MESSAGE-TEXT"
        ));
        let ev = ok(
            IG,
            &instagram_postback(
                "IGSID1",
                "aWdfZAG2",
                "Get Started",
                "GET_STARTED",
                1569262485349,
            ),
        );
        assert!(
            matches!(&ev[0], InboundEvent::Message { payload: Some(p), .. } if p == "GET_STARTED")
        );
        assert_eq!(
            ok(IG, &instagram_seen("IGSID1", "aWdfZAG3", 1569262486134)),
            vec![InboundEvent::Status {
                provider_message_id: "aWdfZAG3".into(),
                update: StatusUpdate::Read,
                user: Some("IGSID1".into()),
                at: 1569262486134,
            }]
        );
        // Echo of our own IG send (echoes arrive in the `messages` field on Instagram).
        let echo = instagram_text("IGSID1", "aWdfZAG4", "ours", 1569262485349)
            .replace("\"mid\"", "\"is_echo\":true,\"mid\"");
        assert_eq!(ok(IG, &echo), vec![]);
    }

    #[test]
    fn seen_with_both_mid_and_watermark() {
        let body = r#"{"object":"instagram","entry":[{"id":"IGID","time":1569262486134,"messaging":[{"sender":{"id":"IGSID"},"recipient":{"id":"IGID"},"timestamp":1569262486134,"read":{"mid":"m1","watermark":1569262486000}}]}]}"#;
        let ev = ok(IG, body);
        assert_eq!(ev.len(), 2);
        assert_eq!(ev[0].kind(), "status_read");
        assert_eq!(ev[1].kind(), "read_watermark");
    }

    #[test]
    fn wrong_object_for_the_channel_is_400() {
        let page = messenger_read("1", 1458668856253);
        let req = Req::post(page.clone())
            .header("X-Hub-Signature-256", &sign_meta(SECRET, page.as_bytes()));
        let out = run(IG, &config_with(IG, SECRET), &req);
        assert!(
            matches!(&out, Err(WebhookError::BadRequest(m)) if m.contains("\"instagram\"")),
            "{out:?}"
        );
    }

    #[test]
    fn incomplete_events_are_400() {
        for (body, needle) in [
            (
                r#"{"object":"page","entry":[{"messaging":[{"recipient":{"id":"P"},"read":{"watermark":1}}]}]}"#,
                "messaging[0].sender",
            ),
            (
                r#"{"object":"page","entry":[{"messaging":[{"sender":{"id":"1"},"delivery":{"mids":[]}}]}]}"#,
                "delivery.watermark",
            ),
            (
                r#"{"object":"page","entry":[{"messaging":[{"sender":{"id":"1"},"read":{}}]}]}"#,
                "neither",
            ),
            (
                r#"{"object":"page","entry":[{"messaging":[{"sender":{"id":"1"},"message":{"text":"hi"}}]}]}"#,
                "message.mid",
            ),
            (
                r#"{"object":"page","entry":[{"messaging":[{"sender":{"id":"1"},"timestamp":"x","message":{"mid":"m"}}]}]}"#,
                "timestamp",
            ),
            (r#"{"object":"page","entry":{}}"#, "must be an array"),
        ] {
            let req =
                Req::post(body).header("X-Hub-Signature-256", &sign_meta(SECRET, body.as_bytes()));
            match run(FB, &config_with(FB, SECRET), &req) {
                Err(WebhookError::BadRequest(m)) => assert!(m.contains(needle), "{body}: {m}"),
                other => panic!("{body}: {other:?}"),
            }
        }
    }

    proptest! {
        #![proptest_config(proptest_config())]

        #[test]
        fn arbitrary_bytes_never_panic(body in proptest::collection::vec(any::<u8>(), 0..512), ig in any::<bool>()) {
            let kind = if ig { IG } else { FB };
            let out = run(kind, &config(kind), &Req::post(body));
            prop_assert!(is_clean(&out));
        }

        #[test]
        fn mutated_real_payloads_never_panic(which in 0usize..8, choices in proptest::collection::vec(any::<u32>(), 1..12)) {
            let base = [
                (FB, messenger_delivery("1", &["m1", "m2"], 1458668856253)),
                (FB, messenger_read("1", 1458668856253)),
                (FB, messenger_text("1", "m", "hi", 1458692752478)),
                (FB, messenger_quick_reply("1", "m", "Red", "RED", 1458692752478)),
                (FB, messenger_postback("1", "m", "T", "P", 1527459824)),
                (IG, instagram_text("1", "m", "hi", 1569262485349)),
                (IG, instagram_seen("1", "m", 1569262485349)),
                (IG, instagram_postback("1", "m", "T", "P", 1569262485349)),
            ];
            let (kind, body) = &base[which];
            let mut v: serde_json::Value = serde_json::from_str(body).unwrap();
            mutate_json(&mut v, &mut choices.into_iter());
            let out = run(*kind, &config(*kind), &Req::post(v.to_string()));
            prop_assert!(is_clean(&out), "{out:?}");
        }
    }
}
