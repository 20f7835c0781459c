//! Webhook fixtures for tests: each platform's real payloads (shapes from
//! /work/shared/reference/CHANNELS.md, with the ids a test needs filled in)
//! and independent implementations of each signature scheme, so a test can
//! POST exactly what the platform would at the real daemon over loopback.
//!
//! Also compiled into the library's unit tests (`receipts::webhook::fixtures`),
//! so the parsers and the end-to-end tests share one set of payloads.
//! Bodies are returned as `String`; headers as `(name, value)` pairs.
#![allow(dead_code)]

use std::sync::atomic::{AtomicI64, Ordering};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{KeyInit, Mac};
use serde_json::{Value, json};
use sha1::Digest as _;

type HmacSha256 = hmac::Hmac<sha2::Sha256>;

fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
    let mut mac = <HmacSha256 as KeyInit>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(data);
    mac.finalize().into_bytes().to_vec()
}

// ======================================================================= signing

pub const META_SIGNATURE_HEADER: &str = "X-Hub-Signature-256";
pub const TELEGRAM_SECRET_HEADER: &str = "X-Telegram-Bot-Api-Secret-Token";

/// `X-Hub-Signature-256` value for `body` (WhatsApp, Messenger, Instagram).
pub fn sign_meta(app_secret: &str, body: &[u8]) -> String {
    format!("sha256={}", hex::encode(hmac(app_secret.as_bytes(), body)))
}

/// `[("X-Hub-Signature-256", …)]`.
pub fn meta_headers(app_secret: &str, body: &[u8]) -> Vec<(&'static str, String)> {
    vec![(META_SIGNATURE_HEADER, sign_meta(app_secret, body))]
}

/// Query of Meta's GET verification handshake.
pub fn meta_verify_query(verify_token: &str, challenge: &str) -> String {
    serde_urlencoded::to_string([
        ("hub.mode", "subscribe"),
        ("hub.verify_token", verify_token),
        ("hub.challenge", challenge),
    ])
    .expect("form-encodable")
}

/// `X-Slack-Signature` value (`v0=<hex>`) for `body` sent at unix second `ts`.
pub fn sign_slack(signing_secret: &str, ts: i64, body: &[u8]) -> String {
    let mut base = format!("v0:{ts}:").into_bytes();
    base.extend_from_slice(body);
    format!("v0={}", hex::encode(hmac(signing_secret.as_bytes(), &base)))
}

/// `X-Slack-Request-Timestamp` and `X-Slack-Signature`.
pub fn slack_headers(signing_secret: &str, ts: i64, body: &[u8]) -> Vec<(&'static str, String)> {
    vec![
        ("X-Slack-Request-Timestamp", ts.to_string()),
        ("X-Slack-Signature", sign_slack(signing_secret, ts, body)),
    ]
}

/// `[("X-Telegram-Bot-Api-Secret-Token", secret)]`.
pub fn telegram_headers(secret_token: &str) -> Vec<(&'static str, String)> {
    vec![(TELEGRAM_SECRET_HEADER, secret_token.to_string())]
}

/// WeChat's `signature`: hex SHA-1 of the sorted, concatenated token, timestamp and nonce.
pub fn wechat_signature(token: &str, ts: i64, nonce: &str) -> String {
    let ts = ts.to_string();
    let mut parts = [token, ts.as_str(), nonce];
    parts.sort_unstable();
    hex::encode(sha1::Sha1::digest(parts.concat().as_bytes()))
}

/// `signature=…&timestamp=…&nonce=…` for a WeChat POST.
pub fn wechat_query(token: &str, ts: i64, nonce: &str) -> String {
    serde_urlencoded::to_string([
        ("signature", wechat_signature(token, ts, nonce)),
        ("timestamp", ts.to_string()),
        ("nonce", nonce.to_string()),
    ])
    .expect("form-encodable")
}

/// The query of WeChat's GET server-URL verification.
pub fn wechat_echo_query(token: &str, ts: i64, nonce: &str, echostr: &str) -> String {
    format!(
        "{}&{}",
        wechat_query(token, ts, nonce),
        serde_urlencoded::to_string([("echostr", echostr)]).expect("form-encodable")
    )
}

