//! WeChat Official Account callbacks. Every request carries query
//! `signature`, `timestamp`, `nonce`, signed with the server Token
//! (`verify_token` in config), and the timestamp must be within 5 minutes.
//!
//! - `GET …&echostr=…`: the server-URL handshake → [`WebhookOutcome::Challenge`]
//!   with `echostr`; a bad signature or stale timestamp is a failed handshake (403).
//! - `POST` plaintext (明文模式, no `encrypt_type` or `encrypt_type=raw`): the
//!   `signature` covers token, timestamp and nonce but **not the body**, so a
//!   (timestamp, nonce) is accepted once (`receipts::replay`, in the server)
//!   and refused outright when the channel sets `encryption = "safe"`.
//! - `POST` encrypted (安全/兼容模式, `encrypt_type=aes`): `msg_signature`
//!   covers the body's `<Encrypt>` too; it is checked, then decrypted with the
//!   channel's `encoding_aes_key` and checked to be addressed to its `app_id`
//!   ([`super::wechat_crypto`]). Only the decrypted message is read: the
//!   plaintext copy compatible mode sends beside it is not signed.
//!
//! Bodies are answered with `success`:
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
//! `LOCATION`, mass-send reports, …) are skipped.
//! Sources: CHANNELS.md §6.4–6.5; the encryption scheme from WeChat's
//! "message encryption technical solution"; TEMPLATESENDJOBFINISH and
//! `bizmsgmenuid` shapes are from secondary sources (SDKs), not the official page.

use std::borrow::Cow;
use std::collections::HashMap;

use axum::http::Method;
use quick_xml::Reader;
use quick_xml::events::Event;

use super::webhook::{bad, query_get, query_pairs, secret, secs_to_ms};
use super::{WebhookError, WebhookOutcome, WebhookRequest};
use super::{signature, wechat_crypto};
use crate::config::{ChannelConfig, WechatEncryption};
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
    let token = secret(cfg, cfg.secrets.verify_token.as_ref(), "verify_token")?;
    if is_get {
        return handshake(token, &q, req);
    }
    let body = match query_get(&q, "encrypt_type") {
        None | Some("raw") => plaintext_body(cfg, token, &q, req)?,
        Some("aes") => Cow::Owned(decrypted_body(cfg, token, &q, req)?),
        Some(other) => {
            return Err(bad(format!(
                "unknown encrypt_type {other:?} (WeChat sends \"aes\" or \"raw\")"
            )));
        }
    };
    Ok(WebhookOutcome::Events {
        events: parse(&body)?,
        reply: "success".into(),
        reply_type: "text/plain",
    })
}

/// The GET server-URL verification: echo `echostr` when signed and recent.
fn handshake(
    token: Option<&str>,
    q: &[(String, String)],
    req: &WebhookRequest<'_>,
) -> Result<WebhookOutcome, WebhookError> {
    if let Some(token) = token {
        let timestamp = query_get(q, "timestamp");
        signature::verify_wechat(
            token,
            query_get(q, "signature"),
            timestamp,
            query_get(q, "nonce"),
        )
        .and_then(|()| signature::check_wechat_timestamp(timestamp, req.now).map(drop))
        .map_err(|e| {
            WebhookError::Forbidden(format!("WeChat server-URL verification failed: {e}"))
        })?;
    }
    let echo = query_get(q, "echostr").ok_or_else(|| {
        bad("a GET here must be WeChat's server-URL verification: `echostr` is missing")
    })?;
    Ok(WebhookOutcome::Challenge(echo.to_string()))
}

/// A plaintext callback's body, once its query signature and timestamp pass
/// and the channel accepts plaintext.
fn plaintext_body<'b>(
    cfg: &ChannelConfig,
    token: Option<&str>,
    q: &[(String, String)],
    req: &WebhookRequest<'b>,
) -> Result<Cow<'b, [u8]>, WebhookError> {
    if cfg.wechat_encryption() == WechatEncryption::Safe {
        return Err(WebhookError::Unauthorized(
            "this channel takes encrypted callbacks only (encryption = \"safe\"), and this one is plaintext, whose body no signature covers; set 消息加解密方式 (message encryption) to 安全模式 (safe mode) in the WeChat console".into(),
        ));
    }
    if let Some(token) = token {
        let timestamp = query_get(q, "timestamp");
        signature::verify_wechat(
            token,
            query_get(q, "signature"),
            timestamp,
            query_get(q, "nonce"),
        )?;
        signature::check_wechat_timestamp(timestamp, req.now)?;
    }
    Ok(Cow::Borrowed(req.body))
}

