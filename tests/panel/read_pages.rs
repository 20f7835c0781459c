//! The read-only pages over plain HTTP, each against the command it is one
//! call away from: Audiences (definition as written, file:line, size,
//! sample, lineage; paged by name), Templates (each rendered as `audience
//! preview` renders it, per platform and locale), Scripts (live generation,
//! a broken save with file:line), Channels (rates, last error, webhook URL)
//! and the Audit trail (by action and actor, paged by id) — with hostile
//! text from members, scripts and targets shown as text.

use super::explorer::{attr_values, next_href};
use super::*;
use crate::dispatch::{create_push, sim_daemon, wait_status};
use crate::e2e::runtime;
use crate::support::mocks::{Behavior, MockPlatform};
use crate::support::*;
use pushd::model::Platform;
use std::time::Duration;

const EVIL: &str = "<img src=x onerror=alert(1)>";

/// Markup from data never becomes markup: no `<img` outside our own.
fn assert_escaped(page: &Resp, what: &str) {
    assert!(!page.body.contains("<img src=x"), "{what}: markup got in");
    assert!(
        page.text().contains(EVIL),
        "{what}: the hostile text is not shown as text: {}",
        page.body
    );
}

const AUDIENCES: &str = r#"
audience "all" { where = { channel = "sim" } }
audience "vip" {
  description = "VIP <img src=x onerror=alert(1)> customers",
  where = { channel = "sim", tags_all = { "vip" }, subscribed = true },
  filter = function(m) return (m.attributes.spend or 0) > 100 end,
}
template "hello" { en = { text = "Hello {{name}}" } }
"#;