/// WeChat's safe-mode `msg_signature`: hex SHA-1 of the sorted, concatenated
/// token, timestamp, nonce and `<Encrypt>` value.
pub fn wechat_msg_signature(token: &str, ts: i64, nonce: &str, encrypt: &str) -> String {
    let ts = ts.to_string();
    let mut parts = [token, ts.as_str(), nonce, encrypt];
    parts.sort_unstable();
    hex::encode(sha1::Sha1::digest(parts.concat().as_bytes()))
}

/// The query of a safe-mode POST as WeChat sends it: `signature`,
/// `timestamp`, `nonce`, `openid`, `encrypt_type=aes`, `msg_signature`.
pub fn wechat_safe_query(token: &str, ts: i64, nonce: &str, openid: &str, encrypt: &str) -> String {
    serde_urlencoded::to_string([
        ("signature", wechat_signature(token, ts, nonce)),
        ("timestamp", ts.to_string()),
        ("nonce", nonce.to_string()),
        ("openid", openid.to_string()),
        ("encrypt_type", "aes".to_string()),
        (
            "msg_signature",
            wechat_msg_signature(token, ts, nonce, encrypt),
        ),
    ])
    .expect("form-encodable")
}

/// `xml` encrypted as WeChat's safe mode does it: AES-256-CBC with
/// key = base64(EncodingAESKey + "="), IV = key[..16], over
/// random(16) ‖ len (u32, big-endian) ‖ xml ‖ app_id, PKCS#7-padded to 32.
pub fn wechat_encrypt(encoding_aes_key: &str, app_id: &str, xml: &str) -> String {
    use aes::cipher::{BlockModeEncrypt, KeyIvInit, block_padding::NoPadding};
    use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
    // The key's 43rd character carries two spare bits: decode as PHP does.
    let lenient = GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        GeneralPurposeConfig::new()
            .with_decode_allow_trailing_bits(true)
            .with_decode_padding_mode(DecodePaddingMode::Indifferent),
    );
    let key: [u8; 32] = lenient
        .decode(format!("{encoding_aes_key}="))
        .expect("an EncodingAESKey is base64")
        .try_into()
        .expect("an EncodingAESKey decodes to 32 bytes");
    let mut plain = b"0123456789abcdef".to_vec();
    plain.extend_from_slice(&(xml.len() as u32).to_be_bytes());
    plain.extend_from_slice(xml.as_bytes());
    plain.extend_from_slice(app_id.as_bytes());
    let pad = 32 - plain.len() % 32;
    plain.extend(std::iter::repeat_n(pad as u8, pad));
    let len = plain.len();
    let iv: [u8; 16] = key[..16].try_into().expect("16 bytes");
    let encrypted = cbc::Encryptor::<aes::Aes256>::new(&key.into(), &iv.into())
        .encrypt_padded::<NoPadding>(&mut plain, len)
        .expect("whole blocks")
        .to_vec();
    BASE64.encode(encrypted)
}

/// The body of a safe-mode callback: the account and the `<Encrypt>` value.
pub fn wechat_safe_body(encrypt: &str) -> String {
    format!(
        "<xml>\n  <ToUserName><![CDATA[gh_866835093fea]]></ToUserName>\n  <Encrypt><![CDATA[{encrypt}]]></Encrypt>\n</xml>"
    )
}

/// Standard Webhooks `v1,<base64>` for `body`; `secret` is the channel's
/// `webhook_secret` (`whsec_<base64 key>` or raw bytes).
pub fn standard_webhook_signature(secret: &str, id: &str, ts: i64, body: &[u8]) -> String {
    let key = match secret.strip_prefix("whsec_") {
        Some(b64) => BASE64.decode(b64).expect("whsec_ secrets are base64"),
        None => secret.as_bytes().to_vec(),
    };
    let mut content = format!("{id}.{ts}.").into_bytes();
    content.extend_from_slice(body);
    format!("v1,{}", BASE64.encode(hmac(&key, &content)))
}

