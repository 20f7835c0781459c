//! The shipped example scripts as a newcomer meets them, through the real
//! binary: with a channel of every kind configured (mock platforms on
//! loopback) `pushd check` passes, `audience preview` shows each platform
//! its own message, and real pushes reach every mock with the best message
//! each platform can carry. A template a platform cannot carry fails
//! `check` with the platform's rule and both fixes, and logs written to a
//! file carry no colour codes.

use crate::dispatch::wait_status;
use crate::e2e::runtime;
use crate::support::mocks::{EVERY_KIND, MockPlatform, Recorded, start_each};
use crate::support::*;
use pushd::model::Platform;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

/// A simulator channel whose sends always succeed.
const SIM: &str = "[channels.sim]\nkind = \"simulator\"\nlatency = \"1ms\"\nblock_rate = 0.0\ninvalid_rate = 0.0\ntransient_rate = 0.0\nrate_limit_rate = 0.0\n";

/// Mocks of every platform and a config with one channel of every kind
/// pointing at them (sends unthrottled).
fn every_kind(rt: &tokio::runtime::Runtime) -> (String, BTreeMap<&'static str, MockPlatform>) {
    let (mocked, mocks) = start_each(rt, &EVERY_KIND);
    let channels = format!("{SIM}\n{mocked}");
    for p in Platform::ALL {
        assert!(
            channels.contains(&format!("kind = \"{p}\"")),
            "no {p} channel"
        );
    }
    let config = base_config(&format!("[dispatch]\nrate_per_minute = 0\n{channels}"));
    (config, mocks)
}

/// A daemon folder with `config` and the shipped `scripts/*.lua` copied in.
pub(crate) fn with_shipped_scripts(config: &str) -> TestDaemon {
    let d = TestDaemon::prepare(config);
    let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts");
    for entry in std::fs::read_dir(&shipped).expect("read scripts/") {
        let path = entry.expect("list scripts/").path();
        if path.extension().is_some_and(|e| e == "lua") {
            let name = path.file_name().expect("file name");
            std::fs::copy(&path, d.path("scripts").join(name)).expect("copy a shipped script");
        }
    }
    d
}

/// One VIP member per channel in English, plus Chinese members on WhatsApp,
/// WeChat and Telegram, all inside the service window, and one WhatsApp
/// member outside it. Returns (channel, user id, locale) per member.
fn import_vips(d: &TestDaemon) -> Vec<(String, String, &'static str)> {
    let now = chrono::Utc::now();
    let recent = (now - chrono::Duration::hours(1)).to_rfc3339();
    let old = (now - chrono::Duration::days(3)).to_rfc3339();
    let mut members = Vec::new();
    let mut csv =
        String::from("channel,channel_user_id,name,locale,tags,subscribed,last_interaction_at\n");
    let names = std::iter::once("sim").chain(EVERY_KIND.iter().map(|(n, _)| *n));
    for (i, channel) in names.enumerate() {
        let base = 1000 * (i + 1);
        let mut add = |user: usize, locale: &'static str, at: &str| {
            csv.push_str(&format!(
                "{channel},{user},User {user},{locale},vip,true,{at}\n"
            ));
            members.push((channel.to_string(), user.to_string(), locale));
        };
        add(base + 1, "en", &recent);
        if ["wa", "wx", "tg"].contains(&channel) {
            add(base + 2, "zh", &recent);
        }
        if channel == "wa" {
            add(base + 3, "en", &old);
        }
    }
    let file = d.path("vips.csv");
    std::fs::write(&file, csv).expect("write members");
    let v = d.cli_json(&["members", "import", file.to_str().expect("utf-8 path")]);
    assert_eq!(v["ok"], true, "{v}");
    members
}

/// Serves the shipped scripts on every kind, with the example push (which
/// starts at load, before any member exists) already finished.
fn serve_every_kind(
    rt: &tokio::runtime::Runtime,
) -> (TestDaemon, BTreeMap<&'static str, MockPlatform>) {
    let (config, mocks) = every_kind(rt);
    let mut d = with_shipped_scripts(&config);
    d.spawn();
    let reload = wait_for("the first script load", Duration::from_secs(30), || {
        let r = d.status()["last_script_reload"].clone();
        (!r.is_null()).then_some(r)
    });
    assert_eq!(
        reload["ok"], true,
        "the shipped scripts did not load: {reload}"
    );
    wait_status(&d, "welcome-vip", "completed", Duration::from_secs(30));
    (d, mocks)
}

