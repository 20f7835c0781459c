//! The panel in a real headless Chromium: signing in with a link, live
//! progress without a reload, the push result equal to the socket's, Inspect,
//! the Export download byte for byte, retry audience then Push again,
//! pause / resume / cancel, the viewer's and another site's refusals, and
//! hostile names shown as text. Also the screenshots the README uses.

use super::{audit, login_link};
use crate::dispatch::{create_push, sim_daemon, wait_status};
use crate::e2e::{HELLO, import_members, runtime};
use crate::support::browser::Browser;
use crate::support::mocks::creds::WEBHOOK_SECRET;
use crate::support::mocks::{Behavior, MockPlatform};
use crate::support::webhooks::*;
use crate::support::*;
use crate::webhooks::http;
use pushd::model::Platform;
use serde_json::{Value, json};
use std::time::Duration;

fn now_s() -> i64 {
    chrono::Utc::now().timestamp()
}

/// `"1,234"` → 1234.
fn number(text: &str) -> u64 {
    text.replace(',', "")
        .parse()
        .unwrap_or_else(|_| panic!("not a number: {text:?}"))
}

/// A finished push "first" to u1..u10 on a custom mock with every slice
/// constructed: u1-u2 read & interacted, u3-u5 read only, u6 interacted
/// only, u7 not read; u8 blocked, u9 invalid, u10 blocked.
fn finished_push(rt: &tokio::runtime::Runtime) -> (TestDaemon, MockPlatform) {
    let mock = rt.block_on(MockPlatform::start(Platform::Custom));
    let cfg = base_config(&format!(
        "[dispatch]\nrate_per_minute = 0\nmax_attempts = 2\nbackoff_base = \"20ms\"\n{}",
        mock.channel_toml("hook")
    ));
    let mut d = TestDaemon::prepare(&cfg);
    d.write_script("10.lua", HELLO);
    d.spawn();
    let users: Vec<(String, String)> = (1..=10)
        .map(|i| ("hook".to_string(), format!("u{i}")))
        .collect();
    import_members(&d, &users);
    mock.script("u8", Behavior::Block);
    mock.script("u9", Behavior::InvalidRecipient);
    mock.script("u10", Behavior::Block);
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
    let provider = |u: &str| d.provider_message_id(u);
    let mut evs = Vec::new();
    for u in ["u1", "u2", "u3", "u4", "u5"] {
        evs.push(custom_status(&provider(u), "read", now_s()));
    }
    for (i, u) in ["u1", "u2", "u6"].iter().enumerate() {
        evs.push(custom_message(
            &format!("c{i}"),
            u,
            None,
            Some("YES"),
            Some(&provider(u)),
            now_s(),
        ));
    }
    evs.push(custom_status(&provider("u7"), "delivered", now_s()));
    let body = custom_batch(&evs);
    let (status, text) = http(
        rt,
        "POST",
        &format!("{}/webhooks/hook", d.http_base()),
        &standard_webhook_headers(WEBHOOK_SECRET, "wh-panel", now_s(), body.as_bytes()),
        &body,
    );
    assert_eq!(status, 200, "{text}");
    (d, mock)
}

fn signed_in(b: &mut Browser, d: &TestDaemon, extra: &[&str]) {
    b.goto(&login_link(d, extra));
    assert_eq!(
        b.eval("location.pathname"),
        json!("/"),
        "the login link lands on the pushes"
    );
}