/// The message inside a safe-mode callback, once `msg_signature` (over the
/// `<Encrypt>` value) and the timestamp pass.
fn decrypted_body(
    cfg: &ChannelConfig,
    token: Option<&str>,
    q: &[(String, String)],
    req: &WebhookRequest<'_>,
) -> Result<Vec<u8>, WebhookError> {
    let (Some(key), Some(app_id)) = (cfg.secrets.encoding_aes_key.as_ref(), cfg.app_id.as_deref())
    else {
        return Err(bad(
            "the callback is encrypted (safe or compatible mode) but this channel has no encoding_aes_key: set `encoding_aes_key` (or `encoding_aes_key_env`) to the EncodingAESKey from the WeChat console",
        ));
    };
    let outer = fields(req.body)?;
    let encrypt = outer.get("Encrypt").ok_or_else(|| {
        bad("an encrypted callback (encrypt_type=aes) must carry an <Encrypt> element")
    })?;
    if let Some(token) = token {
        let timestamp = query_get(q, "timestamp");
        signature::verify_wechat_msg(
            token,
            query_get(q, "msg_signature"),
            timestamp,
            query_get(q, "nonce"),
            encrypt,
        )?;
        signature::check_wechat_timestamp(timestamp, req.now)?;
    }
    let key = wechat_crypto::aes_key(key.expose())
        .map_err(|e| WebhookError::Unauthorized(format!("encoding_aes_key {e}")))?;
    wechat_crypto::decrypt(&key, app_id, encrypt)
        .map_err(|e| WebhookError::Unauthorized(e.to_string()))
}

fn encrypted_without_query() -> WebhookError {
    bad(
        "the body is encrypted (an <Encrypt> element) but the query has no encrypt_type=aes, so it cannot be checked; WeChat sends both together",
    )
}

