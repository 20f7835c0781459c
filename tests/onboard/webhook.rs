//! `pushd channel webhook NAME [--url BASE] [--delete]`: the URL and what
//! to paste on every platform, Telegram's setWebhook/deleteWebhook, where
//! the public base comes from, refusals, and secrets kept out of the audit
//! trail and the log.

use super::*;
use crate::support::mocks::creds;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::process::Command;

const BASE: &str = "https://pushd.example.com";

/// `channel webhook NAME --url https://pushd.example.com/` as JSON data.
fn webhook(o: &Onboard, name: &str) -> Value {
    let (ok, v) = o.json(&[
        "channel",
        "webhook",
        name,
        "--url",
        "https://pushd.example.com/",
    ]);
    assert!(ok, "{v}");
    let d = v["data"].clone();
    assert_eq!(d["url"], format!("{BASE}/webhooks/{name}"), "{d}");
    assert_eq!(d["base_from"], "--url", "{d}");
    assert_eq!(d["warnings"], serde_json::json!([]), "{d}");
    d
}

/// `(label, value)` of each field to paste.
fn fields(d: &Value) -> Vec<(String, String)> {
    d["setup"]["fields"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|f| {
            (
                f["label"].as_str().unwrap_or_default().to_string(),
                f["value"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

fn events(d: &Value) -> Vec<String> {
    d["setup"]["events"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| e.as_str().unwrap_or_default().to_string())
        .collect()
}

fn steps(d: &Value) -> String {
    d["setup"]["steps"].to_string()
}

fn pair(label: &str, value: &str) -> (String, String) {
    (label.to_string(), value.to_string())
}

#[test]
fn webhook_shows_what_to_paste_on_each_platform() {
    let o = Onboard::start_with(
        &[
            Ch("wa", Platform::Whatsapp, ""),
            Ch("fb", Platform::Messenger, ""),
            Ch("ig", Platform::Instagram, ""),
            Ch("sl", Platform::Slack, ""),
            Ch("wx", Platform::Wechat, ""),
            Ch("web", Platform::Webchat, ""),
            Ch("hook", Platform::Custom, ""),
        ],
        "",
        "[channels.sim]\nkind = \"simulator\"\n",
    );
    let url = |n: &str| format!("{BASE}/webhooks/{n}");

    let d = webhook(&o, "wa");
    assert_eq!(
        fields(&d),
        vec![
            pair("Callback URL", &url("wa")),
            pair("Verify token", creds::VERIFY_TOKEN)
        ]
    );
    assert_eq!(events(&d), vec!["messages"]);
    assert!(
        steps(&d).contains("WhatsApp → Configuration → Webhook"),
        "{d}"
    );
    assert!(
        steps(&d).contains("`app_secret` of [channels.wa] (set)"),
        "{d}"
    );

    let d = webhook(&o, "fb");
    assert_eq!(fields(&d)[1], pair("Verify token", creds::VERIFY_TOKEN));
    assert_eq!(
        events(&d),
        vec![
            "messages",
            "message_deliveries",
            "message_reads",
            "messaging_postbacks"
        ]
    );
    let d = webhook(&o, "ig");
    assert_eq!(
        events(&d),
        vec!["messages", "messaging_postbacks", "messaging_seen"]
    );
    assert!(steps(&d).contains("Instagram settings → Webhooks"), "{d}");

    let d = webhook(&o, "sl");
    assert_eq!(fields(&d), vec![pair("Request URL", &url("sl"))]);
    assert_eq!(
        events(&d),
        vec![
            "message.im (Event Subscriptions)",
            "block_actions (Interactivity)"
        ]
    );
    assert!(steps(&d).contains("Interactivity & Shortcuts"), "{d}");

    let d = webhook(&o, "wx");
    assert_eq!(
        fields(&d),
        vec![
            pair("URL (服务器地址)", &url("wx")),
            pair("Token (令牌)", creds::VERIFY_TOKEN)
        ]
    );
    assert!(steps(&d).contains("明文模式 (plaintext)"), "{d}");
    assert!(steps(&d).contains("EncodingAESKey"), "{d}");

    for name in ["web", "hook"] {
        let d = webhook(&o, name);
        assert_eq!(
            fields(&d),
            vec![
                pair("Webhook URL", &url(name)),
                pair("Signing secret", creds::WEBHOOK_SECRET)
            ]
        );
        assert_eq!(events(&d), vec!["status", "message", "unsubscribed"]);
        assert!(
            steps(&d).contains("webhook-signature = v1,<base64 HMAC-SHA256"),
            "{d}"
        );
    }
    let d = webhook(&o, "sim");
    assert!(steps(&d).contains("Nothing to set up"), "{d}");
    assert!(fields(&d).is_empty());

    for (name, mock) in &o.mocks {
        assert!(
            mock.requests().is_empty(),
            "{name}: printing the setup calls no platform"
        );
    }
    let out = o.text(&["channel", "webhook", "wa", "--url", BASE]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.contains(&format!("webhook  {BASE}/webhooks/wa  (base from --url)")),
        "{text}"
    );
    assert!(
        text.contains(&format!("Verify token: {}", creds::VERIFY_TOKEN)),
        "{text}"
    );
    assert!(text.contains("Subscribe to: messages\n"), "{text}");
    assert!(text.contains("  1. Meta app dashboard"), "{text}");
}

#[test]
fn telegram_set_webhook_carries_the_url_the_secret_token_and_the_updates() {
    let o = Onboard::start(&[Ch("tg", Platform::Telegram, "")], "");
    let (ok, v) = o.json(&["channel", "webhook", "tg", "--url", BASE]);
    assert!(ok, "{v}");
    let calls = o.mock("tg").calls_to("/setWebhook");
    assert_eq!(calls.len(), 1, "{calls:?}");
    assert_eq!(
        calls[0].body(),
        &serde_json::json!({
            "url": format!("{BASE}/webhooks/tg"),
            "secret_token": creds::TG_SECRET_TOKEN,
            "allowed_updates": ["message", "callback_query", "my_chat_member"],
        })
    );
    let r = &v["data"]["registration"];
    assert_eq!(r["ok"], true, "{v}");
    assert_eq!(r["answer"], "Webhook was set", "{v}");
    assert!(
        !r["call"]
            .as_str()
            .unwrap_or_default()
            .contains(creds::TG_SECRET_TOKEN),
        "the call shown names no secret: {v}"
    );
    assert!(
        fields(&v["data"]).is_empty(),
        "nothing to paste for Telegram: {v}"
    );

    let out = o.text(&["channel", "webhook", "tg", "--delete"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("ok: Webhook was deleted"),
        "{}",
        stdout(&out)
    );
    assert_eq!(o.mock("tg").calls_to("/deleteWebhook").len(), 1);

    // Telegram delivers only to https: a plain URL is refused before any call.
    for args in [
        vec!["channel", "webhook", "tg"],
        vec![
            "channel",
            "webhook",
            "tg",
            "--url",
            "http://pushd.example.com",
        ],
    ] {
        let (ok, v) = o.json(&args);
        assert!(!ok);
        assert_eq!(v["error"]["code"], "invalid_args", "{v}");
        assert!(
            v["error"]["message"]
                .as_str()
                .unwrap_or_default()
                .starts_with("Telegram delivers webhooks only to https URLs"),
            "{v}"
        );
    }
    assert_eq!(o.mock("tg").calls_to("/setWebhook").len(), 1);
}

#[test]
fn the_public_base_comes_from_the_flag_then_public_url_then_the_listen_address() {
    let o = Onboard::start(
        &[Ch("wa", Platform::Whatsapp, "")],
        "public_url = \"https://hooks.example.com/pushd/\"",
    );
    let (ok, v) = o.json(&["channel", "webhook", "wa"]);
    assert!(ok, "{v}");
    assert_eq!(
        v["data"]["url"], "https://hooks.example.com/pushd/webhooks/wa",
        "{v}"
    );
    assert_eq!(v["data"]["base_from"], "http.public_url", "{v}");
    let (_, v) = o.json(&[
        "channel",
        "webhook",
        "wa",
        "--url",
        "https://other.example.com",
    ]);
    assert_eq!(
        v["data"]["url"], "https://other.example.com/webhooks/wa",
        "{v}"
    );
    let (_, v) = o.json(&[
        "channel",
        "webhook",
        "wa",
        "--url",
        "http://other.example.com",
    ]);
    assert!(
        v["data"]["warnings"][0]
            .as_str()
            .unwrap_or_default()
            .contains("is plain http"),
        "{v}"
    );

    let bare = Onboard::start(&[Ch("wa", Platform::Whatsapp, "")], "");
    let (ok, v) = bare.json(&["channel", "webhook", "wa"]);
    assert!(ok, "{v}");
    assert_eq!(
        v["data"]["url"],
        format!("{}/webhooks/wa", bare.d.http_base()),
        "{v}"
    );
    assert_eq!(v["data"]["base_from"], "http.listen", "{v}");
    assert!(
        v["data"]["warnings"][0]
            .as_str()
            .unwrap_or_default()
            .contains("platforms cannot reach"),
        "{v}"
    );

    // A bad public_url is a config error naming the key.
    let d = TestDaemon::prepare(&base_config("").replace(
        "listen = \"127.0.0.1:0\"\n",
        "listen = \"127.0.0.1:0\"\npublic_url = \"hooks.example.com\"\n",
    ));
    let out = d.cli(&["check"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("http.public_url"), "{}", stderr(&out));
}

#[test]
fn bad_webhook_input_is_refused_and_changes_nothing() {
    let o = Onboard::start(
        &[
            Ch("wa", Platform::Whatsapp, ""),
            Ch("tg", Platform::Telegram, ""),
        ],
        "",
    );
    for (args, code, needle) in [
        (
            vec!["nope"],
            "not_found",
            "no channel \"nope\" is configured (channels: tg, wa)",
        ),
        (
            vec!["wa", "--url", "ftp://x.example.com"],
            "invalid_args",
            "--url: \"ftp://x.example.com\" is not an http(s) URL",
        ),
        (
            vec!["wa", "--url", "https://x.example.com/?k=1"],
            "invalid_args",
            "has a query or fragment",
        ),
        (vec!["wa", "--delete"], "invalid_args", "only Telegram has"),
        (
            vec!["tg", "--delete", "--url", BASE],
            "invalid_args",
            "takes no --url",
        ),
    ] {
        let mut all = vec!["channel", "webhook"];
        all.extend(args.iter());
        let (ok, v) = o.json(&all);
        assert!(!ok, "{args:?}: {v}");
        assert_eq!(v["error"]["code"], code, "{args:?}: {v}");
        assert!(
            v["error"]["message"]
                .as_str()
                .unwrap_or_default()
                .contains(needle),
            "{args:?}: {v}"
        );
    }
    for (name, mock) in &o.mocks {
        assert!(mock.requests().is_empty(), "{name} was called on bad input");
    }
}

#[test]
fn secrets_shown_to_the_admin_never_reach_the_audit_trail_or_the_log() {
    let o = Onboard::start(
        &[
            Ch("wa", Platform::Whatsapp, ""),
            Ch("tg", Platform::Telegram, ""),
            Ch("wx", Platform::Wechat, ""),
            Ch("hook", Platform::Custom, ""),
        ],
        "",
    );
    let mut shown = String::new();
    for name in ["wa", "tg", "wx", "hook"] {
        for args in [
            vec!["channel", "webhook", name, "--url", BASE],
            vec!["channel", "test", name, "--to", "10001"],
        ] {
            let out = o.text(&args);
            assert!(out.status.success(), "{args:?}: {}", stderr(&out));
            shown.push_str(&stdout(&out));
        }
    }
    // The admin who asked sees the secrets to paste.
    for s in [creds::VERIFY_TOKEN, creds::WEBHOOK_SECRET] {
        assert!(shown.contains(s), "{s} was not shown: {shown}");
    }
    // The audit trail records what was done, without them.
    let audit = o.d.cli(&["audit", "--action", "channel"]);
    let audit = stdout(&audit);
    let db = [
        std::fs::read(&o.d.db_path).unwrap_or_default(),
        std::fs::read(o.d.db_path.with_extension("db-wal")).unwrap_or_default(),
    ]
    .concat();
    let db = String::from_utf8_lossy(&db);
    let log = o.d.log();
    for mock in o.mocks.values() {
        for s in mock.secrets() {
            assert!(
                !audit.contains(s),
                "secret {s:?} in `pushd audit`:\n{audit}"
            );
            assert!(!db.contains(s), "secret {s:?} in the database file");
            assert!(!log.contains(s), "secret {s:?} in the log:\n{log}");
        }
    }
    // What was done: one entry per command, each its summary.
    assert!(
        audit.contains(&format!(
            "telegram webhook {BASE}/webhooks/tg: console setup shown"
        )),
        "{audit}"
    );
    let entries = strings(
        &o.d.db(),
        "SELECT action || ' ' || coalesce(target, '') || ' ' || ok || ' ' || coalesce(detail, '') FROM audit WHERE action LIKE 'channel.%'",
    );
    assert_eq!(entries.len(), 8, "{entries:?}");
    assert!(
        entries.iter().any(|e| e.starts_with("channel.webhook tg 1 telegram webhook https://pushd.example.com/webhooks/tg: console setup shown; setWebhook")),
        "{entries:?}"
    );
}

#[test]
fn non_admin_may_not_test_or_set_up_channels() {
    // Root runs the client as `nobody`; a non-root run refuses its own uid.
    let root = unsafe { libc::geteuid() } == 0;
    let control = if root {
        "[control]\nmode = \"0666\"\n"
    } else {
        "[control]\nmode = \"0666\"\nowner_is_admin = false\n"
    };
    let o = Onboard::start_with(&[Ch("tg", Platform::Telegram, "")], "", control);
    std::fs::set_permissions(o.d.dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(o.d.path("data"), std::fs::Permissions::from_mode(0o755)).unwrap();
    for args in [
        vec!["channel", "test", "tg", "--to", "42"],
        vec!["channel", "webhook", "tg", "--url", BASE],
        vec!["channel", "webhook", "tg", "--delete"],
    ] {
        let mut cmd = Command::new(BIN);
        cmd.arg("--json")
            .arg("--socket")
            .arg(&o.d.socket)
            .args(&args);
        if root {
            cmd.uid(65534).gid(65534);
        }
        let out = cmd.output().unwrap();
        assert!(!out.status.success(), "{args:?}");
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(v["error"]["code"], "forbidden", "{args:?}: {v}");
    }
    assert!(
        o.mock("tg").requests().is_empty(),
        "a refused command reached Telegram"
    );
}
