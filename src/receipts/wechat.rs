//! WeChat Official Account callbacks (plaintext mode). Every request carries
//! query `signature`, `timestamp`, `nonce`, signed with the server Token
//! (`verify_token` in config); the XML body itself is not signed.
//!
//! - `GET …&echostr=…`: the server-URL handshake → [`WebhookOutcome::Challenge`]
//!   with `echostr`; a bad signature is a failed handshake (403).
//! - `POST` XML, answered with `success`:
//!
//! | `MsgType` / `Event` | becomes |
//! |---|---|
//! | `text` | [`InboundEvent::Message`]: `id = MsgId`, `text = Content`; a msgmenu tap also carries `bizmsgmenuid` → `payload` |
//! | `image`, `voice`, `video`, `shortvideo`, `location`, `link` | [`InboundEvent::Message`] without text (voice: its `Recognition` when present) |
//! | event `subscribe` | [`InboundEvent::Message`] with no text or payload, so the follower is (re)created |
//! | event `unsubscribe` | [`InboundEvent::Unsubscribed`] |
//! | event `CLICK` (custom menu) | [`InboundEvent::Message`] with `payload = EventKey` |
//! | event `TEMPLATESENDJOBFINISH` | [`InboundEvent::Status`] by `MsgID`: `success` → `Delivered`, `failed:<reason>` → `Failed { code: <reason> }` |
//!
//! Events have no `MsgId`; their id is `"<Event>:<FromUserName>:<CreateTime>"`
//! (WeChat's own dedup key for events). Other events (`SCAN`, `VIEW`,
//! `LOCATION`, mass-send reports, …) are skipped. Safe (AES) mode is refused
//! with a message saying to switch to plaintext.
//! Sources: CHANNELS.md §6.4–6.5; TEMPLATESENDJOBFINISH and `bizmsgmenuid`
//! shapes are from secondary sources (SDKs), not the official page.

use std::collections::HashMap;

use axum::http::Method;
use quick_xml::Reader;
use quick_xml::events::Event;

use super::signature;
use super::webhook::{bad, query_get, query_pairs, secret, secs_to_ms};
use super::{WebhookError, WebhookOutcome, WebhookRequest};
use crate::config::ChannelConfig;
use crate::model::{InboundEvent, StatusUpdate};

pub fn handle(
    cfg: &ChannelConfig,
    req: &WebhookRequest<'_>,
) -> Result<WebhookOutcome, WebhookError> {
    let is_get = *req.method == Method::GET;
    if !is_get && *req.method != Method::POST {
        return Err(WebhookError::MethodNotAllowed);
    }
    let q = query_pairs(req)?;
    if let Some(token) = secret(cfg, cfg.secrets.verify_token.as_ref(), "verify_token")? {
        let checked = signature::verify_wechat(
            token,
            query_get(&q, "signature"),
            query_get(&q, "timestamp"),
            query_get(&q, "nonce"),
        );
        match checked {
            Ok(()) => {}
            Err(e) if is_get => {
                return Err(WebhookError::Forbidden(format!(
                    "WeChat server-URL verification failed: {e}"
                )));
            }
            Err(e) => return Err(e.into()),
        }
    }
    if is_get {
        let echo = query_get(&q, "echostr").ok_or_else(|| {
            bad("a GET here must be WeChat's server-URL verification: `echostr` is missing")
        })?;
        return Ok(WebhookOutcome::Challenge(echo.to_string()));
    }
    if query_get(&q, "encrypt_type").is_some_and(|t| t != "raw") {
        return Err(safe_mode());
    }
    Ok(WebhookOutcome::Events {
        events: parse(req.body)?,
        reply: "success".into(),
        reply_type: "text/plain",
    })
}

fn safe_mode() -> WebhookError {
    bad(
        "the message is encrypted (safe mode); pushd reads plaintext callbacks: set 消息加解密方式 (message encryption) to 明文模式 (plaintext) in the WeChat console",
    )
}

