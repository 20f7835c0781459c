//! Tracked links through the real daemon: templates render `/l/TOKEN` URLs
//! on WhatsApp and Telegram (mocks on loopback), clicks over real HTTP move
//! the recipient's indicator once and the totals every time, previews and
//! HEAD never count, the privacy modes, tokens that are not ours, and a
//! crash in the middle of a click storm.

use crate::dispatch::{assert_consistent, create_push, wait_status};
use crate::e2e::{import_members, runtime};
use crate::support::mocks::MockPlatform;
use crate::support::mocks::creds::APP_SECRET;
use crate::support::webhooks::{meta_headers, whatsapp_status};
use crate::support::*;
use pushd::links::token::{self, Key};
use pushd::model::Platform;
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

const PUBLIC: &str = "https://go.example.test";
const SALE: &str = "https://shop.example.com/sale?utm=push";
const SHOP: &str = "https://shop.example.com/";
const BROWSER: &str = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.0 Mobile/15E148 Safari/604.1";

/// A tracked text link and a tracked URL button.
const OFFER: &str = r#"
audience "all" { }
template "offer" {
  en = {
    text = 'Hi {{name}}, the sale is on: {{track "https://shop.example.com/sale?utm=push"}}',
    buttons = { { title = "Shop now", url = "https://shop.example.com/", track = true } },
  },
}
"#;

fn links_config(window: &str, privacy: &str, extra: &str) -> String {
    base_config(&format!(
        "[dispatch]\nrate_per_minute = 0\n[links]\npublic_url = \"{PUBLIC}\"\npreview_window = \"{window}\"\nprivacy = \"{privacy}\"\n{extra}"
    ))
}

/// A simulator channel of `members` seeded members, every send a success.
fn sim(members: u64) -> String {
    format!(
        "[channels.sim]\nkind = \"simulator\"\nseed_members = {members}\nlatency = \"1ms\"\n\
         block_rate = 0.0\ninvalid_rate = 0.0\ntransient_rate = 0.0\nrate_limit_rate = 0.0\n"
    )
}

/// (status, Location) of one request for a link, redirects not followed.
fn open(
    rt: &tokio::runtime::Runtime,
    url: &str,
    method: &str,
    ua: Option<&str>,
) -> (u16, Option<String>) {
    rt.block_on(async {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("client");
        let mut req = client.request(method.parse().expect("method"), url);
        if let Some(ua) = ua {
            req = req.header("User-Agent", ua);
        }
        let resp = req.send().await.expect("request");
        let location = resp
            .headers()
            .get("location")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        (resp.status().as_u16(), location)
    })
}

/// The local URL of a sent `https://go.example.test/l/TOKEN`.
fn local(d: &TestDaemon, sent: &str) -> String {
    let token = sent
        .strip_prefix(&format!("{PUBLIC}/l/"))
        .unwrap_or_else(|| panic!("{sent:?} is not a tracked URL"));
    format!("{}/l/{token}", d.http_base())
}

/// Every `https://go.example.test/l/TOKEN` in `text`, checking each token's shape.
fn tracked_urls(text: &str) -> Vec<String> {
    let prefix = format!("{PUBLIC}/l/");
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(i) = rest.find(&prefix) {
        let tail = &rest[i + prefix.len()..];
        let token: String = tail
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
            .collect();
        assert!(
            (1..=22).contains(&token.len()),
            "token {token:?} is not 1–22 URL-safe characters"
        );
        out.push(format!("{prefix}{token}"));
        rest = &tail[token.len()..];
    }
    out
}

fn report(d: &TestDaemon, push: &str) -> Value {
    let v = d.cli_json(&["report", push]);
    assert_eq!(v["ok"], true, "{v}");
    v["data"].clone()
}

/// The report's counts that clicks may move, in one comparable value.
fn counts(r: &Value) -> Value {
    serde_json::json!({
        "read_and_interacted": r["read_and_interacted"],
        "read_only": r["read_only"],
        "interacted_only": r["interacted_only"],
        "not_read_or_interacted": r["not_read_or_interacted"],
        "clicks": r["clicks"],
        "clicks_total": r["clicks_total"],
        "links": r["links"],
    })
}

