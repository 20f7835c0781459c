//! Receipts through the real daemon's HTTP listener: each platform's real
//! webhook payloads change the right deliveries; signatures, duplicates,
//! out-of-order events and garbage are handled; nothing is written for a
//! refused request.

use crate::dispatch::{push_hello, wait_status};
use crate::e2e::{HELLO, import_members, runtime};
use crate::support::mocks::creds::*;
use crate::support::mocks::{EVERY_KIND, MockPlatform, start_each};
use crate::support::webhooks::*;
use crate::support::*;
use pushd::model::Platform;
use std::collections::BTreeMap;
use std::time::Duration;

/// POSTs (or GETs) to the daemon; returns (status, body).
pub fn http(
    rt: &tokio::runtime::Runtime,
    method: &str,
    url: &str,
    headers: &[(&str, String)],
    body: &str,
) -> (u16, String) {
    rt.block_on(async {
        let client = reqwest::Client::new();
        let mut req = client.request(method.parse().expect("method"), url);
        for (k, v) in headers {
            req = req.header(*k, v);
        }
        let resp = req.body(body.to_string()).send().await.expect("request");
        let status = resp.status().as_u16();
        (status, resp.text().await.unwrap_or_default())
    })
}

fn now_s() -> i64 {
    chrono::Utc::now().timestamp()
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// (delivery state, provider id, delivered, read, interacted, error class/code).
#[derive(Debug, PartialEq)]
struct Row {
    state: i64,
    provider: Option<String>,
    delivered: bool,
    read: bool,
    interacted: bool,
    class: Option<String>,
    code: Option<String>,
}

fn row(d: &TestDaemon, channel: &str, user: &str) -> Row {
    d.db()
        .query_row(
            "SELECT d.state, d.provider_message_id, d.delivered_at IS NOT NULL, d.read_at IS NOT NULL,
                    d.interacted_at IS NOT NULL, d.error_class, d.error_code
             FROM deliveries d JOIN members m ON m.id = d.member_id
             WHERE m.channel = ?1 AND m.channel_user_id = ?2 ORDER BY d.id DESC LIMIT 1",
            [channel, user],
            |r| {
                Ok(Row {
                    state: r.get(0)?,
                    provider: r.get(1)?,
                    delivered: r.get(2)?,
                    read: r.get(3)?,
                    interacted: r.get(4)?,
                    class: r.get(5)?,
                    code: r.get(6)?,
                })
            },
        )
        .unwrap_or_else(|e| panic!("{channel}:{user}: {e}"))
}

struct Setup {
    rt: tokio::runtime::Runtime,
    d: TestDaemon,
    base: String,
    _mocks: BTreeMap<&'static str, MockPlatform>,
}

/// One member per channel (two on WhatsApp), a completed push to all.
fn setup() -> Setup {
    let rt = runtime();
    // Web chat speaks the custom platform's webhooks: not repeated here.
    let kinds: Vec<_> = EVERY_KIND
        .into_iter()
        .filter(|(_, p)| *p != Platform::Webchat)
        .collect();
    let (channels, mocks) = start_each(&rt, &kinds);
    let cfg = base_config(&format!("[dispatch]\nrate_per_minute = 0\n{channels}"));
    let mut d = TestDaemon::prepare(&cfg);
    d.write_script("10.lua", HELLO);
    d.spawn();
    let members: Vec<(String, String)> = [
        ("wa", "16505551234"),
        ("wa", "16505550000"),
        ("fb", "5001"),
        ("ig", "6001"),
        ("tg", "7001"),
        ("sl", "D0PNCRP9N"),
        ("wx", "ogdotwSc_MmEEsJs9-ABZ1QL_4r4"),
        ("hook", "u1"),
    ]
    .iter()
    .map(|(a, b)| (a.to_string(), b.to_string()))
    .collect();
    import_members(&d, &members);
    push_hello(&d, "w", &[]);
    wait_status(&d, "w", "completed", Duration::from_secs(60));
    let base = d.http_base();
    Setup {
        rt,
        d,
        base,
        _mocks: mocks,
    }
}

fn events(d: &TestDaemon) -> i64 {
    count(&d.db(), "SELECT count(*) FROM events")
}

#[test]
fn every_platforms_webhooks_update_the_right_deliveries() {
    let s = setup();
    let (d, rt, base) = (&s.d, &s.rt, &s.base);
    let post = |channel: &str, headers: Vec<(&str, String)>, query: &str, body: &str| {
        let url = format!("{base}/webhooks/{channel}{query}");
        let (status, text) = http(rt, "POST", &url, &headers, body);
        assert_eq!(status, 200, "{channel}: {text}");
        text
    };

    // WhatsApp: delivered then read; a button reply on our message; an async failure.
    let wa = row(d, "wa", "16505551234").provider.unwrap();
    for status in ["delivered", "read"] {
        let body = whatsapp_status(&wa, status, now_s());
        post("wa", meta_headers(APP_SECRET, body.as_bytes()), "", &body);
    }
    let body = whatsapp_button_reply("16505551234", "wamid.in1", &wa, "YES", "Yes", now_s());
    post("wa", meta_headers(APP_SECRET, body.as_bytes()), "", &body);
    let r = row(d, "wa", "16505551234");
    assert!(
        r.delivered && r.read && r.interacted && r.state == 2,
        "{r:?}"
    );
    let wa2 = row(d, "wa", "16505550000").provider.unwrap();
    let body = whatsapp_failed(
        &wa2,
        "16505550000",
        131047,
        "Re-engagement message",
        "more than 24 hours",
        now_s(),
    );
    post("wa", meta_headers(APP_SECRET, body.as_bytes()), "", &body);
    let r = row(d, "wa", "16505550000");
    assert_eq!(
        (r.state, r.class.as_deref(), r.code.as_deref()),
        (3, Some("outside_window"), Some("131047")),
        "{r:?}"
    );

    // Messenger: delivery + read watermarks, then a postback click.
    let wm = now_ms() + 1000;
    let body = messenger_delivery("5001", &[], wm);
    post("fb", meta_headers(APP_SECRET, body.as_bytes()), "", &body);
    assert!(row(d, "fb", "5001").delivered);
    assert!(!row(d, "fb", "5001").read);
    let body = messenger_read("5001", wm);
    post("fb", meta_headers(APP_SECRET, body.as_bytes()), "", &body);
    let body = messenger_postback("5001", "m_click1", "Yes", "YES", now_s());
    post("fb", meta_headers(APP_SECRET, body.as_bytes()), "", &body);
    let r = row(d, "fb", "5001");
    assert!(r.delivered && r.read && r.interacted, "{r:?}");

    // Instagram: seen (no delivery receipts on Instagram).
    let ig = row(d, "ig", "6001").provider.unwrap();
    let body = instagram_seen("6001", &ig, now_ms());
    post("ig", meta_headers(APP_SECRET, body.as_bytes()), "", &body);
    let r = row(d, "ig", "6001");
    assert!(r.read && !r.interacted, "{r:?}");

    // Telegram: no read receipts; an inline-button click counts as interaction.
    let tg = row(d, "tg", "7001").provider.unwrap();
    let (chat, msg) = tg.split_once(':').expect("chat:message provider id");
    let body = telegram_callback(chat.parse().unwrap(), msg.parse().unwrap(), "YES");
    post("tg", telegram_headers(TG_SECRET_TOKEN), "", &body);
    let r = row(d, "tg", "7001");
    assert!(r.interacted && !r.read, "{r:?}");

    // Slack: a block_actions click on our message.
    let sl = row(d, "sl", "D0PNCRP9N").provider.unwrap();
    let (channel, ts) = sl.split_once(':').expect("channel:ts provider id");
    let body = slack_block_actions("U2147483697", channel, ts, "yes", "YES");
    post(
        "sl",
        slack_headers(SLACK_SIGNING_SECRET, now_s(), body.as_bytes()),
        "",
        &body,
    );
    assert!(row(d, "sl", "D0PNCRP9N").interacted);

    // WeChat: a text reply (no read receipts) counts for the latest delivery.
    let body = wechat_text(
        "ogdotwSc_MmEEsJs9-ABZ1QL_4r4",
        "6349323426230210995",
        "你好",
        now_s(),
    );
    let query = format!("?{}", wechat_query(VERIFY_TOKEN, now_s(), "nonce1"));
    let reply = post(
        "wx",
        vec![("content-type", "text/xml".into())],
        &query,
        &body,
    );
    assert_eq!(reply, "success");
    assert!(row(d, "wx", "ogdotwSc_MmEEsJs9-ABZ1QL_4r4").interacted);

    // Custom: read, then a click, in one signed batch.
    let hook = row(d, "hook", "u1").provider.unwrap();
    let body = custom_batch(&[
        custom_status(&hook, "read", now_s()),
        custom_message("evt-1", "u1", None, Some("YES"), Some(&hook), now_s()),
    ]);
    post(
        "hook",
        standard_webhook_headers(WEBHOOK_SECRET, "wh_1", now_s(), body.as_bytes()),
        "",
        &body,
    );
    let r = row(d, "hook", "u1");
    assert!(r.read && r.interacted && r.delivered, "{r:?}");

    // The report reflects all of it.
    let rep = d.cli_json(&["report", "w"])["data"].clone();
    assert_eq!(rep["sent_fail"], 1, "{rep}");
    assert_eq!(rep["read_and_interacted"], 3, "{rep}"); // wa, fb, hook
    assert_eq!(rep["read_only"], 1, "{rep}"); // ig
    assert_eq!(rep["interacted_only"], 3, "{rep}"); // tg, sl, wx
    // And the message log shows inbound events linked to the push.
    let log = d.cli_json(&["events", "--push", "w", "--limit", "100"]);
    assert!(
        log["data"]["events"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["direction"] == "in"),
        "{log}"
    );
}

#[test]
fn signatures_duplicates_order_and_garbage() {
    let s = setup();
    let (d, rt, base) = (&s.d, &s.rt, &s.base);
    let url = |ch: &str| format!("{base}/webhooks/{ch}");
    let wa = row(d, "wa", "16505551234").provider.unwrap();
    let body = whatsapp_status(&wa, "read", now_s());
    let before = events(d);

    // Missing, wrong and malformed signatures: 401, nothing written.
    for headers in [
        vec![],
        meta_headers("not-the-app-secret", body.as_bytes()),
        vec![("x-hub-signature-256", "sha256=zz".to_string())],
    ] {
        let (status, _) = http(rt, "POST", &url("wa"), &headers, &body);
        assert_eq!(status, 401);
    }
    // A stale Slack timestamp (replay) and a stale Standard Webhooks one: 401.
    let sbody = slack_message("Ev1", "U1", "D0PNCRP9N", "hi", "1.0");
    let (status, _) = http(
        rt,
        "POST",
        &url("sl"),
        &slack_headers(SLACK_SIGNING_SECRET, now_s() - 600, sbody.as_bytes()),
        &sbody,
    );
    assert_eq!(status, 401);
    let cbody = custom_status("x", "read", now_s());
    let (status, _) = http(
        rt,
        "POST",
        &url("hook"),
        &standard_webhook_headers(WEBHOOK_SECRET, "wh", now_s() - 600, cbody.as_bytes()),
        &cbody,
    );
    assert_eq!(status, 401);
    let (status, _) = http(
        rt,
        "POST",
        &url("tg"),
        &telegram_headers("wrong"),
        &telegram_message(1, 7001, 1, "hi", now_s()),
    );
    assert_eq!(status, 401);
    // Garbage that is correctly signed: 400; unknown channel: 404; wrong method: 405.
    for garbage in [
        "{not json",
        "[]",
        "{\"object\":\"whatsapp_business_account\",\"entry\":[{\"changes\":[{\"field\":\"messages\",\"value\":{\"statuses\":[{}]}}]}]}",
    ] {
        let (status, _) = http(
            rt,
            "POST",
            &url("wa"),
            &meta_headers(APP_SECRET, garbage.as_bytes()),
            garbage,
        );
        assert_eq!(status, 400, "{garbage}");
    }
    let (status, _) = http(rt, "POST", &url("nope"), &[], "{}");
    assert_eq!(status, 404);
    let (status, _) = http(rt, "DELETE", &url("wa"), &[], "");
    assert_eq!(status, 405);
    // An oversized body is refused before anything else.
    let huge = "x".repeat(2 * 1024 * 1024);
    let (status, _) = http(
        rt,
        "POST",
        &url("wa"),
        &meta_headers(APP_SECRET, huge.as_bytes()),
        &huge,
    );
    assert_eq!(status, 413);
    assert_eq!(events(d), before, "a refused webhook wrote something");
    assert!(!row(d, "wa", "16505551234").read);

    // Read before delivered (out of order), then a duplicate of each: applied once.
    let read = whatsapp_status(&wa, "read", now_s());
    let delivered = whatsapp_status(&wa, "delivered", now_s());
    for b in [&read, &delivered, &read, &delivered] {
        let (status, _) = http(
            rt,
            "POST",
            &url("wa"),
            &meta_headers(APP_SECRET, b.as_bytes()),
            b,
        );
        assert_eq!(status, 200);
    }
    let r = row(d, "wa", "16505551234");
    assert!(r.read && r.delivered && r.state == 2, "{r:?}");
    assert_eq!(
        events(d),
        before + 2,
        "duplicates must not be recorded twice"
    );
    // A late async failure never turns a read message back into a failure.
    let failed = whatsapp_failed(
        &wa,
        "16505551234",
        131026,
        "Message undeliverable",
        "x",
        now_s(),
    );
    http(
        rt,
        "POST",
        &url("wa"),
        &meta_headers(APP_SECRET, failed.as_bytes()),
        &failed,
    );
    assert_eq!(row(d, "wa", "16505551234").state, 2);
    let rep = d.cli_json(&["report", "w"])["data"].clone();
    assert_eq!(rep["read_only"], 1, "{rep}");

    // Handshakes: Meta GET hub.challenge and Slack url_verification.
    let (status, text) = http(
        rt,
        "GET",
        &format!(
            "{}?{}",
            url("wa"),
            meta_verify_query(VERIFY_TOKEN, "1158201444")
        ),
        &[],
        "",
    );
    assert_eq!((status, text.as_str()), (200, "1158201444"));
    let (status, _) = http(
        rt,
        "GET",
        &format!("{}?{}", url("wa"), meta_verify_query("wrong", "1")),
        &[],
        "",
    );
    assert_eq!(status, 403);
    let v = slack_url_verification("3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P");
    let (status, text) = http(
        rt,
        "POST",
        &url("sl"),
        &slack_headers(SLACK_SIGNING_SECRET, now_s(), v.as_bytes()),
        &v,
    );
    assert_eq!(status, 200);
    assert!(text.contains("3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P"));
    // Health and metrics.
    let (status, text) = http(rt, "GET", &format!("{base}/healthz"), &[], "");
    assert_eq!((status, text.trim()), (200, "ok"));
    let (_, metrics) = http(rt, "GET", &format!("{base}/metrics"), &[], "");
    for needle in [
        "pushd_sends_total{channel=\"wa\",outcome=\"sent\"}",
        "pushd_webhook_rejected_total",
        "pushd_webhook_events_total",
        "pushd_pushes{status=\"completed\"} 1",
        "pushd_reloads_total",
    ] {
        assert!(
            metrics.contains(needle),
            "{needle} missing from:\n{metrics}"
        );
    }
}

#[test]
fn inbound_messages_update_members() {
    let s = setup();
    let (d, rt, base) = (&s.d, &s.rt, &s.base);
    let post_custom = |body: String| {
        let (status, text) = http(
            rt,
            "POST",
            &format!("{base}/webhooks/hook"),
            &standard_webhook_headers(
                WEBHOOK_SECRET,
                &format!("wh_{}", now_ms()),
                now_s(),
                body.as_bytes(),
            ),
            &body,
        );
        assert_eq!(status, 200, "{text}");
    };
    // A new user writing in becomes a member (a new subscriber).
    post_custom(custom_message(
        "in-1",
        "newbie",
        Some("hello"),
        None,
        None,
        now_s(),
    ));
    let (sub, last): (bool, Option<i64>) = d
        .db()
        .query_row("SELECT subscribed, last_interaction_at FROM members WHERE channel = 'hook' AND channel_user_id = 'newbie'", [], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap();
    assert!(sub && last.is_some());
    // STOP unsubscribes; START subscribes again.
    post_custom(custom_message(
        "in-2",
        "u1",
        Some("stop"),
        None,
        None,
        now_s(),
    ));
    assert_eq!(
        count(
            &d.db(),
            "SELECT subscribed FROM members WHERE channel_user_id = 'u1'"
        ),
        0
    );
    post_custom(custom_message(
        "in-3",
        "u1",
        Some("START"),
        None,
        None,
        now_s(),
    ));
    assert_eq!(
        count(
            &d.db(),
            "SELECT subscribed FROM members WHERE channel_user_id = 'u1'"
        ),
        1
    );
    // Telegram's "kicked" (the user blocked the bot) unsubscribes.
    let body = telegram_blocked(5, 7001, now_s());
    let (status, _) = http(
        rt,
        "POST",
        &format!("{base}/webhooks/tg"),
        &telegram_headers(TG_SECRET_TOKEN),
        &body,
    );
    assert_eq!(status, 200);
    assert_eq!(
        count(
            &d.db(),
            "SELECT subscribed FROM members WHERE channel_user_id = '7001'"
        ),
        0
    );
    // WhatsApp inbound text refreshes the service window.
    let body = whatsapp_text("16505550000", "Ann", "wamid.in9", "hi", now_s());
    http(
        rt,
        "POST",
        &format!("{base}/webhooks/wa"),
        &meta_headers(APP_SECRET, body.as_bytes()),
        &body,
    );
    let last: Option<i64> = d
        .db()
        .query_row(
            "SELECT last_interaction_at FROM members WHERE channel_user_id = '16505550000'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert!(last.unwrap() >= (now_s() - 60) * 1000);
}

/// Webhooks arriving together are applied together (one store job per
/// batch): every valid one is answered 200 and applied once, concurrent
/// duplicates of one status become one event, and a forged one among them
/// is refused without touching the rest.
#[test]
fn concurrent_webhooks_are_each_applied_once() {
    let s = setup();
    let (d, rt, base) = (&s.d, &s.rt, &s.base);
    let url = format!("{base}/webhooks/wa");
    let first = row(d, "wa", "16505551234").provider.unwrap();
    let second = row(d, "wa", "16505550000").provider.unwrap();
    let delivered = whatsapp_status_to("16505551234", &first, "delivered", now_s());
    let read = whatsapp_status_to("16505550000", &second, "read", now_s());
    // Forged: if it were applied, the first message would read as read.
    let forged = whatsapp_status_to("16505551234", &first, "read", now_s());
    let before = events(d);
    let mut requests = Vec::new();
    for _ in 0..20 {
        for body in [&delivered, &read] {
            requests.push((body.clone(), meta_headers(APP_SECRET, body.as_bytes()), 200));
        }
        requests.push((
            forged.clone(),
            meta_headers("not-the-app-secret", forged.as_bytes()),
            401,
        ));
    }
    let statuses = rt.block_on(async {
        let client = reqwest::Client::new();
        futures::future::join_all(requests.iter().map(|(body, headers, _)| {
            let mut req = client.post(&url).body(body.clone());
            for (k, v) in headers {
                req = req.header(*k, v);
            }
            async move { req.send().await.expect("request").status().as_u16() }
        }))
        .await
    });
    let expected: Vec<u16> = requests.iter().map(|(.., status)| *status).collect();
    assert_eq!(statuses, expected);
    assert_eq!(events(d), before + 2, "one event per distinct status");
    let (a, b) = (row(d, "wa", "16505551234"), row(d, "wa", "16505550000"));
    assert!(a.delivered && !a.read, "{a:?}");
    assert!(b.delivered && b.read, "{b:?}");
}

/// WeChat's EncodingAESKey and app id of the safe-mode channel below.
const WX_AES_KEY: &str = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG";
const WX_SAFE_APP_ID: &str = "wx2c2769f8efd9abc2";

/// WeChat signs a plaintext callback's URL, never its body: through the real
/// listener, a signed URL works once (a replayed nonce with a forged body is
/// refused), an old one not at all, and a safe-mode channel takes only
/// bodies that `msg_signature` covers, encrypted for its own app id.
/// Nothing a refused request carries is written.
#[test]
fn wechat_signed_urls_work_once_and_safe_mode_checks_the_body() {
    let rt = runtime();
    let cfg = base_config(&format!(
        "[channels.wx]\nkind = \"wechat\"\napp_id = \"{WX_APP_ID}\"\napp_secret = \"{WX_APP_SECRET}\"\nverify_token = \"{VERIFY_TOKEN}\"\n\
         [channels.wxs]\nkind = \"wechat\"\napp_id = \"{WX_SAFE_APP_ID}\"\napp_secret = \"{WX_APP_SECRET}\"\nverify_token = \"{VERIFY_TOKEN}\"\n\
         encoding_aes_key = \"{WX_AES_KEY}\"\nencryption = \"safe\"\n"
    ));
    let d = TestDaemon::start(&cfg);
    let members: Vec<(String, String)> = ["wx", "wxs"]
        .iter()
        .flat_map(|ch| ["oAlice", "oVictim"].map(|u| (ch.to_string(), u.to_string())))
        .collect();
    import_members(&d, &members);
    let url = |ch: &str, query: &str| format!("{}/webhooks/{ch}?{query}", d.http_base());
    let subscribed = |ch: &str, user: &str| {
        d.db()
            .query_row(
                "SELECT subscribed FROM members WHERE channel = ?1 AND channel_user_id = ?2",
                [ch, user],
                |r| r.get::<_, bool>(0),
            )
            .unwrap()
    };
    let xml = [("content-type", "text/xml".to_string())];

    // A genuine plaintext callback: Alice writes "hi".
    let ts = now_s();
    let signed = wechat_query(VERIFY_TOKEN, ts, "nonce-1");
    let hi = wechat_text("oAlice", "900001", "hi", ts);
    let (status, text) = http(&rt, "POST", &url("wx", &signed), &xml, &hi);
    assert_eq!((status, text.as_str()), (200, "success"));
    let before = events(&d);

    // The same signed URL, as a proxy log shows it, with a forged body.
    let forged = wechat_unsubscribe("oVictim", ts);
    let (status, text) = http(&rt, "POST", &url("wx", &signed), &xml, &forged);
    assert_eq!(status, 401, "{text}");
    assert!(text.contains("already received"), "{text}");
    // A correctly signed URL from ten minutes ago.
    let old = wechat_query(VERIFY_TOKEN, ts - 600, "nonce-2");
    let (status, text) = http(&rt, "POST", &url("wx", &old), &xml, &forged);
    assert_eq!(status, 401, "{text}");
    assert!(text.contains("timestamp"), "{text}");
    assert!(
        subscribed("wx", "oVictim"),
        "a refused callback unsubscribed the member"
    );
    assert_eq!(events(&d), before, "a refused callback wrote an event");

    // Safe mode: an encrypted STOP from Alice is applied.
    let stop = wechat_encrypt(
        WX_AES_KEY,
        WX_SAFE_APP_ID,
        &wechat_text("oAlice", "900002", "STOP", ts),
    );
    let q = wechat_safe_query(VERIFY_TOKEN, ts, "nonce-3", "oAlice", &stop);
    let (status, text) = http(&rt, "POST", &url("wxs", &q), &xml, &wechat_safe_body(&stop));
    assert_eq!((status, text.as_str()), (200, "success"));
    assert!(!subscribed("wxs", "oAlice"));
    let before = events(&d);
    // Tampered: another encrypted body under a fresh URL that signed the first.
    let victim = wechat_encrypt(
        WX_AES_KEY,
        WX_SAFE_APP_ID,
        &wechat_unsubscribe("oVictim", ts),
    );
    let q = wechat_safe_query(VERIFY_TOKEN, ts, "nonce-4", "oVictim", &stop);
    let (status, text) = http(
        &rt,
        "POST",
        &url("wxs", &q),
        &xml,
        &wechat_safe_body(&victim),
    );
    assert_eq!(status, 401, "{text}");
    assert!(text.contains("msg_signature"), "{text}");
    // Encrypted for another account, correctly signed.
    let other = wechat_encrypt(WX_AES_KEY, WX_APP_ID, &wechat_unsubscribe("oVictim", ts));
    let q = wechat_safe_query(VERIFY_TOKEN, ts, "nonce-5", "oVictim", &other);
    let (status, text) = http(
        &rt,
        "POST",
        &url("wxs", &q),
        &xml,
        &wechat_safe_body(&other),
    );
    assert_eq!(status, 401, "{text}");
    assert!(
        text.contains(WX_APP_ID) && text.contains("app id"),
        "{text}"
    );
    // Plaintext, correctly signed: the channel requires safe mode.
    let q = wechat_query(VERIFY_TOKEN, ts, "nonce-6");
    let (status, text) = http(&rt, "POST", &url("wxs", &q), &xml, &forged);
    assert_eq!(status, 401, "{text}");
    assert!(text.contains("encryption = \"safe\""), "{text}");
    // The encrypted STOP replayed as is.
    let q = wechat_safe_query(VERIFY_TOKEN, ts, "nonce-3", "oAlice", &stop);
    let (status, _) = http(&rt, "POST", &url("wxs", &q), &xml, &wechat_safe_body(&stop));
    assert_eq!(status, 401);
    assert!(
        subscribed("wxs", "oVictim"),
        "a refused callback unsubscribed the member"
    );
    assert_eq!(events(&d), before, "a refused callback wrote an event");
    assert!(
        !d.log().contains(WX_AES_KEY),
        "the EncodingAESKey reached the log"
    );
}