/// Parses a (verified) callback body.
pub fn parse(body: &[u8]) -> Result<Vec<InboundEvent>, WebhookError> {
    let f = Fields(fields(body)?);
    if f.0.contains_key("Encrypt") && !f.0.contains_key("MsgType") {
        return Err(encrypted_without_query());
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
    /// The callbacks' timestamp: the tests' clock, so inside the window.
    const TS: i64 = NOW / 1000;
    const AES_KEY: &str = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG";
    const APP_ID: &str = "wx2c2769f8efd9abc2";

    /// A channel with an EncodingAESKey, taking callbacks in `mode`.
    fn safe_config(mode: WechatEncryption) -> ChannelConfig {
        let mut cfg = config_with(WX, TOKEN);
        cfg.secrets.encoding_aes_key = Some(crate::config::Secret::new(AES_KEY));
        cfg.app_id = Some(APP_ID.into());
        cfg.encryption = Some(mode);
        cfg
    }

    /// `xml` as WeChat posts it in safe mode, encrypted for `app_id`.
    fn encrypted(xml: &str, app_id: &str, nonce: &str) -> Req {
        let encrypt = wechat_encrypt(AES_KEY, app_id, xml);
        Req::post(wechat_safe_body(&encrypt))
            .query(wechat_safe_query(TOKEN, TS, nonce, "OPENID", &encrypt))
    }

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
                    at: TS * 1000,
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
                "encrypt_type=aes",
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
            matches!(run(WX, &cfg, &aes), Err(WebhookError::BadRequest(m)) if m.contains("encoding_aes_key"))
        );
    }

    #[test]
    fn a_stale_timestamp_is_refused() {
        let body = wechat_text("u", "1", "STOP", TS);
        let cfg = config_with(WX, TOKEN);
        for (skew, ok) in [
            (-300, true),
            (300, true),
            (-301, false),
            (301, false),
            (-86_400, false),
        ] {
            let req = Req::post(body.clone()).query(wechat_query(TOKEN, TS + skew, "n"));
            let out = run(WX, &cfg, &req);
            if ok {
                assert!(out.is_ok(), "{skew}: {out:?}");
            } else {
                assert!(
                    matches!(&out, Err(WebhookError::Unauthorized(m)) if m.contains("timestamp") && m.contains("replayed")),
                    "{skew}: {out:?}"
                );
            }
        }
        // The handshake too: a stale echo is a failed verification.
        let q = wechat_echo_query(TOKEN, TS - 3600, "n", "1");
        assert!(matches!(
            run(WX, &cfg, &Req::get(q)),
            Err(WebhookError::Forbidden(_))
        ));
    }

    #[test]
    fn wechats_own_safe_mode_sample_decrypts() {
        // WXBizMsgCrypt demo: token "spamtest", the sample's timestamp,
        // nonce, msg_signature and <Encrypt>, received at its own time.
        let mut cfg = config_with(WX, "spamtest");
        cfg.secrets.encoding_aes_key = Some(crate::config::Secret::new(AES_KEY));
        cfg.app_id = Some(APP_ID.into());
        let encrypt = crate::receipts::wechat_crypto::tests::SAMPLE_ENCRYPT;
        let query = format!(
            "signature={}&timestamp=1409735669&nonce=1320562132&encrypt_type=aes&msg_signature=5d197aaffba7e9b25a30732f161a50dee96bd5fa",
            crate::receipts::signature::wechat_signature("spamtest", "1409735669", "1320562132")
        );
        let req = Req::post(wechat_safe_body(encrypt))
            .query(query)
            .now(1_409_735_669_000);
        let ev = events_of(run(WX, &cfg, &req));
        assert!(
            matches!(&ev[..], [InboundEvent::Message { user, text: Some(t), id, .. }]
                if user == "oyORnuP8q7ou2gfYjqLzSIWZf0rs" && t == "abcdteT" && id == "6054768590064713728"),
            "{ev:?}"
        );
    }

    #[test]
    fn safe_mode_decrypts_and_only_trusts_the_encrypted_copy() {
        let xml = wechat_text("OPENID", "42", "hello", TS);
        let cfg = safe_config(WechatEncryption::Safe);
        let ev = events_of(run(WX, &cfg, &encrypted(&xml, APP_ID, "n1")));
        assert!(
            matches!(&ev[..], [InboundEvent::Message { text: Some(t), .. }] if t == "hello"),
            "{ev:?}"
        );
        // Compatible mode sends a plaintext copy beside <Encrypt>: it is not
        // signed, so what counts is the decrypted message.
        let encrypt = wechat_encrypt(AES_KEY, APP_ID, &xml);
        let forged_copy = wechat_text("VICTIM", "43", "STOP", TS);
        let body = forged_copy.replace(
            "</xml>",
            &format!("<Encrypt><![CDATA[{encrypt}]]></Encrypt></xml>"),
        );
        let req = Req::post(body).query(wechat_safe_query(TOKEN, TS, "n2", "OPENID", &encrypt));
        let ev = events_of(run(WX, &safe_config(WechatEncryption::Compatible), &req));
        assert!(
            matches!(&ev[..], [InboundEvent::Message { user, text: Some(t), .. }] if user == "OPENID" && t == "hello"),
            "{ev:?}"
        );
    }

    #[test]
    fn safe_mode_tampered_body_is_refused() {
        let xml = wechat_unsubscribe("OPENID", TS);
        let good = encrypted(&xml, APP_ID, "n1");
        let cfg = safe_config(WechatEncryption::Safe);
        assert!(run(WX, &cfg, &good).is_ok());
        // Another (validly encrypted) message under the first one's signature.
        let other = wechat_encrypt(AES_KEY, APP_ID, &wechat_unsubscribe("VICTIM", TS));
        let swapped = Req::post(wechat_safe_body(&other)).query(good.query.clone());
        let out = run(WX, &cfg, &swapped);
        assert!(
            matches!(&out, Err(WebhookError::Unauthorized(m)) if m.contains("msg_signature")),
            "{out:?}"
        );
        // One flipped character of the ciphertext.
        let text = String::from_utf8(good.body.clone()).unwrap();
        let i = text.find("<Encrypt><![CDATA[").unwrap() + 20;
        let mut bytes = text.into_bytes();
        bytes[i] = if bytes[i] == b'A' { b'B' } else { b'A' };
        let out = run(WX, &cfg, &Req::post(bytes).query(good.query.clone()));
        assert!(matches!(out, Err(WebhookError::Unauthorized(_))), "{out:?}");
        // A plaintext body with the plaintext signature: refused in safe mode.
        let plain = Req::post(xml).query(wechat_query(TOKEN, TS, "n3"));
        let out = run(WX, &cfg, &plain);
        assert!(
            matches!(&out, Err(WebhookError::Unauthorized(m)) if m.contains("encryption = \"safe\"")),
            "{out:?}"
        );
        assert!(run(WX, &safe_config(WechatEncryption::Compatible), &plain).is_ok());
    }

    #[test]
    fn safe_mode_message_for_another_app_is_refused() {
        let xml = wechat_text("OPENID", "42", "hello", TS);
        let req = encrypted(&xml, "wx0000000000000001", "n1");
        let out = run(WX, &safe_config(WechatEncryption::Safe), &req);
        assert!(
            matches!(&out, Err(WebhookError::Unauthorized(m))
                if m.contains("wx0000000000000001") && m.contains(APP_ID) && m.contains("app id")),
            "{out:?}"
        );
        // A key that is not the channel's: refused, the key never shown.
        let mut cfg = safe_config(WechatEncryption::Safe);
        cfg.secrets.encoding_aes_key = Some(crate::config::Secret::new("b".repeat(43)));
        let out = run(WX, &cfg, &encrypted(&xml, APP_ID, "n2"));
        match out {
            Err(WebhookError::Unauthorized(m)) => {
                assert!(!m.contains(AES_KEY) && !m.contains(&"b".repeat(43)), "{m}")
            }
            other => panic!("{other:?}"),
        }
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