/// Parses a (verified) callback body.
pub fn parse(body: &[u8]) -> Result<Vec<InboundEvent>, WebhookError> {
    let f = Fields(fields(body)?);
    if f.0.contains_key("Encrypt") && !f.0.contains_key("MsgType") {
        return Err(safe_mode());
    }
    let from = f.req("FromUserName")?.to_string();
    let created = f.req("CreateTime")?;
    let at = created
        .trim()
        .parse::<i64>()
        .map_err(|_| {
            bad(format!(
                "`CreateTime` must be unix seconds, got {created:?}"
            ))
        })
        .and_then(|s| secs_to_ms(s, "CreateTime"))?;
    let message = |id: String, text: Option<&str>, payload: Option<&str>| InboundEvent::Message {
        user: from.clone(),
        id,
        name: None,
        text: text.map(str::to_string),
        payload: payload.map(str::to_string),
        context_id: None,
        at,
    };
    let msg_type = f.req("MsgType")?;
    let ev = match msg_type {
        "text" => Some(message(
            f.req("MsgId")?.to_string(),
            Some(f.get("Content").unwrap_or("")),
            f.get("bizmsgmenuid"),
        )),
        "image" | "video" | "shortvideo" | "location" | "link" => {
            Some(message(f.req("MsgId")?.to_string(), None, None))
        }
        "voice" => Some(message(
            f.req("MsgId")?.to_string(),
            f.get("Recognition"),
            None,
        )),
        "event" => {
            let event = f.req("Event")?;
            let event_id = || format!("{event}:{from}:{}", created.trim());
            if event.eq_ignore_ascii_case("subscribe") {
                Some(message(event_id(), None, None))
            } else if event.eq_ignore_ascii_case("unsubscribe") {
                Some(InboundEvent::Unsubscribed {
                    user: from.clone(),
                    at,
                })
            } else if event.eq_ignore_ascii_case("CLICK") {
                Some(message(event_id(), None, Some(f.req("EventKey")?)))
            } else if event.eq_ignore_ascii_case("TEMPLATESENDJOBFINISH") {
                let msg_id = f.get("MsgID").or(f.get("MsgId")).ok_or_else(|| {
                    bad("required field `MsgID` is missing (TEMPLATESENDJOBFINISH)")
                })?;
                Some(InboundEvent::Status {
                    provider_message_id: msg_id.trim().to_string(),
                    update: template_status(f.req("Status")?),
                    user: Some(from.clone()),
                    at,
                })
            } else {
                None
            }
        }
        _ => None,
    };
    Ok(ev.into_iter().collect())
}

/// `success` → delivered; `failed:user block`, `failed: system failed`,
/// `failed:freq limit`… → failed with the reason as the code.
fn template_status(status: &str) -> StatusUpdate {
    let s = status.trim();
    if s.eq_ignore_ascii_case("success") {
        return StatusUpdate::Delivered;
    }
    let reason = s
        .strip_prefix("failed:")
        .map(str::trim)
        .filter(|r| !r.is_empty())
        .unwrap_or(s);
    StatusUpdate::Failed {
        code: reason.to_string(),
        message: format!("WeChat template message not delivered: {s}"),
    }
}

struct Fields(HashMap<String, String>);

impl Fields {
    fn get(&self, k: &str) -> Option<&str> {
        self.0.get(k).map(String::as_str)
    }

    fn req(&self, k: &str) -> Result<&str, WebhookError> {
        self.get(k)
            .ok_or_else(|| bad(format!("required field `{k}` is missing")))
    }
}