/// Waits until every send of `push` is older than `window_ms`, so a click
/// is no longer within the preview window.
fn wait_past_window(d: &TestDaemon, push: i64, window_ms: i64) {
    wait_for(
        "the preview window to pass",
        Duration::from_secs(30),
        || {
            let newest = count(
                &d.db(),
                &format!("SELECT coalesce(max(sent_at), 0) FROM deliveries WHERE push_id = {push}"),
            );
            (chrono::Utc::now().timestamp_millis() > newest + window_ms).then_some(())
        },
    );
}

fn key(d: &TestDaemon) -> Key {
    let bytes: Vec<u8> = d
        .db()
        .query_row("SELECT key FROM link_key", [], |r| r.get(0))
        .expect("the daemon made a link key");
    Key::from_bytes(&bytes).expect("a usable key")
}

/// Delivery ids of a push, in order.
fn deliveries(d: &TestDaemon, push: i64) -> Vec<i64> {
    strings(
        &d.db(),
        &format!("SELECT CAST(id AS TEXT) FROM deliveries WHERE push_id = {push} AND state = 2 ORDER BY id"),
    )
    .into_iter()
    .map(|s| s.parse().expect("id"))
    .collect()
}

/// What the link tables and the deliveries hold, to show nothing changed.
fn link_state(d: &TestDaemon) -> Vec<String> {
    let db = d.db();
    let mut out = strings(
        &db,
        "SELECT push_id || ':' || link || ':' || clicked || ':' || clicks || ':' || previews FROM links ORDER BY 1",
    );
    out.extend(strings(
        &db,
        "SELECT 'c' || push_id || ':' || delivery_id || ':' || link || ':' || n FROM link_clicks ORDER BY 1",
    ));
    out.extend(strings(
        &db,
        "SELECT 't' || push_id || ':' || clicked FROM link_totals ORDER BY 1",
    ));
    out.extend(strings(
        &db,
        "SELECT 'i' || id FROM deliveries WHERE interacted_at IS NOT NULL ORDER BY id",
    ));
    out
}

/// Creates push `name` of `template` to everyone and waits for it to finish.
fn start(d: &TestDaemon, name: &str, template: &str) -> i64 {
    let p = create_push(
        d,
        &["--audience", "all", "--template", template, "--name", name],
    );
    wait_status(d, name, "completed", Duration::from_secs(60));
    p["id"].as_i64().expect("push id")
}

/// What each platform was sent: (text link, button link) per recipient
/// (`wa:USER`, `tg:USER`), each link a URL of its own.
fn sent_links(wa: &MockPlatform, tg: &MockPlatform) -> BTreeMap<String, (String, String)> {
    let mut sent: BTreeMap<String, (String, String)> = BTreeMap::new();
    for r in wa.sends() {
        let i = &r.body()["interactive"];
        assert_eq!(i["type"], "cta_url", "{}", r.body());
        let text = tracked_urls(i["body"]["text"].as_str().unwrap());
        let button = tracked_urls(i["action"]["parameters"]["url"].as_str().unwrap());
        assert_eq!((text.len(), button.len()), (1, 1), "{}", r.body());
        sent.insert(
            format!("wa:{}", r.body()["to"].as_str().unwrap()),
            (text[0].clone(), button[0].clone()),
        );
    }
    for r in tg.sends() {
        let b = r.body();
        let text = tracked_urls(b["text"].as_str().unwrap());
        let button = tracked_urls(
            b["reply_markup"]["inline_keyboard"][0][0]["url"]
                .as_str()
                .unwrap(),
        );
        assert_eq!((text.len(), button.len()), (1, 1), "{b}");
        let user = r.recipient.clone().unwrap();
        assert_eq!(
            b["text"],
            format!("Hi User {user}, the sale is on: {}", text[0])
        );
        sent.insert(format!("tg:{user}"), (text[0].clone(), button[0].clone()));
    }
    assert_eq!(sent.len(), 4, "{sent:?}");
    let all: std::collections::BTreeSet<&String> =
        sent.values().flat_map(|(a, b)| [a, b]).collect();
    assert_eq!(
        all.len(),
        8,
        "every (recipient, link) has its own token: {sent:?}"
    );
    for url in &all {
        assert_eq!(url.len(), PUBLIC.len() + 3 + 22, "{url}");
    }
    sent
}