/// `webhook-id`, `webhook-timestamp`, `webhook-signature` for a custom/webchat POST.
pub fn standard_webhook_headers(
    secret: &str,
    id: &str,
    ts: i64,
    body: &[u8],
) -> Vec<(&'static str, String)> {
    vec![
        ("webhook-id", id.to_string()),
        ("webhook-timestamp", ts.to_string()),
        (
            "webhook-signature",
            standard_webhook_signature(secret, id, ts, body),
        ),
    ]
}

// ======================================================================= WhatsApp

fn whatsapp_envelope(value: Value) -> String {
    json!({
        "object": "whatsapp_business_account",
        "entry": [{
            "id": "102290129340398",
            "changes": [{ "field": "messages", "value": value }]
        }]
    })
    .to_string()
}

fn whatsapp_metadata() -> Value {
    json!({ "display_phone_number": "15550783881", "phone_number_id": "106540352242922" })
}

/// A status webhook for `wamid` (`sent`/`delivered`/`read`/`failed`), to the
/// documented recipient 16505551234.
pub fn whatsapp_status(wamid: &str, status: &str, ts: i64) -> String {
    whatsapp_status_to("16505551234", wamid, status, ts)
}

/// A status webhook for `wamid` sent to `recipient` (the documented shape,
/// with conversation and pricing).
pub fn whatsapp_status_to(recipient: &str, wamid: &str, status: &str, ts: i64) -> String {
    whatsapp_envelope(json!({
        "messaging_product": "whatsapp",
        "metadata": whatsapp_metadata(),
        "statuses": [{
            "id": wamid,
            "status": status,
            "timestamp": ts.to_string(),
            "recipient_id": recipient,
            "conversation": {
                "id": "CONVERSATION_ID",
                "expiration_timestamp": (ts + 86_400).to_string(),
                "origin": { "type": "service" }
            },
            "pricing": { "billable": true, "pricing_model": "PMP", "category": "service", "type": "regular" }
        }]
    }))
}

/// A `failed` status with one error object (code, title, details).
pub fn whatsapp_failed(
    wamid: &str,
    recipient: &str,
    code: i64,
    title: &str,
    details: &str,
    ts: i64,
) -> String {
    whatsapp_envelope(json!({
        "messaging_product": "whatsapp",
        "metadata": whatsapp_metadata(),
        "statuses": [{
            "id": wamid,
            "status": "failed",
            "timestamp": ts.to_string(),
            "recipient_id": recipient,
            "errors": [{
                "code": code,
                "title": title,
                "message": title,
                "error_data": { "details": details },
                "href": "https://developers.facebook.com/docs/whatsapp/cloud-api/support/error-codes/"
            }]
        }]
    }))
}

fn whatsapp_inbound(from: &str, name: &str, message: Value) -> String {
    whatsapp_envelope(json!({
        "messaging_product": "whatsapp",
        "metadata": whatsapp_metadata(),
        "contacts": [{ "profile": { "name": name }, "wa_id": from }],
        "messages": [message]
    }))
}

/// A text message from `from` (profile name `name`).
pub fn whatsapp_text(from: &str, name: &str, wamid: &str, text: &str, ts: i64) -> String {
    whatsapp_inbound(
        from,
        name,
        json!({ "from": from, "id": wamid, "timestamp": ts.to_string(), "type": "text", "text": { "body": text } }),
    )
}

/// A reply-button click on the message `context_wamid` (profile "Sheena Nelson").
pub fn whatsapp_button_reply(
    from: &str,
    wamid: &str,
    context_wamid: &str,
    id: &str,
    title: &str,
    ts: i64,
) -> String {
    whatsapp_inbound(
        from,
        "Sheena Nelson",
        json!({
            "context": { "from": "15550783881", "id": context_wamid },
            "from": from, "id": wamid, "timestamp": ts.to_string(),
            "type": "interactive",
            "interactive": { "type": "button_reply", "button_reply": { "id": id, "title": title } }
        }),
    )
}