/// The direct children of `<xml>` as text (CDATA and entities resolved);
/// nested elements are skipped. DTDs are refused.
fn fields(body: &[u8]) -> Result<HashMap<String, String>, WebhookError> {
    let text = std::str::from_utf8(body).map_err(|_| bad("the body is not UTF-8 XML"))?;
    let mut reader = Reader::from_str(text);
    let xml_err = |e: &dyn std::fmt::Display| bad(format!("the body is not valid XML ({e})"));
    let mut out = HashMap::new();
    let mut depth = 0usize;
    let mut saw_root = false;
    let mut current: Option<(String, String)> = None;
    loop {
        let ev = reader.read_event().map_err(|e| xml_err(&e))?;
        match ev {
            Event::Start(e) => {
                depth += 1;
                let name = e.local_name().as_ref().to_string();
                match depth {
                    1 if name == "xml" && !saw_root => saw_root = true,
                    1 => {
                        return Err(bad(format!(
                            "expected one <xml> root element, found <{name}>"
                        )));
                    }
                    2 => current = Some((name, String::new())),
                    _ => {}
                }
            }
            Event::Empty(e) => {
                if depth == 1 {
                    let name = e.local_name().as_ref().to_string();
                    out.insert(name, String::new());
                } else if depth == 0 {
                    return Err(bad("expected an <xml> root element with fields"));
                }
            }
            Event::End(_) => {
                if depth == 2
                    && let Some((k, v)) = current.take()
                {
                    out.insert(k, v);
                }
                depth = depth.saturating_sub(1);
            }
            Event::Text(t) if depth == 2 => {
                if let Some((_, v)) = current.as_mut() {
                    v.push_str(&t.xml10_content());
                }
            }
            Event::CData(t) if depth == 2 => {
                if let Some((_, v)) = current.as_mut() {
                    v.push_str(&t.xml10_content());
                }
            }
            Event::GeneralRef(r) if depth == 2 => {
                let ch = match r.resolve_char_ref().map_err(|e| xml_err(&e))? {
                    Some(c) => c,
                    None => match r.xml10_content().as_ref() {
                        "lt" => '<',
                        "gt" => '>',
                        "amp" => '&',
                        "apos" => '\'',
                        "quot" => '"',
                        other => return Err(bad(format!("unknown XML entity &{other};"))),
                    },
                };
                if let Some((_, v)) = current.as_mut() {
                    v.push(ch);
                }
            }
            Event::DocType(_) => return Err(bad("XML with a DTD (<!DOCTYPE>) is refused")),
            Event::Eof => break,
            _ => {}
        }
    }
    if !saw_root {
        return Err(bad("the body is not an <xml> document"));
    }
    if depth != 0 {
        return Err(bad("the XML document ends inside an element"));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::super::webhook::fixtures::*;
    use super::super::webhook::testing::*;
    use super::*;
    use crate::model::Platform;
    use proptest::prelude::*;

    const WX: Platform = Platform::Wechat;
    const TOKEN: &str = "wx-server-token";
    const TS: i64 = 1478317060;

    fn signed(body: &str) -> Req {
        Req::post(body.to_string()).query(wechat_query(TOKEN, TS, "nonce123"))
    }

    fn run_signed(body: &str) -> Result<WebhookOutcome, WebhookError> {
        run(WX, &config_with(WX, TOKEN), &signed(body))
    }

    #[test]
    fn handshake_echoes_echostr() {
        let q = wechat_echo_query(TOKEN, TS, "nonce123", "5837397520665436492");
        let out = run(WX, &config_with(WX, TOKEN), &Req::get(q));
        assert_eq!(
            out,
            Ok(WebhookOutcome::Challenge("5837397520665436492".into()))
        );
    }

    #[test]
    fn handshake_with_a_bad_signature_is_403() {
        let q = wechat_echo_query("someone-else", TS, "nonce123", "1");
        let out = run(WX, &config_with(WX, TOKEN), &Req::get(q));
        assert!(matches!(out, Err(WebhookError::Forbidden(_))), "{out:?}");
        let out = run(WX, &config_with(WX, TOKEN), &Req::get("echostr=1"));
        assert!(matches!(out, Err(WebhookError::Forbidden(_))), "{out:?}");
        let out = run(
            WX,
            &config_with(WX, TOKEN),
            &Req::get(wechat_query(TOKEN, TS, "n")),
        );
        assert!(is_bad_request(&out), "no echostr: {out:?}");
    }

    #[test]
    fn text_message_replies_success() {
        let body = wechat_text(
            "ogdotwSc_MmEEsJs9-ABZ1QL_4r4",
            "6349323426230210995",
            "你好",
            TS,
        );
        assert_eq!(
            run_signed(&body),
            Ok(WebhookOutcome::Events {
                events: vec![InboundEvent::Message {
                    user: "ogdotwSc_MmEEsJs9-ABZ1QL_4r4".into(),
                    id: "6349323426230210995".into(),
                    name: None,
                    text: Some("你好".into()),
                    payload: None,
                    context_id: None,
                    at: 1_478_317_060_000,
                }],
                reply: "success".into(),
                reply_type: "text/plain",
            })
        );
    }

    #[test]
    fn msgmenu_tap_carries_the_menu_id() {
        let body = wechat_menu_tap("OPENID", "1234567890123456", "满意", "101", TS);
        let ev = events_of(run_signed(&body));
        assert!(
            matches!(
                &ev[0],
                InboundEvent::Message { payload: Some(p), text: Some(t), .. } if p == "101" && t == "满意"
            ),
            "{ev:?}"
        );
    }

    #[test]
    fn subscribe_unsubscribe_and_menu_click() {
        let ev = events_of(run_signed(&wechat_subscribe("OPENID", TS)));
        assert_eq!(
            ev,
            vec![InboundEvent::Message {
                user: "OPENID".into(),
                id: format!("subscribe:OPENID:{TS}"),
                name: None,
                text: None,
                payload: None,
                context_id: None,
                at: TS * 1000,
            }]
        );
        assert_eq!(
            events_of(run_signed(&wechat_unsubscribe("OPENID", TS))),
            vec![InboundEvent::Unsubscribed {
                user: "OPENID".into(),
                at: TS * 1000
            }]
        );
        let click = "<xml><ToUserName><![CDATA[gh_1]]></ToUserName><FromUserName><![CDATA[OPENID]]></FromUserName><CreateTime>1478317060</CreateTime><MsgType><![CDATA[event]]></MsgType><Event><![CDATA[CLICK]]></Event><EventKey><![CDATA[V1001_TODAY_MUSIC]]></EventKey></xml>";
        let ev = events_of(run_signed(click));
        assert!(
            matches!(&ev[0], InboundEvent::Message { payload: Some(p), .. } if p == "V1001_TODAY_MUSIC")
        );
    }

    #[test]
    fn template_job_finish_statuses() {
        let ev = events_of(run_signed(&wechat_template_finish(
            "OPENID",
            "200163836",
            "success",
            TS,
        )));
        assert_eq!(
            ev,
            vec![InboundEvent::Status {
                provider_message_id: "200163836".into(),
                update: StatusUpdate::Delivered,
                user: Some("OPENID".into()),
                at: TS * 1000,
            }]
        );
        for (status, code) in [
            ("failed:user block", "user block"),
            ("failed: system failed", "system failed"),
            ("failed:freq limit", "freq limit"),
        ] {
            let ev = events_of(run_signed(&wechat_template_finish(
                "OPENID",
                "200163840",
                status,
                TS,
            )));
            assert!(
                matches!(
                    &ev[0],
                    InboundEvent::Status { update: StatusUpdate::Failed { code: c, message }, .. }
                        if c == code && message.contains(status)
                ),
                "{status}: {ev:?}"
            );
        }
    }

    #[test]
    fn entities_and_media() {
        let body = "<xml><FromUserName>u</FromUserName><CreateTime>1</CreateTime><MsgType>text</MsgType><Content>a &lt;b&gt; &amp; &#x4f60;</Content><MsgId>9</MsgId></xml>";
        let ev = events_of(run_signed(body));
        assert!(
            matches!(&ev[0], InboundEvent::Message { text: Some(t), .. } if t == "a <b> & 你"),
            "{ev:?}"
        );
        let image = "<xml><FromUserName>u</FromUserName><CreateTime>1</CreateTime><MsgType>image</MsgType><PicUrl>http://x</PicUrl><MediaId>m</MediaId><MsgId>10</MsgId></xml>";
        let ev = events_of(run_signed(image));
        assert!(matches!(&ev[0], InboundEvent::Message { text: None, id, .. } if id == "10"));
        let view = "<xml><FromUserName>u</FromUserName><CreateTime>1</CreateTime><MsgType>event</MsgType><Event>VIEW</Event><EventKey>http://x</EventKey></xml>";
        assert_eq!(events_of(run_signed(view)), vec![]);
    }

    #[test]
    fn signature_valid_wrong_missing() {
        let body = wechat_text("u", "1", "hi", TS);
        let cfg = config_with(WX, TOKEN);
        assert!(run(WX, &cfg, &signed(&body)).is_ok());
        let wrong = Req::post(body.clone()).query(wechat_query("other", TS, "nonce123"));
        assert!(matches!(
            run(WX, &cfg, &wrong),
            Err(WebhookError::Unauthorized(_))
        ));
        assert!(matches!(
            run(WX, &cfg, &Req::post(body.clone())),
            Err(WebhookError::Unauthorized(_))
        ));
        assert_eq!(
            run(WX, &cfg, &signed(&body).method(Method::PUT)),
            Err(WebhookError::MethodNotAllowed)
        );
    }

    #[test]
    fn garbage_safe_mode_and_missing_fields_are_400() {
        let cfg = config_with(WX, TOKEN);
        assert!(matches!(
            run(WX, &cfg, &Req::post("<xml")),
            Err(WebhookError::Unauthorized(_))
        ));
        for (body, needle) in [
            ("<xml", "XML"),
            ("\u{ff}\u{fe}", "<xml>"),
            ("{\"json\":true}", "<xml>"),
            ("<other><a>1</a></other>", "<xml>"),
            (
                "<!DOCTYPE x [<!ENTITY e SYSTEM \"file:///etc/passwd\">]><xml><Content>&e;</Content></xml>",
                "DTD",
            ),
            (
                "<xml><FromUserName>u</FromUserName><MsgType>text</MsgType></xml>",
                "`CreateTime`",
            ),
            (
                "<xml><FromUserName>u</FromUserName><CreateTime>1</CreateTime><MsgType>text</MsgType></xml>",
                "`MsgId`",
            ),
            (
                "<xml><FromUserName>u</FromUserName><CreateTime>x</CreateTime><MsgType>text</MsgType></xml>",
                "unix seconds",
            ),
            (
                "<xml><ToUserName>gh</ToUserName><Encrypt>abc</Encrypt></xml>",
                "plaintext",
            ),
        ] {
            match run_signed(body) {
                Err(WebhookError::BadRequest(m)) => assert!(m.contains(needle), "{body}: {m}"),
                other => panic!("{body}: {other:?}"),
            }
        }
        let aes = Req::post(wechat_text("u", "1", "hi", TS)).query(format!(
            "{}&encrypt_type=aes&msg_signature=x",
            wechat_query(TOKEN, TS, "nonce123")
        ));
        assert!(
            matches!(run(WX, &cfg, &aes), Err(WebhookError::BadRequest(m)) if m.contains("plaintext"))
        );
    }

    proptest! {
        #![proptest_config(proptest_config())]

        #[test]
        fn arbitrary_bytes_never_panic(body in proptest::collection::vec(any::<u8>(), 0..512)) {
            let out = run(WX, &config(WX), &Req::post(body));
            prop_assert!(is_clean(&out));
        }

        #[test]
        fn mutated_real_payloads_never_panic(which in 0usize..5, cut in any::<usize>(), flip in any::<u8>(), at in any::<usize>()) {
            let base = [
                wechat_text("OPENID", "6349323426230210995", "你好", TS),
                wechat_menu_tap("OPENID", "1", "满意", "101", TS),
                wechat_subscribe("OPENID", TS),
                wechat_unsubscribe("OPENID", TS),
                wechat_template_finish("OPENID", "200163840", "failed:user block", TS),
            ];
            let mut bytes = base[which].clone().into_bytes();
            let i = at % bytes.len();
            bytes[i] = flip;
            bytes.truncate(bytes.len() - cut % bytes.len());
            let out = run(WX, &config_with(WX, TOKEN), &signed_bytes(bytes));
            prop_assert!(is_clean(&out), "{out:?}");
        }
    }

    fn signed_bytes(body: Vec<u8>) -> Req {
        Req::post(body).query(wechat_query(TOKEN, TS, "nonce123"))
    }
}