/// `audience preview vip --template T` as JSON: each sample's routing, by channel_user_id.
fn preview(d: &TestDaemon, template: &str) -> BTreeMap<String, Value> {
    let v = d.cli_json(&[
        "audience",
        "preview",
        "vip",
        "--template",
        template,
        "--limit",
        "100",
    ]);
    assert_eq!(v["ok"], true, "{v}");
    let samples = v["data"]["samples"].as_array().expect("samples").clone();
    samples
        .into_iter()
        .map(|s| {
            assert!(s["error"].is_null(), "preview error: {s}");
            (
                s["channel_user_id"].as_str().expect("user id").to_string(),
                s["routed"].clone(),
            )
        })
        .collect()
}

/// The message a preview would send (panics on a skip or a platform template).
fn message(routed: &Value) -> &Value {
    assert_eq!(routed["action"], "send", "{routed}");
    assert_eq!(routed["outbound"]["kind"], "message", "{routed}");
    &routed["outbound"]
}

fn buttons(message: &Value) -> Vec<Value> {
    message["buttons"].as_array().cloned().unwrap_or_default()
}

#[test]
fn shipped_scripts_pass_check_with_a_channel_of_every_kind() {
    let rt = runtime();
    let (config, _mocks) = every_kind(&rt);
    let d = with_shipped_scripts(&config);
    let out = d.cli(&["check"]);
    assert!(
        out.status.success(),
        "pushd check fails on the shipped scripts with every kind configured:\n{}",
        stderr(&out)
    );
    assert!(
        stdout(&out).contains("ok: config and scripts are valid"),
        "{}",
        stdout(&out)
    );
}

#[test]
fn audience_preview_shows_each_platform_its_own_message() {
    let rt = runtime();
    let (d, _mocks) = serve_every_kind(&rt);
    let members = import_vips(&d);
    let shop = "https://shop.example.com/vip";

    let welcome = preview(&d, "welcome_vip");
    assert_eq!(welcome.len(), members.len(), "{welcome:#?}");
    for (channel, user, locale) in &members {
        let routed = &welcome[user];
        match (channel.as_str(), user.as_str(), *locale) {
            // WhatsApp: the reply button, and the shop as a link in the text.
            ("wa", _, "en") if user.ends_with('1') => {
                let m = message(routed);
                assert!(
                    m["text"]
                        .as_str()
                        .unwrap()
                        .ends_with(&format!("The VIP shop: {shop}")),
                    "{m}"
                );
                assert_eq!(
                    buttons(m),
                    [serde_json::json!({"title": "See my perks", "payload": "VIP_PERKS"})]
                );
            }
            ("wa", _, "zh") => {
                let m = message(routed);
                assert!(
                    m["text"]
                        .as_str()
                        .unwrap()
                        .contains("VIP 商店：https://shop.example.com/vip?lang=zh"),
                    "{m}"
                );
                assert_eq!(buttons(m).len(), 1, "{m}");
            }
            // Outside WhatsApp's window: the pre-approved template.
            ("wa", _, _) => {
                assert_eq!(routed["action"], "send", "{routed}");
                let out = &routed["outbound"];
                assert_eq!(
                    (out["kind"].as_str(), out["name"].as_str()),
                    (Some("template"), Some("vip_welcome")),
                    "{routed}"
                );
            }
            // Everyone else: the generic message, the reply and the URL button.
            (_, _, "en") => {
                let m = message(routed);
                let b = buttons(m);
                assert_eq!(b.len(), 2, "{channel}: {m}");
                assert_eq!(b[1]["url"], shop, "{channel}: {m}");
            }
            (_, _, "zh") => assert_eq!(buttons(message(routed)).len(), 2, "{channel}: {routed}"),
            other => panic!("unexpected member {other:?}"),
        }
    }

    let friday = preview(&d, "black_friday");
    let (wx_en, wx_zh, wa_en, tg_zh) = (
        &friday["7001"],
        &friday["7002"],
        &friday["2001"],
        &friday["5002"],
    );
    // WeChat: a news article (title, picture, link) without buttons.
    for (routed, link) in [
        (wx_en, "https://shop.example.com/black-friday"),
        (wx_zh, "https://shop.example.com/black-friday?lang=zh"),
    ] {
        let m = message(routed);
        assert_eq!(
            m["image_url"], "https://shop.example.com/img/black-friday.png",
            "{m}"
        );
        assert_eq!(
            buttons(m),
            [serde_json::json!({"title": m["buttons"][0]["title"], "url": link})],
            "{m}"
        );
        assert!(m["quick_replies"].is_null(), "{m}");
    }
    assert!(
        message(wx_zh)["text"]
            .as_str()
            .unwrap()
            .starts_with("黑色星期五")
    );
    // Elsewhere the generic one: the picture with two quick replies.
    let m = message(wa_en);
    assert_eq!(m["quick_replies"].as_array().map(Vec::len), Some(2), "{m}");
    assert!(m["image_url"].is_string(), "{m}");
    assert_eq!(message(tg_zh)["text"], "User 5002，今日全场七折！");

    // A render function that reads ctx.platform: Slack gets mrkdwn bold.
    let thanks = preview(&d, "spend_thanks");
    for (channel, user, _) in &members {
        let routed = &thanks[user];
        if routed["action"] == "skip" {
            assert_eq!(
                user, "2003",
                "only the WhatsApp member outside the window: {routed}"
            );
            assert!(
                routed["reason"].as_str().unwrap().contains("spend_thanks"),
                "{routed}"
            );
            continue;
        }
        let text = message(routed)["text"].as_str().unwrap().to_string();
        assert_eq!(text.starts_with('*'), channel == "sl", "{channel}: {text}");
    }
}