/// A list-row pick on the message `context_wamid`.
pub fn whatsapp_list_reply(
    from: &str,
    wamid: &str,
    context_wamid: &str,
    id: &str,
    title: &str,
    ts: i64,
) -> String {
    whatsapp_inbound(
        from,
        "Sheena Nelson",
        json!({
            "context": { "from": "15550783881", "id": context_wamid },
            "from": from, "id": wamid, "timestamp": ts.to_string(),
            "type": "interactive",
            "interactive": { "type": "list_reply", "list_reply": { "id": id, "title": title, "description": "" } }
        }),
    )
}

/// A template quick-reply button click (`type: button`) on `context_wamid`.
pub fn whatsapp_template_button(
    from: &str,
    wamid: &str,
    context_wamid: &str,
    payload: &str,
    text: &str,
    ts: i64,
) -> String {
    whatsapp_inbound(
        from,
        "Sheena Nelson",
        json!({
            "context": { "from": "15550783881", "id": context_wamid },
            "from": from, "id": wamid, "timestamp": ts.to_string(),
            "type": "button",
            "button": { "payload": payload, "text": text }
        }),
    )
}

// ======================================================================= Messenger / Instagram

const PAGE_ID: &str = "106540352242922";
const IG_ID: &str = "17841405822304914";

fn meta_envelope(object: &str, own_id: &str, time: i64, event: Value) -> String {
    json!({ "object": object, "entry": [{ "id": own_id, "time": time, "messaging": [event] }] })
        .to_string()
}

/// `message_deliveries`: everything to `psid` before `watermark` (ms) was delivered; `mids` may be empty.
pub fn messenger_delivery(psid: &str, mids: &[&str], watermark: i64) -> String {
    let mut delivery = json!({ "watermark": watermark });
    if !mids.is_empty() {
        delivery["mids"] = json!(mids);
    }
    meta_envelope(
        "page",
        PAGE_ID,
        watermark + 200,
        json!({ "sender": { "id": psid }, "recipient": { "id": PAGE_ID }, "delivery": delivery }),
    )
}

/// `message_reads`: everything to `psid` up to `watermark` (ms) was read;
/// the event timestamp is `watermark + 210`.
pub fn messenger_read(psid: &str, watermark: i64) -> String {
    meta_envelope(
        "page",
        PAGE_ID,
        watermark + 250,
        json!({
            "sender": { "id": psid }, "recipient": { "id": PAGE_ID },
            "timestamp": watermark + 210,
            "read": { "watermark": watermark }
        }),
    )
}

/// A user text message (`ts_ms` in ms).
pub fn messenger_text(psid: &str, mid: &str, text: &str, ts_ms: i64) -> String {
    meta_envelope(
        "page",
        PAGE_ID,
        ts_ms + 100,
        json!({
            "sender": { "id": psid }, "recipient": { "id": PAGE_ID }, "timestamp": ts_ms,
            "message": { "mid": mid, "text": text }
        }),
    )
}

/// A quick-reply tap: a text message carrying `quick_reply.payload`.
pub fn messenger_quick_reply(
    psid: &str,
    mid: &str,
    text: &str,
    payload: &str,
    ts_ms: i64,
) -> String {
    meta_envelope(
        "page",
        PAGE_ID,
        ts_ms + 100,
        json!({
            "sender": { "id": psid }, "recipient": { "id": PAGE_ID }, "timestamp": ts_ms,
            "message": { "mid": mid, "text": text, "quick_reply": { "payload": payload } }
        }),
    )
}

/// A postback button click (`ts` as given: the documented example uses seconds).
pub fn messenger_postback(psid: &str, mid: &str, title: &str, payload: &str, ts: i64) -> String {
    meta_envelope(
        "page",
        PAGE_ID,
        ts,
        json!({
            "sender": { "id": psid }, "recipient": { "id": PAGE_ID }, "timestamp": ts,
            "postback": { "mid": mid, "title": title, "payload": payload }
        }),
    )
}