#[test]
fn audiences_show_definitions_where_sizes_samples_and_lineage_paged_by_name() {
    let d = sim_daemon(300, "rate_per_minute = 0", "block_rate = 0.1");
    d.write_script("10_test.lua", AUDIENCES);
    d.write_script(
        "20_many.lua",
        "for i = 1, 55 do audience(string.format(\"z%02d\", i)) { where = { locale = \"zh\" } } end\n",
    );
    d.cli_json(&["reload"]);
    let status = d.status();
    assert_eq!(status["scripts"]["audiences"].as_array().unwrap().len(), 57);
    create_push(
        &d,
        &[
            "--audience",
            "all",
            "--template",
            "hello",
            "--name",
            "first",
        ],
    );
    wait_status(&d, "first", "completed", Duration::from_secs(60));
    let retry = d.cli_json(&["retry-audience", "first", "--name", "again-1"]);
    assert_eq!(retry["ok"], true, "{retry}");
    let c = PanelClient::sign_in(&d, true);

    // Two pages by name: every audience once, in name order.
    let first = c.get("/audiences");
    assert_eq!(first.status, 200, "{}", first.body);
    let mut names = attr_values(&first.body, "data-audience");
    assert_eq!(names.len(), 50);
    let next = next_href(&first.body).expect("a second page");
    let second = c.get(&next);
    names.extend(attr_values(&second.body, "data-audience"));
    assert!(next_href(&second.body).is_none());
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(names, sorted);
    assert_eq!(names.len(), 58, "57 script audiences and a saved one");
    assert_eq!(&names[..3], ["again-1", "all", "vip"]);

    // The definition as written, where it is, and its size.
    let page = first.text();
    let row = |name: &str| -> String {
        let at = page
            .find(&format!("data-audience=\"{name}\""))
            .unwrap_or_else(|| panic!("{name} missing"));
        page[at..at + page[at..].find("</tr>").unwrap()].to_string()
    };
    let all = row("all");
    assert!(all.contains(r#"where = { channel = "sim" }"#), "{all}");
    assert!(all.contains("scripts/10_test.lua:2"), "{all}");
    let preview = d.cli_json(&["audience", "preview", "all"])["data"].clone();
    assert!(all.contains(&format!(">{}<", preview["size"])), "{all}");
    let vip = row("vip");
    assert!(
        vip.contains(r#"where = { channel = "sim", tags_all = { "vip" }, subscribed = true }"#),
        "{vip}"
    );
    assert!(
        vip.contains("+ filter") && vip.contains("scripts/10_test.lua:3"),
        "{vip}"
    );
    assert!(
        vip.contains("≤ "),
        "a filtered size is an upper bound: {vip}"
    );
    let saved = row("again-1");
    assert!(saved.contains("Sent Fail of") && saved.contains("href=\"/pushes/first\""));
    assert_escaped(&first, "audiences");

    // One audience: its exact size (the filter run) and a sample.
    let vip_page = c.get("/audiences/vip");
    assert_eq!(vip_page.status, 200);
    let exact = d.cli_json(&["audience", "preview", "vip"])["data"].clone();
    assert!(exact["size"].as_u64().unwrap() > 0);
    let size = format!("data-size>{}<", exact["size"]);
    assert!(vip_page.body.contains(&size), "{}", vip_page.body);
    let shown = d.cli_json(&["audience", "show", "vip"])["data"].clone();
    assert_eq!(shown["size"], exact["size"]);
    assert_eq!(shown["subscribed"], exact["subscribed"]);
    for m in shown["sample"].as_array().unwrap() {
        let who = format!(
            "{}:{}",
            m["channel"].as_str().unwrap(),
            m["channel_user_id"].as_str().unwrap()
        );
        assert!(vip_page.body.contains(&who), "{who} not in the sample");
    }
    assert_escaped(&vip_page, "audience page");
    // A viewer is not offered Push again; an admin is.
    assert!(!vip_page.body.contains("/audiences/vip/push"));
    let admin = PanelClient::sign_in(&d, false);
    assert!(
        admin
            .get("/audiences/vip")
            .body
            .contains("/audiences/vip/push")
    );
    assert_eq!(c.get("/audiences/nope").status, 404);
}

#[test]
fn templates_render_per_platform_and_locale_exactly_as_audience_preview_does() {
    let rt = runtime();
    let mock = rt.block_on(MockPlatform::start(Platform::Custom));
    let cfg = base_config(&format!(
        "[channels.sim]\nkind = \"simulator\"\nseed_members = 40\n{}",
        mock.channel_toml("hook")
    ));
    let mut d = TestDaemon::prepare(&cfg);
    d.write_script(
        "10.lua",
        r#"
audience "hooks" { where = { channel = "hook" } }
template "hello" {
  en = { text = "Hello {{name}}", buttons = { { title = "Yes", payload = "YES" } } },
  zh = { text = "你好 {{name}}" },
  custom = { en = { text = "Custom hello {{name}}" } },
}
template "evil" { en = { text = "<img src=x onerror=alert(1)> {{name}}" } }
"#,
    );
    d.spawn();
    let p = d.path("hook.csv");
    std::fs::write(&p, "channel,channel_user_id,name,locale\nhook,h1,Hana,en\n").unwrap();
    assert_eq!(
        d.cli_json(&["members", "import", p.to_str().unwrap()])["ok"],
        true
    );
    let c = PanelClient::sign_in(&d, true);
    let page = c.get("/templates");
    assert_eq!(page.status, 200, "{}", page.body);
    assert_eq!(
        attr_values(&page.body, "data-template"),
        ["evil", "hello"],
        "by name"
    );
    let text = page.text();
    let hello = &text[text.find("data-template=\"hello\"").unwrap()..];
    // Every configured platform × each of the template's locales.
    let cells: Vec<String> = attr_values(hello, "data-platform")
        .into_iter()
        .zip(attr_values(hello, "data-locale"))
        .map(|(p, l)| format!("{p}/{l}"))
        .collect();
    assert_eq!(
        cells,
        ["custom/en", "custom/zh", "simulator/en", "simulator/zh"]
    );
    // The custom version for a real custom member, as `audience preview` renders it.
    let preview = d.cli_json(&["audience", "preview", "hooks", "--template", "hello"]);
    let sent = &preview["data"]["samples"][0]["routed"]["outbound"]["text"];
    assert_eq!(sent, "Custom hello Hana");
    let cell = |platform: &str, locale: &str| -> String {
        let key = format!("data-platform=\"{platform}\" data-locale=\"{locale}\"");
        let at = hello.find(&key).unwrap_or_else(|| panic!("{key} missing"));
        hello[at..at + hello[at..].find("</li>").unwrap()].to_string()
    };
    let custom_en = cell("custom", "en");
    assert!(
        custom_en.contains(&format!(
            "<p class=\"bubble\">{}</p>",
            sent.as_str().unwrap()
        )),
        "{custom_en}"
    );
    assert!(custom_en.contains("Hana (hook:h1)"), "{custom_en}");
    // No zh member on hook: a made-up one, and the generic zh table.
    let custom_zh = cell("custom", "zh");
    assert!(custom_zh.contains("你好 Sample Member"), "{custom_zh}");
    assert!(
        custom_zh.contains("no real one has this locale"),
        "{custom_zh}"
    );
    let sim_en = cell("simulator", "en");
    assert!(
        sim_en.contains("(sim:sim-"),
        "a real simulator member: {sim_en}"
    );
    assert!(
        sim_en.contains("<span class=\"chip\">Yes</span>"),
        "{sim_en}"
    );
    assert!(
        text.contains("custom version (en)"),
        "the platform version is named"
    );
    assert!(text.contains("scripts/10.lua:3"), "where hello is defined");
    assert_escaped(&page, "templates");
}

#[test]
fn scripts_show_the_live_generation_and_a_broken_save_at_its_line() {
    let d = sim_daemon(5, "", "");
    let c = PanelClient::sign_in(&d, true);
    let status = d.status();
    let live = status["scripts"]["generation"].as_i64().unwrap();
    let hash = status["scripts"]["hash"].as_str().unwrap().to_string();
    let page = c.get("/scripts");
    assert_eq!(page.status, 200);
    assert!(
        page.body
            .contains(&format!("data-live-generation=\"{live}\""))
    );
    assert!(page.body.contains(&hash[..12]));
    assert!(page.body.contains("scripts/10_test.lua") || page.body.contains("10_test.lua"));
    assert!(!page.body.contains("data-kept"));

    d.write_script(
        "20_bad.lua",
        "audience \"broken\" {\n  where = { channel = \"sim\" \n",
    );
    let broken = wait_for(
        "the refused save on the page",
        Duration::from_secs(20),
        || {
            let p = c.get("/scripts");
            p.body.contains("data-kept").then_some(p)
        },
    );
    let text = broken.text();
    assert!(text.contains("scripts/20_bad.lua:"), "{text}");
    assert!(broken.body.contains("data-last-ok=\"false\""));
    assert!(
        broken
            .body
            .contains(&format!("data-live-generation=\"{live}\""))
    );
    assert_eq!(
        d.status()["scripts"]["generation"],
        live,
        "the old generation serves"
    );
    // The page's fingerprint moved with it (what makes an open page redraw).
    assert_ne!(
        attr_values(&page.body, "data-fingerprint"),
        attr_values(&broken.body, "data-fingerprint")
    );
}

#[test]
fn channels_show_kind_rates_the_last_error_and_the_webhook_url() {
    let rt = runtime();
    let mock = rt.block_on(MockPlatform::start(Platform::Custom));
    let cfg = base_config(&format!(
        "[dispatch]\nrate_per_minute = 0\n[channels.sim]\nkind = \"simulator\"\nseed_members = 0\n{}rate_per_second = 40\n",
        mock.channel_toml("hook")
    ));
    let mut d = TestDaemon::prepare(&cfg);
    d.write_script("10.lua", crate::e2e::HELLO);
    d.spawn();
    crate::e2e::import_members(
        &d,
        &[("hook".into(), "h1".into()), ("hook".into(), "h2".into())],
    );
    mock.script("h2", Behavior::Block);
    create_push(
        &d,
        &["--audience", "all", "--template", "hello", "--name", "p"],
    );
    wait_status(&d, "p", "completed", Duration::from_secs(60));
    let listed = d.request(r#"{"cmd":"channel.list"}"#);
    assert_eq!(listed["ok"], true, "{listed}");
    let hook = listed["data"]["channels"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "hook")
        .cloned()
        .unwrap();
    assert_eq!(hook["configured_rate_per_second"], 40.0);
    assert!(hook["current_per_minute"].as_f64().unwrap() > 0.0, "{hook}");
    assert_eq!(hook["last_error"]["class"], "blocked", "{hook}");
    let base = d.http_base();
    assert_eq!(hook["webhook_url"], format!("{base}/webhooks/hook"));

    let c = PanelClient::sign_in(&d, true);
    let page = c.get("/channels");
    assert_eq!(page.status, 200);
    assert_eq!(attr_values(&page.body, "data-channel"), ["hook", "sim"]);
    let text = page.text();
    let row = &text[text.find("data-channel=\"hook\"").unwrap()..];
    let row = &row[..row.find("</tr>").unwrap()];
    assert!(row.contains("40/s") && row.contains("configured"), "{row}");
    assert!(
        row.contains(hook["last_error"]["code"].as_str().unwrap()),
        "{row}"
    );
    assert!(
        row.contains(hook["last_error"]["message"].as_str().unwrap()),
        "{row}"
    );
    assert!(
        row.contains(&format!("<code>{base}/webhooks/hook</code>")),
        "{row}"
    );
    let sim = &text[text.find("data-channel=\"sim\"").unwrap()..];
    assert!(
        sim.contains("none needed"),
        "the simulator takes no webhooks"
    );
}

#[test]
fn the_audit_trail_filters_by_action_and_actor_and_pages_by_id() {
    let d = sim_daemon(5, "", "");
    for _ in 0..30 {
        assert_eq!(d.cli_json(&["reload"])["ok"], true);
    }
    super::scheduled_push(&d, EVIL);
    let admin = PanelClient::sign_in(&d, false);
    let c = PanelClient::sign_in(&d, true);
    let r = admin.post(
        &format!("/pushes/{}/cancel", pushd_segment(EVIL)),
        &[],
        From::Panel,
    );
    assert_eq!(r.status, 303, "{}", r.body);
    let every: Vec<String> = d.cli_json(&["audit", "--limit", "1000"])["data"]["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].to_string())
        .collect();
    assert!(every.len() > 60, "{}", every.len());

    let mut seen = Vec::new();
    let mut path = Some("/audit".to_string());
    while let Some(p) = path {
        let page = c.get(&p);
        assert_eq!(page.status, 200);
        let ids = attr_values(&page.body, "data-entry");
        assert!(ids.len() <= 50);
        seen.extend(ids);
        path = next_href(&page.body);
    }
    assert_eq!(seen, every, "page after page, newest first, each once");

    let ids = |q: &str| attr_values(&c.get(&format!("/audit?{q}")).body, "data-entry");
    let cli = |args: &[&str]| -> Vec<String> {
        let mut all = vec!["audit", "--limit", "1000"];
        all.extend_from_slice(args);
        d.cli_json(&all)["data"]["entries"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["id"].to_string())
            .collect()
    };
    let reloads = ids("action=reload");
    assert_eq!(reloads.len(), 50, "a page of the 61 and more reloads");
    assert_eq!(reloads, cli(&["--action", "reload"])[..50]);
    let scripts = ids("action=reload.scripts");
    assert_eq!(scripts, cli(&["--action", "reload.scripts"]));
    let uid = unsafe { libc::geteuid() }.to_string();
    let mine = ids(&format!("actor=uid+{uid}&action=reload"));
    assert_eq!(
        mine,
        cli(&["--actor", &uid, "--action", "reload"])[..mine.len()]
    );
    let daemon = ids("actor=daemon");
    assert!(!daemon.is_empty());
    assert_eq!(daemon, cli(&["--actor", "daemon"]));
    let panel = ids("actor=panel");
    assert_eq!(panel, cli(&["--actor", "panel"]));
    assert_eq!(panel.len(), 3, "two sign-ins and a cancel");
    // Hostile text in a target is text.
    let page = c.get("/audit?action=push");
    assert_escaped(&page, "audit");
}

fn pushd_segment(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}