/// The one send `mock` received for `user`.
fn sent_to(mock: &MockPlatform, user: &str) -> Recorded {
    let sends = mock.requests_for(user);
    assert_eq!(sends.len(), 1, "sends to {user}: {sends:#?}");
    sends.into_iter().next().expect("one send")
}

/// Pushes `template` to the VIP audience and waits until it completes with no failure.
fn push_all(d: &TestDaemon, template: &str, name: &str, expected: usize) {
    let v = d.cli_json(&[
        "push",
        "create",
        "--audience",
        "vip",
        "--template",
        template,
        "--name",
        name,
    ]);
    assert_eq!(v["ok"], true, "{v}");
    wait_status(d, name, "completed", Duration::from_secs(60));
    let report = d.cli_json(&["report", name, "--format", "json"]);
    let r = &report["data"];
    assert_eq!(r["sent_fail"], 0, "{name}: {report}");
    assert_eq!(r["sent_success"], expected, "{name}: {report}");
}

#[test]
fn pushes_of_the_shipped_templates_reach_every_platform_in_its_own_format() {
    let rt = runtime();
    let (d, mocks) = serve_every_kind(&rt);
    let members = import_vips(&d);
    // Every member is sent to: the mocks refuse bodies their platform would.
    push_all(&d, "welcome_vip", "welcome", members.len());
    for (channel, user, _) in &members {
        if let Some(mock) = mocks.get(channel.as_str()) {
            sent_to(mock, user);
        }
    }
    let wa = sent_to(&mocks["wa"], "2001");
    let body = wa.body();
    assert_eq!(
        (body["type"].as_str(), body["interactive"]["type"].as_str()),
        (Some("interactive"), Some("button")),
        "{body}"
    );
    assert_eq!(
        body["interactive"]["action"]["buttons"]
            .as_array()
            .map(Vec::len),
        Some(1),
        "{body}"
    );
    assert!(
        body["interactive"]["body"]["text"]
            .as_str()
            .unwrap()
            .contains("https://shop.example.com/vip"),
        "{body}"
    );
    let wa_old = sent_to(&mocks["wa"], "2003");
    assert_eq!(
        wa_old.body()["template"]["name"],
        "vip_welcome",
        "{}",
        wa_old.body()
    );
    let fb = sent_to(&mocks["fb"], "3001");
    let payload = &fb.body()["message"]["attachment"]["payload"];
    assert_eq!(payload["template_type"], "button", "{}", fb.body());
    let kinds: Vec<&str> = payload["buttons"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|b| b["type"].as_str())
        .collect();
    assert_eq!(kinds, ["postback", "web_url"]);
    let tg = sent_to(&mocks["tg"], "5001");
    let keys = &tg.body()["reply_markup"]["inline_keyboard"];
    assert_eq!(
        (
            keys[0][0]["callback_data"].as_str(),
            keys[1][0]["url"].as_str()
        ),
        (Some("VIP_PERKS"), Some("https://shop.example.com/vip")),
        "{}",
        tg.body()
    );
    let wx = sent_to(&mocks["wx"], "7001");
    assert_eq!(wx.body()["msgtype"], "msgmenu", "{}", wx.body());
    assert!(
        wx.body()["msgmenu"]["head_content"]
            .as_str()
            .unwrap()
            .contains("<a href=\"https://shop.example.com/vip\">"),
        "{}",
        wx.body()
    );

    push_all(&d, "black_friday", "friday", members.len());
    let wx = mocks["wx"].requests_for("7001");
    let news = wx.last().expect("a second send to 7001").body().clone();
    assert_eq!(news["msgtype"], "news", "{news}");
    let article = &news["news"]["articles"][0];
    assert_eq!(
        (article["url"].as_str(), article["picurl"].as_str()),
        (
            Some("https://shop.example.com/black-friday"),
            Some("https://shop.example.com/img/black-friday.png")
        ),
        "{news}"
    );
    let wa = mocks["wa"].requests_for("2001");
    let body = wa.last().expect("a second send to 2001").body().clone();
    assert_eq!(
        body["interactive"]["header"]["image"]["link"],
        "https://shop.example.com/img/black-friday.png",
        "{body}"
    );
    assert_eq!(
        body["interactive"]["action"]["buttons"]
            .as_array()
            .map(Vec::len),
        Some(2),
        "{body}"
    );
}