/// The echo of a message the page itself sent (`is_echo`).
pub fn messenger_echo(psid: &str, mid: &str, text: &str, ts_ms: i64) -> String {
    meta_envelope(
        "page",
        PAGE_ID,
        ts_ms + 100,
        json!({
            "sender": { "id": PAGE_ID }, "recipient": { "id": psid }, "timestamp": ts_ms,
            "message": { "is_echo": true, "app_id": 1517776481860111_i64, "metadata": "pushd", "mid": mid, "text": text }
        }),
    )
}

/// An Instagram DM.
pub fn instagram_text(igsid: &str, mid: &str, text: &str, ts_ms: i64) -> String {
    meta_envelope(
        "instagram",
        IG_ID,
        ts_ms + 100,
        json!({
            "sender": { "id": igsid }, "recipient": { "id": IG_ID }, "timestamp": ts_ms,
            "message": { "mid": mid, "text": text }
        }),
    )
}

/// An Instagram Icebreaker / generic-template button click.
pub fn instagram_postback(
    igsid: &str,
    mid: &str,
    title: &str,
    payload: &str,
    ts_ms: i64,
) -> String {
    meta_envelope(
        "instagram",
        IG_ID,
        ts_ms + 100,
        json!({
            "sender": { "id": igsid }, "recipient": { "id": IG_ID }, "timestamp": ts_ms,
            "postback": { "mid": mid, "title": title, "payload": payload }
        }),
    )
}

/// Instagram `messaging_seen`: `igsid` has seen our message `mid`
/// (shape `read{mid}`: from client libraries, not Meta's page).
pub fn instagram_seen(igsid: &str, mid: &str, ts_ms: i64) -> String {
    meta_envelope(
        "instagram",
        IG_ID,
        ts_ms,
        json!({
            "sender": { "id": igsid }, "recipient": { "id": IG_ID }, "timestamp": ts_ms,
            "read": { "mid": mid }
        }),
    )
}

// ======================================================================= Telegram

static NEXT_UPDATE_ID: AtomicI64 = AtomicI64::new(900_000_001);

fn telegram_user(id: i64) -> Value {
    json!({ "id": id, "is_bot": false, "first_name": "John", "language_code": "en" })
}

fn telegram_private_chat(id: i64) -> Value {
    json!({ "id": id, "type": "private", "first_name": "John" })
}

/// `update.message`: the user in private chat `chat_id` wrote `text`.
pub fn telegram_message(
    update_id: i64,
    chat_id: i64,
    message_id: i64,
    text: &str,
    date: i64,
) -> String {
    json!({
        "update_id": update_id,
        "message": {
            "message_id": message_id,
            "from": telegram_user(chat_id),
            "chat": telegram_private_chat(chat_id),
            "date": date,
            "text": text
        }
    })
    .to_string()
}

/// `update.callback_query`: an inline button with `data` tapped on our
/// message `message_id` in `chat_id`; each call gets a fresh `update_id`.
pub fn telegram_callback(chat_id: i64, message_id: i64, data: &str) -> String {
    telegram_callback_update(
        NEXT_UPDATE_ID.fetch_add(1, Ordering::Relaxed),
        chat_id,
        message_id,
        data,
    )
}

/// [`telegram_callback`] with a chosen `update_id`; callback query id "4382bfdwdsb323b2d9".
pub fn telegram_callback_update(
    update_id: i64,
    chat_id: i64,
    message_id: i64,
    data: &str,
) -> String {
    json!({
        "update_id": update_id,
        "callback_query": {
            "id": "4382bfdwdsb323b2d9",
            "from": telegram_user(chat_id),
            "message": {
                "message_id": message_id,
                "from": { "id": 987654321, "is_bot": true, "first_name": "Shop", "username": "shop_bot" },
                "chat": telegram_private_chat(chat_id),
                "date": 1718000000,
                "text": "Did this solve your problem?",
                "reply_markup": { "inline_keyboard": [[
                    { "text": "Yes", "callback_data": data },
                    { "text": "No", "callback_data": "resolved:no" }
                ]] }
            },
            "chat_instance": "-8239479237",
            "data": data
        }
    })
    .to_string()
}