#[test]
fn a_login_link_opens_the_pushes_page_and_a_running_push_grows_without_a_reload() {
    let Some(mut b) = Browser::launch("panel_live_pushes") else {
        return;
    };
    let d = sim_daemon(400, "rate_per_minute = 600", "");
    create_push(
        &d,
        &["--audience", "all", "--template", "hello", "--name", "live"],
    );
    wait_for("the push to send", Duration::from_secs(30), || {
        let p = crate::dispatch::show(&d, "live");
        (p["status"] == "running" && p["sent"].as_u64() > Some(0)).then_some(())
    });
    signed_in(&mut b, &d, &[]);
    assert_eq!(b.eval("document.title"), json!("Pushes · pushd"));
    assert_eq!(b.text("tr[data-push] th a"), "live");
    assert_eq!(b.text("tr[data-push] .status"), "running");
    let first = number(&b.text("tr[data-push] [data-field=sent]"));
    b.eval("window.__same_page = true");
    let grown = b.wait_js(
        "the sent count to grow on the page",
        Duration::from_secs(20),
        &format!(
            "(() => {{ const n = +document.querySelector('tr[data-push] [data-field=sent]').textContent.replace(/,/g, ''); return n > {first} ? n : 0; }})()"
        ),
    );
    assert!(grown.as_u64().unwrap() > first);
    assert_eq!(
        b.eval("window.__same_page === true"),
        json!(true),
        "the page was reloaded"
    );
    // The progress bar moved with it, and the connection shows as live.
    assert!(
        b.eval("document.querySelector('tr[data-push] progress').value")
            .as_f64()
            .unwrap()
            > 0.0
    );
    assert_eq!(
        b.eval("document.querySelector('[data-conn]').hidden"),
        json!(false)
    );
    // Times are shown in the browser's timezone, with UTC on hover.
    let title = b.eval("document.querySelector('tr[data-push] time').title");
    assert!(title.as_str().unwrap().ends_with(" UTC"), "{title}");
    assert!(
        b.seen("Runtime.exceptionThrown").is_empty(),
        "script errors: {:?}",
        b.seen("Runtime.exceptionThrown")
    );
}