/// A signed WhatsApp `read` status for the push's message to `user`.
fn read_receipt(rt: &tokio::runtime::Runtime, d: &TestDaemon, user: &str) {
    let wamid = d.provider_message_id(user);
    let body = whatsapp_status(&wamid, "read", chrono::Utc::now().timestamp());
    let (status, text) = crate::webhooks::http(
        rt,
        "POST",
        &format!("{}/webhooks/wa", d.http_base()),
        &meta_headers(APP_SECRET, body.as_bytes()),
        &body,
    );
    assert_eq!(status, 200, "{text}");
}

/// The report in every format, and the export, carry the clicks.
fn check_renderings(d: &TestDaemon) {
    let table = stdout(&d.cli(&["report", "offer"]));
    assert!(
        table.contains("TRACKED LINK")
            && table.contains(SALE)
            && table.contains("clicks: 2 recipient(s) (50.0%), 4 click(s)"),
        "{table}"
    );
    let csv = stdout(&d.cli(&["report", "offer", "--format", "csv"]));
    assert!(csv.contains("clicks,2,50.00\nclicks_total,4,\n"), "{csv}");
    assert!(
        csv.contains(&format!("link {SALE},1,25.00\nlink_total {SALE},2,\n")),
        "{csv}"
    );
    let html = d.path("r.html");
    assert!(
        d.cli(&[
            "report",
            "offer",
            "--format",
            "html",
            "-o",
            html.to_str().unwrap()
        ])
        .status
        .success()
    );
    let html = std::fs::read_to_string(html).unwrap();
    assert!(
        html.contains("<h2>Tracked links</h2>")
            && html.contains("https://shop.example.com/sale?utm=push"),
        "{html}"
    );
    let export = d.path("x.csv");
    assert!(
        d.cli(&["export", "offer", "-o", export.to_str().unwrap()])
            .status
            .success()
    );
    let mut rd = csv::Reader::from_path(&export).unwrap();
    let at = rd
        .headers()
        .unwrap()
        .iter()
        .position(|h| h == "clicked_at")
        .expect("a clicked_at column");
    let clicked: Vec<bool> = rd.records().map(|r| !r.unwrap()[at].is_empty()).collect();
    let export = std::fs::read_to_string(export).unwrap();
    // Import order: wa 15550001, wa 15550002, tg 1001, tg 1002.
    assert_eq!(clicked, vec![true, false, true, false], "{export}");
    // `recipients --outcome clicked` lists exactly the clicked ones, counted.
    let v = d.cli_json(&["recipients", "offer", "--outcome", "clicked"]);
    let users: Vec<&str> = v["data"]["recipients"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["channel_user_id"].as_str().unwrap())
        .collect();
    assert_eq!(users, vec!["15550001", "1001"], "{v}");
    assert_eq!(v["data"]["total"], 2, "{v}");
    // The panel's push page: the clicks, the per-link table, and the
    // explorer's "Clicked a link" list equals the CLI's.
    let panel = crate::panel::PanelClient::sign_in(d, true);
    let page = panel.get("/pushes/offer");
    assert_eq!(page.status, 200, "{}", page.body);
    let text = page.text();
    assert!(
        text.contains("Tracked links")
            && text.contains("https://shop.example.com/sale?utm=push")
            && text.contains(r#"data-field="clicks">2<"#)
            && text.contains(r#"data-field="clicks_total">4<"#),
        "{text}"
    );
    let list = panel.get("/pushes/offer/recipients?outcome=clicked").text();
    for (user, listed) in [
        ("15550001", true),
        ("1001", true),
        ("15550002", false),
        ("1002", false),
    ] {
        assert_eq!(
            list.contains(user),
            listed,
            "{user} in the clicked list: {list}"
        );
    }
}

#[test]
fn whatsapp_and_telegram_links_render_as_l_urls_and_clicks_move_the_indicators() {
    let rt = runtime();
    let wa = rt.block_on(MockPlatform::start(Platform::Whatsapp));
    let tg = rt.block_on(MockPlatform::start(Platform::Telegram));
    let cfg = links_config(
        "300ms",
        "individual",
        &format!("{}\n{}", wa.channel_toml("wa"), tg.channel_toml("tg")),
    );
    let mut d = TestDaemon::prepare(&cfg);
    d.write_script("10.lua", OFFER);
    d.spawn();
    let members: Vec<(String, String)> = [
        ("wa", "15550001"),
        ("wa", "15550002"),
        ("tg", "1001"),
        ("tg", "1002"),
    ]
    .iter()
    .map(|(c, u)| (c.to_string(), u.to_string()))
    .collect();
    import_members(&d, &members);
    let push = start(&d, "offer", "offer");

    let sent = sent_links(&wa, &tg);

    // A preview (nothing sent) shows where each tracked link leads.
    let preview = d.cli_json(&["audience", "preview", "all", "--template", "offer"]);
    let shown = preview["data"]["samples"][0]["routed"]["outbound"].to_string();
    assert!(shown.contains(SALE) && shown.contains(SHOP), "{preview}");
    assert!(!pushd::links::marker::contains_marker(&shown), "{preview}");

    let r = report(&d, "offer");
    assert_eq!(r["links"][0]["url"], SALE);
    assert_eq!(r["links"][1]["url"], SHOP);
    assert_eq!(
        (r["clicks"].as_u64(), r["clicks_total"].as_u64()),
        (Some(0), Some(0))
    );
    assert_eq!(r["not_read_or_interacted"], 4);

    // WhatsApp user 1 reads the message: Read Only.
    read_receipt(&rt, &d, "15550001");
    assert_eq!(report(&d, "offer")["read_only"], 1);

    wait_past_window(&d, push, 300);
    // The read WhatsApp recipient taps the button: Read & Interacted.
    let (status, location) = open(
        &rt,
        &local(&d, &sent["wa:15550001"].1),
        "GET",
        Some(BROWSER),
    );
    assert_eq!((status, location.as_deref()), (302, Some(SHOP)));
    let r = report(&d, "offer");
    assert_eq!(
        (r["read_and_interacted"].as_u64(), r["read_only"].as_u64()),
        (Some(1), Some(0)),
        "{r}"
    );
    assert_eq!(
        (r["clicks"].as_u64(), r["clicks_total"].as_u64()),
        (Some(1), Some(1)),
        "{r}"
    );
    // A Telegram recipient (no read receipts) opens the text link: Interacted Only.
    let tg_text = local(&d, &sent["tg:1001"].0);
    let (status, location) = open(&rt, &tg_text, "GET", Some(BROWSER));
    assert_eq!((status, location.as_deref()), (302, Some(SALE)));
    let r = report(&d, "offer");
    assert_eq!(r["interacted_only"], 1, "{r}");
    assert_eq!(r["not_read_or_interacted"], 2, "{r}");
    assert_eq!(
        (r["clicks"].as_u64(), r["clicks_total"].as_u64()),
        (Some(2), Some(2)),
        "{r}"
    );
    assert_eq!(r["percent"]["clicks"], 50.0, "{r}");

    // Again, and then the other link: no indicator moves, the totals do.
    let before = report(&d, "offer");
    assert_eq!(open(&rt, &tg_text, "GET", Some(BROWSER)).0, 302);
    assert_eq!(
        open(&rt, &local(&d, &sent["tg:1001"].1), "GET", Some(BROWSER)).0,
        302
    );
    let r = report(&d, "offer");
    for k in [
        "read_and_interacted",
        "read_only",
        "interacted_only",
        "not_read_or_interacted",
        "clicks",
    ] {
        assert_eq!(r[k], before[k], "{k} moved on a repeat click: {r}");
    }
    assert_eq!(r["clicks_total"], 4, "{r}");
    assert_eq!(r["links"][0]["clicks"], 1, "{r}");
    assert_eq!(r["links"][0]["clicks_total"], 2, "{r}");
    assert_eq!(r["links"][1]["clicks"], 2, "{r}");
    assert_eq!(r["links"][1]["clicks_total"], 2, "{r}");
    assert_consistent(&d, push);

    check_renderings(&d);
}

/// A daemon with `members` simulator members (every send a success) and
/// push "p" of [`OFFER`], finished and past its preview window.
struct Fixture {
    d: TestDaemon,
    push: i64,
    key: Key,
    /// The sent deliveries, in order.
    ids: Vec<i64>,
    /// The simulator channel's config lines.
    sim: String,
}

impl Fixture {
    fn start(members: u64, window_ms: i64, privacy: &str) -> Fixture {
        let sim = sim(members);
        let mut d = TestDaemon::prepare(&links_config(&format!("{window_ms}ms"), privacy, &sim));
        d.write_script("10.lua", OFFER);
        d.spawn();
        let push = start(&d, "p", "offer");
        let (key, ids) = (key(&d), deliveries(&d, push));
        assert!(ids.len() >= 2, "{ids:?}");
        wait_past_window(&d, push, window_ms);
        Fixture {
            d,
            push,
            key,
            ids,
            sim,
        }
    }

    /// The daemon's `/l/TOKEN` URL of `link` of `delivery`.
    fn url(&self, delivery: i64, link: u8) -> String {
        format!(
            "{}/l/{}",
            self.d.http_base(),
            token::encode(&self.key, delivery, link)
        )
    }

    /// Rewrites `[links]` and reloads.
    fn reconfigure(&self, window: &str, privacy: &str) {
        std::fs::write(
            &self.d.config_path,
            links_config(window, privacy, &self.sim),
        )
        .unwrap();
        let v = self.d.cli_json(&["reload"]);
        assert_eq!(v["ok"], true, "{v}");
        assert_eq!(v["data"]["config"]["ok"], true, "{v}");
    }
}

#[test]
fn previews_and_head_never_count() {
    let rt = runtime();
    let f = Fixture::start(3, 300, "individual");
    let (d, ids) = (&f.d, &f.ids);
    // Fetchers, HEAD and a request without a User-Agent: redirected, counted as previews only.
    let before = counts(&report(d, "p"));
    for ua in [
        Some("Slackbot-LinkExpanding 1.0 (+https://api.slack.com/robots)"),
        Some("WhatsApp/2.23.20.0 A"),
        Some("TelegramBot (like TwitterBot)"),
        Some("facebookexternalhit/1.1 (+http://www.facebook.com/externalhit_uatext.php)"),
        Some("Twitterbot/1.0"),
        None,
    ] {
        assert_eq!(
            open(&rt, &f.url(ids[0], 0), "GET", ua),
            (302, Some(SALE.to_string())),
            "{ua:?}"
        );
    }
    assert_eq!(
        open(&rt, &f.url(ids[0], 1), "HEAD", Some(BROWSER)),
        (302, Some(SHOP.to_string()))
    );
    let r = report(d, "p");
    assert_eq!(r["links"][0]["previews"], 6, "{r}");
    assert_eq!(r["links"][1]["previews"], 1, "{r}");
    let mut expect = before.clone();
    expect["links"] = r["links"].clone();
    assert_eq!(counts(&r), expect, "a preview moved a count");
    assert_eq!(r["clicks_total"], 0);
    assert_eq!(count(&d.db(), "SELECT count(*) FROM link_clicks"), 0);

    // A person's browser within the preview window is the platform's fetcher too.
    f.reconfigure("1h", "individual");
    assert_eq!(open(&rt, &f.url(ids[0], 0), "GET", Some(BROWSER)).0, 302);
    let r = report(d, "p");
    assert_eq!(r["links"][0]["previews"], 7, "{r}");
    assert_eq!(counts(&r)["clicks_total"], 0, "{r}");
    // Past it, the same request is a click.
    f.reconfigure("300ms", "individual");
    assert_eq!(open(&rt, &f.url(ids[0], 0), "GET", Some(BROWSER)).0, 302);
    assert_eq!(report(d, "p")["clicks"], 1);
    assert_consistent(d, f.push);
}

#[test]
fn privacy_anonymous_counts_per_link_only_and_off_records_nothing() {
    let rt = runtime();
    let f = Fixture::start(3, 300, "anonymous");
    let (d, ids) = (&f.d, &f.ids);
    let before = report(d, "p");
    // Anonymous: per-link totals only, nothing about who clicked.
    for id in [ids[0], ids[0], ids[1]] {
        assert_eq!(open(&rt, &f.url(id, 0), "GET", Some(BROWSER)).0, 302);
    }
    let r = report(d, "p");
    assert_eq!(
        (r["clicks"].as_u64(), r["clicks_total"].as_u64()),
        (Some(0), Some(3)),
        "{r}"
    );
    assert_eq!(
        (
            r["links"][0]["clicks"].as_u64(),
            r["links"][0]["clicks_total"].as_u64()
        ),
        (Some(0), Some(3)),
        "{r}"
    );
    assert_eq!(
        r["not_read_or_interacted"], before["not_read_or_interacted"],
        "{r}"
    );
    assert_eq!(count(&d.db(), "SELECT count(*) FROM link_clicks"), 0);
    assert_eq!(
        count(
            &d.db(),
            "SELECT count(*) FROM deliveries WHERE interacted_at IS NOT NULL"
        ),
        0
    );

    // Off: redirect, record nothing at all.
    f.reconfigure("300ms", "off");
    let state = link_state(d);
    assert_eq!(
        open(&rt, &f.url(ids[1], 1), "GET", Some(BROWSER)),
        (302, Some(SHOP.to_string()))
    );
    assert_eq!(
        open(&rt, &f.url(ids[1], 1), "HEAD", None),
        (302, Some(SHOP.to_string()))
    );
    let forged = format!("{}/l/{}", d.http_base(), "A".repeat(22));
    assert_eq!(open(&rt, &forged, "GET", Some(BROWSER)).0, 404);
    assert_eq!(link_state(d), state, "privacy off recorded something");

    // Individual: the click is that recipient's interaction.
    f.reconfigure("300ms", "individual");
    assert_eq!(open(&rt, &f.url(ids[1], 1), "GET", Some(BROWSER)).0, 302);
    let r = report(d, "p");
    assert_eq!(
        (
            r["clicks"].as_u64(),
            r["clicks_total"].as_u64(),
            r["interacted_only"].as_u64()
        ),
        (Some(1), Some(4), Some(1)),
        "{r}"
    );
    assert_consistent(d, f.push);
}

#[test]
fn forged_truncated_and_other_push_tokens_are_404_and_record_nothing() {
    let rt = runtime();
    let sim = sim(4);
    let mut d = TestDaemon::prepare(&links_config("0s", "individual", &sim));
    // Push "two" tracks two links, push "one" a single one.
    d.write_script(
        "10.lua",
        r#"
audience "all" { }
template "two" { en = { text = 'A {{track "https://a.example/"}} B {{track "https://b.example/"}}' } }
template "one" { en = { text = 'C {{track "https://c.example/"}}' } }
"#,
    );
    d.spawn();
    let two = start(&d, "two", "two");
    let one = start(&d, "one", "one");
    let key = key(&d);
    let (a, c) = (deliveries(&d, two)[0], deliveries(&d, one)[0]);
    let base = d.http_base();
    let get = |path: &str| open(&rt, &format!("{base}{path}"), "GET", Some(BROWSER));
    let good = token::encode(&key, a, 1);
    let before = link_state(&d);

    let mut altered = good.clone().into_bytes();
    altered[10] = if altered[10] == b'x' { b'y' } else { b'x' };
    let altered = String::from_utf8(altered).unwrap();
    // `good`'s MAC on push "one"'s delivery: its payload spelled with c instead of a.
    let moved = format!("{}{}", &token::encode(&key, c, 1)[..6], &good[6..]);
    let other_key = Key::from_bytes(&[7u8; token::KEY_LEN]).unwrap();
    let bad = [
        format!("/l/{}", "A".repeat(22)),
        format!("/l/{}", &good[..21]),
        format!("/l/{}", &good[1..]),
        format!("/l/{good}A"),
        format!("/l/{altered}"),
        format!("/l/{moved}"),
        // Genuine MACs, but push "one" has no link 1, and delivery 999999 does not exist.
        format!("/l/{}", token::encode(&key, c, 1)),
        format!("/l/{}", token::encode(&key, 999_999, 0)),
        format!("/l/{}", token::encode(&other_key, a, 1)),
        "/l/https:%2F%2Fevil.example".to_string(),
        "/l/".to_string(),
    ];
    for path in &bad {
        let (status, location) = get(path);
        assert_eq!((status, location), (404, None), "{path}");
    }
    assert_eq!(link_state(&d), before, "a refused token recorded something");
    // Never an open redirect: the query is not where a link goes.
    assert_eq!(
        get(&format!(
            "/l/{good}?url=https://evil.example&next=https://evil.example"
        )),
        (302, Some("https://b.example/".to_string()))
    );
    assert_eq!(
        get(&format!("/l/{}", token::encode(&key, c, 0))),
        (302, Some("https://c.example/".to_string()))
    );
    assert_eq!(count(&d.db(), "SELECT count(*) FROM link_clicks"), 2);
    assert_consistent(&d, two);
    assert_consistent(&d, one);
}

/// Clicks fired by 16 clients until the work runs out or the daemon dies:
/// per delivery, how many were asked and how many answered 302.
struct Storm {
    task: tokio::task::JoinHandle<()>,
    answered: Arc<Mutex<BTreeMap<i64, u64>>>,
    asked: Arc<Mutex<BTreeMap<i64, u64>>>,
}

impl Storm {
    fn start(rt: &tokio::runtime::Runtime, work: Vec<(i64, String)>) -> Storm {
        let answered: Arc<Mutex<BTreeMap<i64, u64>>> = Arc::default();
        let asked: Arc<Mutex<BTreeMap<i64, u64>>> = Arc::default();
        let task = {
            let (answered, asked) = (answered.clone(), asked.clone());
            let queue = Arc::new(Mutex::new(work));
            rt.spawn(async move {
                let client = reqwest::Client::builder()
                    .redirect(reqwest::redirect::Policy::none())
                    .timeout(Duration::from_secs(10))
                    .build()
                    .expect("client");
                let mut tasks = Vec::new();
                for _ in 0..16 {
                    let (client, queue, answered, asked) = (
                        client.clone(),
                        queue.clone(),
                        answered.clone(),
                        asked.clone(),
                    );
                    tasks.push(tokio::spawn(async move {
                        loop {
                            let Some((id, url)) = queue.lock().unwrap().pop() else {
                                return;
                            };
                            *asked.lock().unwrap().entry(id).or_default() += 1;
                            match client.get(&url).header("User-Agent", BROWSER).send().await {
                                Ok(r) if r.status() == 302 => {
                                    *answered.lock().unwrap().entry(id).or_default() += 1
                                }
                                Ok(r) => panic!("click answered {}", r.status()),
                                Err(_) => return, // the daemon is gone
                            }
                        }
                    }));
                }
                for t in tasks {
                    t.await.expect("click task");
                }
            })
        };
        Storm {
            task,
            answered,
            asked,
        }
    }
}

/// (delivery → clicks) recorded for `push`.
fn recorded_clicks(d: &TestDaemon, push: i64) -> BTreeMap<i64, u64> {
    strings(
        &d.db(),
        &format!("SELECT delivery_id || ':' || n FROM link_clicks WHERE push_id = {push}"),
    )
    .iter()
    .map(|s| {
        let (id, n) = s.split_once(':').unwrap();
        (id.parse().unwrap(), n.parse().unwrap())
    })
    .collect()
}

/// The link counters equal a recount of the recorded clicks, and every
/// clicker (and only they) interacted.
fn assert_recount(d: &TestDaemon, push: i64, recorded: &BTreeMap<i64, u64>) {
    let db = d.db();
    let sum = |sql: &str| count(&db, sql);
    assert_eq!(
        sum(&format!(
            "SELECT clicks FROM links WHERE push_id = {push} AND link = 0"
        )),
        recorded.values().sum::<u64>() as i64
    );
    assert_eq!(
        sum(&format!(
            "SELECT clicked FROM links WHERE push_id = {push} AND link = 0"
        )),
        recorded.len() as i64
    );
    assert_eq!(
        sum(&format!(
            "SELECT coalesce((SELECT clicked FROM link_totals WHERE push_id = {push}), 0)"
        )),
        recorded.len() as i64
    );
    assert_eq!(
        sum(&format!(
            "SELECT count(*) FROM deliveries WHERE push_id = {push} AND interacted_at IS NOT NULL"
        )),
        recorded.len() as i64
    );
    assert_consistent(d, push);
}

#[test]
fn a_crash_between_click_and_record_loses_at_most_that_click_and_never_double_counts() {
    let rt = runtime();
    let f = Fixture::start(200, 0, "individual");
    let (mut d, push, key, ids) = (f.d, f.push, f.key, f.ids);
    let base = d.http_base();
    // Every recipient clicks its text link twice, 16 at a time.
    let work: Vec<(i64, String)> = ids
        .iter()
        .flat_map(|&id| {
            let u = format!("{base}/l/{}", token::encode(&key, id, 0));
            [(id, u.clone()), (id, u)]
        })
        .collect();
    let storm = Storm::start(&rt, work);
    wait_for(
        "some clicks to be answered",
        Duration::from_secs(30),
        || (storm.answered.lock().unwrap().values().sum::<u64>() >= 60).then_some(()),
    );
    d.crash();
    rt.block_on(storm.task).expect("click storm");
    d.spawn();

    let recorded = recorded_clicks(&d, push);
    let (answered, asked) = (
        storm.answered.lock().unwrap().clone(),
        storm.asked.lock().unwrap().clone(),
    );
    let total_answered: u64 = answered.values().sum();
    eprintln!(
        "crash after {total_answered} answered clicks of {} asked; {} recorded",
        asked.values().sum::<u64>(),
        recorded.values().sum::<u64>()
    );
    assert!(
        total_answered < 400,
        "the crash came after the storm ({total_answered} answered)"
    );
    for &id in &ids {
        let (got, ok, tried) = (
            recorded.get(&id).copied().unwrap_or(0),
            answered.get(&id).copied().unwrap_or(0),
            asked.get(&id).copied().unwrap_or(0),
        );
        // Every answered click is recorded; nothing is recorded twice.
        assert!(
            ok <= got && got <= tried,
            "delivery {id}: answered {ok}, recorded {got}, asked {tried}"
        );
    }
    assert_recount(&d, push, &recorded);

    // After the restart, everyone clicks once more: each recipient counts once.
    for &id in &ids {
        let u = format!("{}/l/{}", d.http_base(), token::encode(&key, id, 0));
        assert_eq!(open(&rt, &u, "GET", Some(BROWSER)).0, 302);
    }
    let r = report(&d, "p");
    assert_eq!(r["clicks"], ids.len(), "{r}");
    assert_eq!(r["interacted_only"], ids.len(), "{r}");
    assert_eq!(
        r["clicks_total"].as_u64().unwrap(),
        recorded.values().sum::<u64>() + ids.len() as u64,
        "{r}"
    );
    assert_consistent(&d, push);
}

#[test]
fn templates_that_track_links_load_only_when_they_can_be_sent() {
    use crate::script::{env, limits, load_with, member, show};
    use pushd::links::marker;
    use pushd::model::{Outbound, Routed};
    use pushd::script::{LinkEnv, ScriptEnv};
    let with_url = ScriptEnv {
        links: LinkEnv {
            public_url: Some(PUBLIC.into()),
            track_buttons: false,
        },
        ..env()
    };
    let g = load_with(&[("t.lua", OFFER)], &limits(), &with_url)
        .unwrap_or_else(|e| panic!("{}", show(&e)));
    assert_eq!(g.templates["offer"].tracked, vec![SALE, SHOP]);
    let out = g.prepare_blocking("offer", vec![member(1, "sim", "en")], 0);
    let Ok(Routed::Send {
        outbound: Outbound::Message { message, .. },
        ..
    }) = &out[0]
    else {
        panic!("{out:?}")
    };
    // Markers stand where the delivery's URLs go.
    assert_eq!(
        message.text,
        format!("Hi Member 1, the sale is on: {}", marker::marker(0))
    );
    assert_eq!(message.buttons[0].url, Some(marker::marker(1).to_string()));

    let fails = |script: &str, env: &ScriptEnv, words: &[&str]| {
        let errs = load_with(&[("t.lua", script)], &limits(), env)
            .err()
            .unwrap_or_else(|| panic!("should not load:\n{script}"));
        assert!(
            errs.iter().any(|e| {
                let t = e.to_string();
                t.contains("scripts/t.lua:") && words.iter().all(|w| t.contains(w))
            }),
            "expected an error mentioning {words:?}, got:\n{}",
            show(&errs)
        );
    };
    fails(OFFER, &env(), &["offer", "[links] public_url is not set"]);
    fails(
        r#"template "t" { en = { text = "x", buttons = { { title = "Go", payload = "P", track = true } } } }"#,
        &with_url,
        &["buttons[1]", "track = true is for URL buttons"],
    );
    fails(
        r#"template "t" { en = { text = 'x {{track "javascript:alert(1)"}}' } }"#,
        &with_url,
        &["http(s)"],
    );
    let many: String = (0..17)
        .map(|i| format!("{{{{track \"https://{i}.example/\"}}}} "))
        .collect();
    fails(
        &format!("template \"t\" {{ en = {{ text = '{many}' }} }}"),
        &with_url,
        &["more than 16"],
    );
    let every_button = ScriptEnv {
        links: LinkEnv {
            public_url: Some(PUBLIC.into()),
            track_buttons: true,
        },
        ..env()
    };
    fails(
        r#"template "t" { en = { text = "x", buttons = { { title = "Go", url = "https://x.example/{{id}}" } } } }"#,
        &every_button,
        &["buttons[1]", "must be fixed", "track = false"],
    );
    fails(
        r#"template "t" { render = function(m) return { text = "x", buttons = { { title = "Go", url = "https://x.example/", track = true } } } end }"#,
        &with_url,
        &["track = true works in template tables"],
    );
}