/// `update.my_chat_member`: the user blocked the bot (new status `kicked`).
pub fn telegram_blocked(update_id: i64, chat_id: i64, date: i64) -> String {
    let bot =
        json!({ "id": 987654321, "is_bot": true, "first_name": "Shop", "username": "shop_bot" });
    json!({
        "update_id": update_id,
        "my_chat_member": {
            "chat": telegram_private_chat(chat_id),
            "from": telegram_user(chat_id),
            "date": date,
            "old_chat_member": { "user": bot, "status": "member" },
            "new_chat_member": { "user": bot, "status": "kicked", "until_date": 0 }
        }
    })
    .to_string()
}

// ======================================================================= Slack

/// An Events API `url_verification` body.
pub fn slack_url_verification(challenge: &str) -> String {
    json!({ "token": "Jhj5dZrVaK7ZwHHjRyZWjbDl", "challenge": challenge, "type": "url_verification" }).to_string()
}

/// An Events API `event_callback` carrying a DM `message` from `user`; `ts` like "1355517523.000005".
pub fn slack_message(event_id: &str, user: &str, channel: &str, text: &str, ts: &str) -> String {
    json!({
        "token": "Jhj5dZrVaK7ZwHHjRyZWjbDl",
        "team_id": "T1H9RESGL",
        "api_app_id": "A2H9RFS1A",
        "type": "event_callback",
        "event_id": event_id,
        "event_time": 1718000000,
        "event": { "type": "message", "channel": channel, "channel_type": "im", "user": user, "text": text, "ts": ts }
    })
    .to_string()
}

/// The form body (`payload=<json>`) Slack POSTs when `user` clicks the button
/// `action_id` (label: `action_id` capitalised) with `value` on our message
/// `<channel>:<message_ts>`. trigger_id "398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c",
/// action_ts "1548426417.840180".
pub fn slack_block_actions(
    user: &str,
    channel: &str,
    message_ts: &str,
    action_id: &str,
    value: &str,
) -> String {
    let mut label = action_id.to_string();
    if let Some(first) = label.get(0..1) {
        label.replace_range(0..1, &first.to_uppercase());
    }
    let payload = json!({
        "type": "block_actions",
        "team": { "id": "T1H9RESGL", "domain": "example" },
        "user": { "id": user, "username": "fred", "name": "fred", "team_id": "T1H9RESGL" },
        "api_app_id": "A2H9RFS1A",
        "token": "Jhj5dZrVaK7ZwHHjRyZWjbDl",
        "container": { "type": "message", "message_ts": message_ts, "channel_id": channel, "is_ephemeral": false },
        "trigger_id": "398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c",
        "channel": { "id": channel, "name": "directmessage" },
        "message": { "type": "message", "bot_id": "B19LU7CSY", "text": "New Paid Time Off request", "ts": message_ts },
        "response_url": "https://hooks.slack.com/actions/T1H9RESGL/1/abc",
        "actions": [{
            "type": "button",
            "action_id": action_id,
            "block_id": "pto_approval",
            "text": { "type": "plain_text", "text": label, "emoji": true },
            "value": value,
            "action_ts": "1548426417.840180"
        }]
    });
    slack_form(&payload.to_string())
}

/// Wraps an interactivity JSON payload as Slack's form body.
pub fn slack_form(payload_json: &str) -> String {
    serde_urlencoded::to_string([("payload", payload_json)]).expect("form-encodable")
}

/// The JSON inside a `payload=` form body.
pub fn form_payload(form: &str) -> String {
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(form).expect("form body");
    pairs
        .into_iter()
        .find(|(k, _)| k == "payload")
        .map(|(_, v)| v)
        .expect("a payload field")
}

// ======================================================================= WeChat

fn wechat_xml(from: &str, create_time: i64, rest: &str) -> String {
    format!(
        "<xml>\n  <ToUserName><![CDATA[gh_866835093fea]]></ToUserName>\n  <FromUserName><![CDATA[{from}]]></FromUserName>\n  <CreateTime>{create_time}</CreateTime>\n{rest}</xml>"
    )
}