#[test]
fn a_template_a_platform_cannot_carry_fails_check_with_the_rule_and_both_fixes() {
    let rt = runtime();
    let wa = rt.block_on(MockPlatform::start(Platform::Whatsapp));
    let d = TestDaemon::prepare(&base_config(&format!("{SIM}\n{}", wa.channel_toml("wa"))));
    let generic = "\ntemplate \"welcome\" {\n  en = {\n    text = \"Welcome!\",\n    buttons = { { title = \"Perks\", payload = \"PERKS\" }, { title = \"Shop\", url = \"https://shop.example.com\" } },\n  },\n}\n";
    d.write_script("20_t.lua", generic);
    let out = d.cli(&["check"]);
    assert!(!out.status.success(), "check passed: {}", stdout(&out));
    let err = stderr(&out);
    for needle in [
        "scripts/20_t.lua:2: template \"welcome\" (its en table) cannot be sent to channel \"wa\" (whatsapp)",
        "WhatsApp: one message carries up to 3 reply buttons (quick replies count as reply buttons) or one URL button, never both; this one has 1 reply and 1 URL button(s)",
        "Fix: add a whatsapp version of the message that fits this rule to the template, `whatsapp = { en = { text = … } }`",
        "or route whatsapp members elsewhere in route()",
    ] {
        assert!(err.contains(needle), "{needle:?} not in:\n{err}");
    }
    // The simulator carries the same template: one problem, not two.
    assert!(err.ends_with("1 problem(s)\n"), "{err}");

    // Either fix passes: a WhatsApp version ...
    let with_version = generic.replace(
        "  },\n}\n",
        "  },\n  whatsapp = { en = { text = \"Welcome! Shop: https://shop.example.com\", buttons = { { title = \"Perks\", payload = \"PERKS\" } } } },\n}\n",
    );
    d.write_script("20_t.lua", &with_version);
    let out = d.cli(&["check"]);
    assert!(out.status.success(), "{}", stderr(&out));
    // ... or routing the WhatsApp members elsewhere.
    d.write_script("20_t.lua", generic);
    d.write_script(
        "30_r.lua",
        "route(function(m) if m.platform == \"whatsapp\" then return { skip = \"no WhatsApp today\" } end return { channel = m.channel } end)\n",
    );
    let out = d.cli(&["check"]);
    assert!(out.status.success(), "{}", stderr(&out));
}

#[test]
fn logs_written_to_a_file_carry_no_colour_codes() {
    for format in ["text", "json"] {
        let mut d = TestDaemon::prepare(&base_config(SIM));
        d.write_script(
            "20_t.lua",
            "template \"t\" { en = { text = \"hi\" } }\nlog.warn(\"a warning from a script\")\n",
        );
        let log = std::fs::File::create(&d.log_path).expect("log file");
        let child = Command::new(BIN)
            .args(["serve", "--log-format", format, "--config"])
            .arg(&d.config_path)
            .env("RUST_LOG", "info")
            .env_remove("NO_COLOR")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn pushd serve");
        d.child = Some(child);
        d.wait_ready();
        wait_for(
            "the script's warning in the log",
            Duration::from_secs(10),
            || d.log().contains("a warning from a script").then_some(()),
        );
        assert_eq!(d.stop(), Some(0));
        let bytes = std::fs::read(&d.log_path).expect("read the log");
        assert!(
            !bytes.contains(&0x1b),
            "--log-format {format}: the log file has ANSI escape codes:\n{}",
            String::from_utf8_lossy(&bytes)
        );
        let text = String::from_utf8(bytes).expect("UTF-8 log");
        match format {
            "json" => {
                for line in text.lines() {
                    let v: Value = serde_json::from_str(line)
                        .unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
                    assert!(v["level"].is_string(), "{line}");
                }
            }
            _ => assert!(
                text.contains(" WARN pushd::script: a warning from a script"),
                "{text}"
            ),
        }
    }
}