#[test]
fn the_push_page_equals_the_socket_inspect_lists_the_failures_and_export_is_byte_for_byte() {
    let Some(mut b) = Browser::launch("panel_push_result") else {
        return;
    };
    let rt = runtime();
    let (d, _mock) = finished_push(&rt);
    let report = d.cli_json(&["report", "first"])["data"].clone();
    assert_eq!(report["read_only"], 3, "{report}");
    signed_in(&mut b, &d, &[]);
    b.click_and_wait("a[href='/pushes/first']");
    assert_eq!(b.text("h1"), "first");
    assert_eq!(b.text(".head .tag"), "final");
    for key in [
        "sent_success",
        "read_and_interacted",
        "read_only",
        "interacted_only",
        "not_read_or_interacted",
        "sent_fail",
    ] {
        let count = b.text(&format!("[data-field={key}_n]"));
        let pct = b.text(&format!("[data-field={key}_p]"));
        assert_eq!(number(&count), report[key].as_u64().unwrap(), "{key} count");
        assert_eq!(
            pct,
            format!("{:.1}%", report["percent"][key].as_f64().unwrap()),
            "{key} %"
        );
        // The pie's slice spans the same share of the circle.
        if key != "sent_success" {
            let span = b.eval(&format!(
                "(() => {{ const p = document.querySelector('figure.pie path[data-slice={key}]'); return p ? (p.dataset.end - p.dataset.start) / 3.6 : 0; }})()"
            ));
            let want = report["percent"][key].as_f64().unwrap();
            assert!(
                (span.as_f64().unwrap() - want).abs() < 0.1,
                "{key}: slice {span} vs {want}%"
            );
        }
    }
    assert_eq!(
        b.eval("document.querySelectorAll('figure.pie path.slice').length"),
        json!(5)
    );
    // The push page shows Start At and Finish At.
    assert_eq!(
        b.eval("document.querySelectorAll('.stats time').length"),
        json!(2)
    );

    // Inspect, next to Sent Fail: the groups of push.failures.
    b.click_and_wait("#ind-sent_fail td.act a");
    let failures = d.cli_json(&["failures", "first"])["data"].clone();
    let rows = b.eval(
        "[...document.querySelectorAll('table.failures tbody tr')].map(r => [...r.cells].slice(0, 3).map(c => c.textContent.trim()))",
    );
    let want: Vec<Value> = failures["groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| json!([g["class"], g["code"], g["count"].to_string()]))
        .collect();
    assert_eq!(rows, json!(want));
    let samples = b.text("table.failures tbody tr td.samples");
    assert!(samples.contains("hook:u"), "{samples}");

    // Export detailed report: the very bytes `pushd export` writes.
    b.goto(&format!("{}/pushes/first", d.http_base()));
    b.events.clear();
    b.eval("document.querySelector('a[href=\"/pushes/first/export.csv\"]').click()");
    let downloaded = b.wait_download();
    let file = d.path("first.csv");
    let out = d.cli(&["export", "first", "-o", file.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let expected = std::fs::read(&file).unwrap();
    assert!(expected.len() > 100);
    assert_eq!(
        downloaded, expected,
        "the download differs from `pushd export`"
    );
}

#[test]
fn a_retry_audience_then_push_again_reaches_exactly_the_failed_members() {
    let Some(mut b) = Browser::launch("panel_retry_push_again") else {
        return;
    };
    let rt = runtime();
    let (d, mock) = finished_push(&rt);
    signed_in(&mut b, &d, &[]);
    b.goto(&format!("{}/pushes/first", d.http_base()));
    b.click_and_wait("a.btn.primary[href='/pushes/first/retry']");
    b.eval("document.getElementById('name').value = 'first-retry'");
    b.click_and_wait("form.form button[type=submit]");
    assert_eq!(
        b.eval("location.pathname"),
        json!("/audiences/first-retry/push")
    );
    assert_eq!(
        b.text(".meta .n"),
        "3",
        "the retry audience holds the three failed"
    );
    assert_eq!(
        b.eval("document.getElementById('template').value"),
        json!("hello")
    );
    let entries = audit(&d, "audience.retry");
    assert_eq!(entries.len(), 1);
    assert!(
        entries[0]["actor"].as_str().unwrap().ends_with("(admin)"),
        "{entries:?}"
    );
    // The platform takes them now; push again.
    for u in ["u8", "u9", "u10"] {
        mock.script(u, Behavior::Succeed);
    }
    b.eval("document.getElementById('name').value = 'second'");
    b.click_and_wait("form.form button[type=submit]");
    assert!(b.text("h1").contains("second"), "{}", b.text("h1"));
    wait_status(&d, "second", "completed", Duration::from_secs(60));
    let db = d.db();
    let members = |push: &str, state: &str| -> Vec<String> {
        strings(
            &db,
            &format!(
                "SELECT m.channel_user_id FROM deliveries d JOIN members m ON m.id = d.member_id
                 JOIN pushes p ON p.id = d.push_id WHERE p.name = '{push}' {state} ORDER BY 1"
            ),
        )
    };
    let failed = members("first", "AND d.state = 3");
    assert_eq!(failed, ["u10", "u8", "u9"]);
    assert_eq!(
        members("second", ""),
        failed,
        "push again went to someone else"
    );
    assert_eq!(mock.requests_for("u8").len(), 2);
    assert_eq!(mock.requests_for("u1").len(), 1);
    let report = d.cli_json(&["report", "second"])["data"].clone();
    assert_eq!(report["retry_of"], "first");
    assert_eq!(report["sent_success"], 3);
}

#[test]
fn pause_resume_and_cancel_from_the_page_and_a_viewer_can_do_none_of_them() {
    let Some(mut b) = Browser::launch("panel_lifecycle") else {
        return;
    };
    let d = sim_daemon(400, "rate_per_minute = 120", "");
    create_push(
        &d,
        &["--audience", "all", "--template", "hello", "--name", "slow"],
    );
    wait_status(&d, "slow", "running", Duration::from_secs(30));

    // A viewer: no action on the page, and a forged POST with its own token is 403.
    signed_in(&mut b, &d, &["--viewer"]);
    b.goto(&format!("{}/pushes/slow", d.http_base()));
    assert_eq!(b.text(".badge"), "viewer");
    for action in ["pause", "resume", "cancel", "retry"] {
        let n = b.eval(&format!("document.querySelectorAll('a[href$=\"/{action}\"], form[action$=\"/{action}\"]').length"));
        assert_eq!(n, json!(0), "a viewer sees {action}");
    }
    let status = b.eval(
        "fetch('/pushes/slow/pause', { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, \
         body: 'csrf=' + document.querySelector('input[name=csrf]').value }).then(r => r.status)",
    );
    assert_eq!(status, json!(403));
    assert_eq!(crate::dispatch::show(&d, "slow")["status"], "running");

    // An admin, with a confirmation each time.
    signed_in(&mut b, &d, &[]);
    b.goto(&format!("{}/pushes/slow", d.http_base()));
    let mut before = "running";
    for (action, after) in [
        ("pause", "paused"),
        ("resume", "running"),
        ("cancel", "cancelled"),
    ] {
        b.click_and_wait(&format!("a[href='/pushes/slow/{action}']"));
        assert!(
            b.text("form.confirm h1").ends_with("slow?"),
            "{action}: no confirmation"
        );
        assert_eq!(
            crate::dispatch::show(&d, "slow")["status"],
            before,
            "{action} before confirming"
        );
        before = after;
        b.click_and_wait("form.confirm button[type=submit]");
        assert_eq!(b.eval("location.pathname"), json!("/pushes/slow"));
        assert_eq!(b.text(".head .status"), after);
        assert_eq!(crate::dispatch::show(&d, "slow")["status"], after);
        let e = &audit(&d, &format!("push.{action}"))[0];
        assert!(e["actor"].as_str().unwrap().ends_with("(admin)"), "{e}");
    }
    assert_eq!(b.text(".head .tag"), "final");
}

#[test]
fn another_site_cannot_act_through_the_browser() {
    let Some(mut b) = Browser::launch("panel_cross_site") else {
        return;
    };
    let d = sim_daemon(5, "", "");
    super::scheduled_push(&d, "later");
    signed_in(&mut b, &d, &[]);
    let csrf = b.eval("document.querySelector('input[name=csrf]').value");
    // A page of another origin posts a form (with the stolen token, even) to the panel.
    let base = d.http_base();
    let attack = format!(
        "<form method=post action='{base}/pushes/later/cancel'><input name=csrf value='{}'><button>go</button></form>",
        csrf.as_str().unwrap()
    );
    b.goto(&format!("data:text/html,{}", attack.replace('#', "%23")));
    b.click_and_wait("form button");
    assert_eq!(b.eval("location.pathname"), json!("/pushes/later/cancel"));
    let shown = b.eval("document.body.innerText");
    assert!(
        shown.as_str().unwrap().contains("Sign in") || shown.as_str().unwrap().contains("Refused"),
        "{shown}"
    );
    assert_eq!(crate::dispatch::show(&d, "later")["status"], "scheduled");
    assert!(audit(&d, "push.cancel").is_empty());
}

#[test]
fn hostile_names_and_template_text_render_as_text() {
    let Some(mut b) = Browser::launch("panel_escaping") else {
        return;
    };
    let rt = runtime();
    let mock = rt.block_on(MockPlatform::start(Platform::Custom));
    let cfg = base_config(&format!(
        "[dispatch]\nrate_per_minute = 0\n{}",
        mock.channel_toml("hook")
    ));
    let mut d = TestDaemon::prepare(&cfg);
    let evil = "<img src=x onerror=alert(1)>";
    d.write_script(
        "10.lua",
        r#"
audience "all" { }
template "hello" { en = { text = "Hi </script><script>alert(2)</script> {{name}}" } }
"#,
    );
    d.spawn();
    let p = d.path("evil.csv");
    std::fs::write(
        &p,
        format!("channel,channel_user_id,name\nhook,\"{evil}\",\"{evil}\"\nhook,ok1,Ok\n"),
    )
    .unwrap();
    let out = d.cli_json(&["members", "import", p.to_str().unwrap()]);
    assert_eq!(out["ok"], true, "{out}");
    mock.script(evil, Behavior::Block);
    create_push(
        &d,
        &["--audience", "all", "--template", "hello", "--name", evil],
    );
    wait_status(&d, evil, "completed", Duration::from_secs(60));
    signed_in(&mut b, &d, &[]);
    let encoded = "%3Cimg%20src%3Dx%20onerror%3Dalert%281%29%3E";
    let base = d.http_base();
    for path in [
        "/".to_string(),
        format!("/pushes/{encoded}"),
        format!("/pushes/{encoded}/failures"),
        format!("/audiences/all/push?from={encoded}"),
    ] {
        b.goto(&format!("{base}{path}"));
        let text = b.eval("document.body.textContent");
        assert!(
            text.as_str().unwrap().contains(evil),
            "{path}: the name is not shown as text"
        );
        assert_eq!(
            b.eval("document.querySelectorAll('img').length"),
            json!(0),
            "{path}: markup got in"
        );
        assert_eq!(
            b.eval("document.querySelectorAll('script:not([src])').length"),
            json!(0),
            "{path}: a script element got in"
        );
    }
    // The template's text, rendered for the hostile member, is text too.
    let bubble =
        b.eval("[...document.querySelectorAll('.bubble')].map(e => e.textContent).join('\\n')");
    assert!(
        bubble
            .as_str()
            .unwrap()
            .contains("</script><script>alert(2)</script>"),
        "{bubble}"
    );
    assert!(
        b.seen("Page.javascriptDialogOpening").is_empty(),
        "a script ran"
    );
}

/// The screenshots the README shows (and an operator would look at):
/// laptop and phone, light and dark, of a simulated campaign with every
/// outcome. Written under the target folder; `PUSHD_UPDATE_DOCS=1` also
/// copies the push page and the pushes page to `docs/`.
#[test]
fn screenshots_of_the_panel() {
    let Some(mut b) = Browser::launch("panel_screenshots") else {
        return;
    };
    let d = sim_daemon(
        2400,
        "rate_per_minute = 0\nmax_attempts = 2",
        "block_rate = 0.04\ninvalid_rate = 0.02\ntransient_rate = 0.03\nread_rate = 0.62\ninteract_rate = 0.3\ndelivered_rate = 0.97",
    );
    create_push(
        &d,
        &[
            "--audience",
            "all",
            "--template",
            "hello",
            "--name",
            "black-friday-2026",
        ],
    );
    wait_status(
        &d,
        "black-friday-2026",
        "completed",
        Duration::from_secs(120),
    );
    wait_for("the receipts to come back", Duration::from_secs(60), || {
        let r = d.cli_json(&["report", "black-friday-2026"])["data"].clone();
        let read = r["read_only"].as_u64()? + r["read_and_interacted"].as_u64()?;
        (read * 2 > r["sent_success"].as_u64()?).then_some(())
    });
    create_push(
        &d,
        &[
            "--audience",
            "all",
            "--template",
            "hello",
            "--name",
            "spring-preview",
            "--rate",
            "90",
        ],
    );
    create_push(
        &d,
        &[
            "--audience",
            "vip",
            "--template",
            "hello",
            "--name",
            "vip-early-access",
            "--at",
            "2099-03-01T09:00:00+08:00",
        ],
    );
    wait_for("spring-preview to send", Duration::from_secs(30), || {
        (crate::dispatch::show(&d, "spring-preview")["sent"].as_u64()? > 3).then_some(())
    });
    signed_in(&mut b, &d, &[]);
    let dir = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("panel-screenshots");
    let base = d.http_base();
    for (scheme, w, h, mobile, tag) in [
        ("light", 1280, 900, false, "desktop"),
        ("dark", 1280, 900, false, "desktop-dark"),
        ("light", 390, 844, true, "phone"),
        ("dark", 390, 844, true, "phone-dark"),
    ] {
        b.viewport(w, h, mobile);
        b.color_scheme(scheme);
        for (page, path) in [
            ("pushes", "/"),
            ("push", "/pushes/black-friday-2026"),
            ("running", "/pushes/spring-preview"),
            ("failures", "/pushes/black-friday-2026/failures"),
            ("again", "/audiences/all/push?from=black-friday-2026"),
        ] {
            b.goto(&format!("{base}{path}"));
            let shot = dir.join(format!("{page}-{tag}.png"));
            b.screenshot(&shot);
            assert!(std::fs::metadata(&shot).unwrap().len() > 5_000);
        }
    }
    if std::env::var("PUSHD_UPDATE_DOCS").is_ok_and(|v| v == "1") {
        let docs = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs");
        std::fs::create_dir_all(&docs).unwrap();
        std::fs::copy(dir.join("push-desktop.png"), docs.join("panel-push.png")).unwrap();
        std::fs::copy(
            dir.join("pushes-desktop.png"),
            docs.join("panel-pushes.png"),
        )
        .unwrap();
    }
}