/// A user text message (`MsgType=text`).
pub fn wechat_text(openid: &str, msg_id: &str, content: &str, create_time: i64) -> String {
    wechat_xml(
        openid,
        create_time,
        &format!(
            "  <MsgType><![CDATA[text]]></MsgType>\n  <Content><![CDATA[{content}]]></Content>\n  <MsgId>{msg_id}</MsgId>\n"
        ),
    )
}

/// A msgmenu tap: a text message with the clicked option's `bizmsgmenuid`.
pub fn wechat_menu_tap(
    openid: &str,
    msg_id: &str,
    content: &str,
    menu_id: &str,
    create_time: i64,
) -> String {
    wechat_xml(
        openid,
        create_time,
        &format!(
            "  <MsgType><![CDATA[text]]></MsgType>\n  <Content><![CDATA[{content}]]></Content>\n  <MsgId>{msg_id}</MsgId>\n  <bizmsgmenuid>{menu_id}</bizmsgmenuid>\n"
        ),
    )
}

/// Event `subscribe` (the user followed the account).
pub fn wechat_subscribe(openid: &str, create_time: i64) -> String {
    wechat_xml(
        openid,
        create_time,
        "  <MsgType><![CDATA[event]]></MsgType>\n  <Event><![CDATA[subscribe]]></Event>\n  <EventKey><![CDATA[]]></EventKey>\n",
    )
}

/// Event `unsubscribe` (the user unfollowed).
pub fn wechat_unsubscribe(openid: &str, create_time: i64) -> String {
    wechat_xml(
        openid,
        create_time,
        "  <MsgType><![CDATA[event]]></MsgType>\n  <Event><![CDATA[unsubscribe]]></Event>\n  <EventKey><![CDATA[]]></EventKey>\n",
    )
}

/// Event `TEMPLATESENDJOBFINISH` for template message `msg_id`;
/// `status` is `success`, `failed:user block`, `failed: system failed`, …
pub fn wechat_template_finish(
    openid: &str,
    msg_id: &str,
    status: &str,
    create_time: i64,
) -> String {
    wechat_xml(
        openid,
        create_time,
        &format!(
            "  <MsgType><![CDATA[event]]></MsgType>\n  <Event><![CDATA[TEMPLATESENDJOBFINISH]]></Event>\n  <MsgID>{msg_id}</MsgID>\n  <Status><![CDATA[{status}]]></Status>\n"
        ),
    )
}

// ======================================================================= custom / webchat

/// `{"type":"status",…}` for our message `message_id`.
pub fn custom_status(message_id: &str, status: &str, ts: i64) -> String {
    json!({ "type": "status", "message_id": message_id, "status": status, "timestamp": ts })
        .to_string()
}

/// A failed status with the platform's error code and message.
pub fn custom_failed(message_id: &str, code: &str, message: &str, ts: i64) -> String {
    json!({
        "type": "status", "message_id": message_id, "status": "failed", "timestamp": ts,
        "error": { "code": code, "message": message }
    })
    .to_string()
}

/// `{"type":"message",…}`: a reply (`text`) or click (`payload`), optionally on our message `context_id`.
pub fn custom_message(
    id: &str,
    user: &str,
    text: Option<&str>,
    payload: Option<&str>,
    context_id: Option<&str>,
    ts: i64,
) -> String {
    let mut v = json!({ "type": "message", "id": id, "user": user, "timestamp": ts });
    if let Some(t) = text {
        v["text"] = json!(t);
    }
    if let Some(p) = payload {
        v["payload"] = json!(p);
    }
    if let Some(c) = context_id {
        v["context_id"] = json!(c);
    }
    v.to_string()
}

/// `{"type":"unsubscribed",…}`.
pub fn custom_unsubscribed(user: &str, ts: i64) -> String {
    json!({ "type": "unsubscribed", "user": user, "timestamp": ts }).to_string()
}

/// `{"events":[…]}` of already-serialised events.
pub fn custom_batch(events: &[String]) -> String {
    let list: Vec<Value> = events
        .iter()
        .map(|e| serde_json::from_str(e).expect("each event is JSON"))
        .collect();
    json!({ "events": list }).to_string()
}
