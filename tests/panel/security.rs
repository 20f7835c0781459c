//! Who may see and do what: one-time login links, the signed session
//! cookie, slowed-down guessing, security headers on every page, CSRF and
//! same-origin checks, viewers, non-loopback exposure, and no secret of the
//! config on any page.

use super::*;
use crate::dispatch::{create_push, sim_daemon};
use crate::support::*;
use std::time::{Duration, Instant};

#[test]
fn a_login_link_works_once_and_its_cookie_is_http_only_and_strict() {
    let d = sim_daemon(5, "", "");
    let c = PanelClient::new(&d);
    // No session: how to get one, and nothing of the pushes.
    let r = c.get("/");
    assert_eq!(r.status, 401);
    assert!(r.body.contains("pushd panel login"), "{}", r.body);

    let link = login_link(&d, &[]);
    let r = c.get_url(&link);
    assert_eq!(r.status, 303);
    assert_eq!(r.header("location"), "/");
    let cookie = r.header("set-cookie");
    for attr in [
        "pushd_session=",
        "HttpOnly",
        "SameSite=Strict",
        "Path=/",
        "Max-Age=43200",
    ] {
        assert!(cookie.contains(attr), "{attr} missing from {cookie}");
    }
    // Used: refused, and slowed-down attempts never turn it valid again.
    let again = c.get_url(&link);
    assert_eq!(again.status, 403, "{}", again.body);
    assert!(again.body.contains("works once"), "{}", again.body);
    assert!(!again.headers.contains_key("set-cookie"));
    // Made up or malformed: refused.
    assert_eq!(c.get(&format!("/login/{}", "ab".repeat(32))).status, 403);
    assert_eq!(c.get("/login/..%2f..%2fetc").status, 403);

    // Expired: refused even though never used.
    let out = d.cli_json(&["panel", "login", "--ttl", "1s"]);
    let expires =
        chrono::DateTime::parse_from_rfc3339(out["data"]["expires_at"].as_str().unwrap()).unwrap();
    wait_for("the link to expire", Duration::from_secs(10), || {
        // expires_at is shown to the second, truncated.
        (chrono::Utc::now() > expires + chrono::Duration::milliseconds(1100)).then_some(())
    });
    let r = c.get_url(out["data"]["url"].as_str().unwrap());
    assert_eq!(r.status, 403, "an expired link opened a session");

    // Admin-only on the socket, audited without the link itself.
    let entries = audit(&d, "panel.login");
    assert_eq!(entries.len(), 2, "{entries:?}");
    for e in &entries {
        assert_eq!(e["ok"], true);
        let text = e.to_string();
        assert!(
            !text.contains(link.rsplit('/').next().unwrap()),
            "token in audit: {text}"
        );
    }
    let sessions = audit(&d, "panel.session");
    assert_eq!(sessions.len(), 1);
    assert!(
        sessions[0]["actor"].as_str().unwrap().starts_with("panel:")
            && sessions[0]["actor"].as_str().unwrap().ends_with("(admin)"),
        "{sessions:?}"
    );
    // Bad --ttl: a clear error, nothing issued.
    let bad = d.cli(&["panel", "login", "--ttl", "forever"]);
    assert!(!bad.status.success());
    assert!(stderr(&bad).contains("--ttl"), "{}", stderr(&bad));
    assert_eq!(
        audit(&d, "panel.login").len(),
        3,
        "refusal is audited as failed"
    );
    assert_eq!(
        count(&d.db(), "SELECT count(*) FROM panel_logins"),
        2,
        "a refused --ttl issued a link"
    );
}

#[test]
fn sessions_survive_a_restart_and_logout_all_ends_them() {
    let mut d = sim_daemon(5, "", "");
    let c = PanelClient::sign_in(&d, false);
    let unused = login_link(&d, &[]);
    d.stop();
    d.spawn();
    let mut c2 = PanelClient::new(&d);
    c2.cookie = c.cookie.clone();
    assert_eq!(
        c2.get("/").status,
        200,
        "the session ended with the restart"
    );
    // Signing out ends this session only (and needs the panel's own form).
    let other = PanelClient::sign_in(&d, true);
    assert_eq!(other.post("/logout", &[], From::OtherSite).status, 403);
    let r = other.post("/logout", &[], From::Panel);
    assert_eq!(r.status, 303);
    assert!(
        r.header("set-cookie").contains("Max-Age=0"),
        "{}",
        r.header("set-cookie")
    );
    assert_eq!(
        other.get("/").status,
        401,
        "the session outlived its sign-out"
    );
    assert_eq!(c2.get("/").status, 200, "signing out ended another session");
    assert_eq!(audit(&d, "panel.logout").len(), 1);
    let out = d.cli(&["panel", "logout-all"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("ended 1 panel session"),
        "{}",
        stdout(&out)
    );
    assert_eq!(c2.get("/").status, 401);
    let token = unused.rsplit('/').next().unwrap();
    assert_eq!(
        c2.get(&format!("/login/{token}")).status,
        403,
        "logout-all voids unused links"
    );
    // A cookie signed with another key (or none) opens nothing.
    let mut forged = PanelClient::new(&d);
    let id = c
        .cookie
        .as_ref()
        .unwrap()
        .split(['=', '.'])
        .nth(1)
        .unwrap()
        .to_string();
    forged.cookie = Some(format!("pushd_session={id}.{}", "0".repeat(64)));
    assert_eq!(forged.get("/").status, 401);
}

#[test]
fn bad_login_links_are_slowed_down() {
    let d = sim_daemon(1, "", "");
    let c = PanelClient::new(&d);
    let bad = format!("/login/{}", "0".repeat(64));
    let start = Instant::now();
    for _ in 0..5 {
        assert_eq!(c.get(&bad).status, 403);
    }
    let free = start.elapsed();
    let t = Instant::now();
    assert_eq!(c.get(&bad).status, 403);
    let sixth = t.elapsed();
    let t = Instant::now();
    assert_eq!(c.get(&bad).status, 403);
    let seventh = t.elapsed();
    assert!(
        free < Duration::from_secs(2),
        "the first tries were slow: {free:?}"
    );
    assert!(sixth >= Duration::from_millis(250), "not slowed: {sixth:?}");
    assert!(
        seventh >= Duration::from_millis(500),
        "not slower: {seventh:?}"
    );
    // A good link still works (after its wait).
    let ok = PanelClient::new(&d);
    assert_eq!(ok.get_url(&login_link(&d, &[])).status, 303);
}

/// Every page: strict CSP, no inline script or style, no framing, no referrer.
#[test]
fn every_page_carries_the_security_headers_and_no_inline_script() {
    let d = sim_daemon(20, "rate_per_minute = 0", "");
    create_push(
        &d,
        &["--audience", "all", "--template", "hello", "--name", "p1"],
    );
    crate::dispatch::wait_status(&d, "p1", "completed", Duration::from_secs(30));
    scheduled_push(&d, "later");
    let c = PanelClient::sign_in(&d, false);
    let pages = [
        "/",
        "/pushes/p1",
        "/pushes/p1/failures",
        "/pushes/later/pause",
        "/pushes/later/cancel",
        "/pushes/p1/retry",
        "/audiences/all/push?from=p1",
        "/pushes/nope",
        "/assets/panel.css",
        "/assets/panel.js",
    ];
    for path in pages {
        let r = c.get(path);
        assert!(
            r.status == 200 || path == "/pushes/nope",
            "{path}: {}",
            r.status
        );
        let csp = r.header("content-security-policy");
        for directive in [
            "default-src 'none'",
            "script-src 'self'",
            "style-src 'self'",
            "frame-ancestors 'none'",
            "form-action 'self'",
        ] {
            assert!(
                csp.contains(directive),
                "{path}: CSP {csp:?} lacks {directive}"
            );
        }
        assert!(
            !csp.contains("unsafe-inline") && !csp.contains("unsafe-eval"),
            "{csp}"
        );
        assert_eq!(r.header("x-content-type-options"), "nosniff", "{path}");
        assert_eq!(r.header("referrer-policy"), "no-referrer", "{path}");
        assert_eq!(r.header("x-frame-options"), "DENY", "{path}");
        if r.header("content-type").starts_with("text/html") {
            let lower = r.body.to_ascii_lowercase();
            for (i, _) in lower.match_indices("<script") {
                let tag = &lower[i..i + lower[i..].find('>').unwrap()];
                assert!(
                    tag.contains(" src=\"/assets/"),
                    "{path}: inline script {tag}"
                );
            }
            assert!(!lower.contains(" style="), "{path}: inline style");
            assert!(
                !lower.contains(" onclick=") && !lower.contains(" onload="),
                "{path}"
            );
        }
    }
    assert_eq!(c.get("/pushes/nope").status, 404);
    assert_eq!(c.get("/assets/nope.js").status, 404);
}

/// A POST must come from the panel (origin), carry the session's CSRF
/// token, and come from an admin; otherwise 403 and nothing changes.
#[test]
fn state_changes_need_same_origin_the_csrf_token_and_an_admin() {
    let d = sim_daemon(5, "", "");
    scheduled_push(&d, "later");
    let admin = PanelClient::sign_in(&d, false);
    let viewer = PanelClient::sign_in(&d, true);
    let anonymous = PanelClient::new(&d);
    let before = audit(&d, "push").len();

    let refused = [
        (
            "cross-origin with a valid cookie",
            admin.post("/pushes/later/pause", &[], From::OtherSite),
        ),
        (
            "no origin at all",
            admin.post("/pushes/later/pause", &[], From::Nowhere),
        ),
        (
            "wrong CSRF token",
            admin.post(
                "/pushes/later/pause",
                &[("csrf", "0123456789abcdef0123456789abcdef")],
                From::Panel,
            ),
        ),
        (
            "no CSRF token",
            admin.post("/pushes/later/pause", &[("csrf", "")], From::Panel),
        ),
        (
            "the viewer's own token",
            viewer.post("/pushes/later/pause", &[], From::Panel),
        ),
        (
            "viewer cancel",
            viewer.post("/pushes/later/cancel", &[], From::Panel),
        ),
        (
            "viewer retry audience",
            viewer.post("/pushes/later/retry", &[("name", "x")], From::Panel),
        ),
        (
            "viewer push again",
            viewer.post(
                "/audiences/all/push",
                &[("template", "hello"), ("when", "now")],
                From::Panel,
            ),
        ),
        (
            "another session's token",
            viewer.post(
                "/pushes/later/pause",
                &[("csrf", admin.csrf.as_deref().unwrap())],
                From::Panel,
            ),
        ),
    ];
    for (what, r) in &refused {
        assert_eq!(r.status, 403, "{what}: {}", r.body);
    }
    assert_eq!(
        anonymous
            .post("/pushes/later/pause", &[], From::Panel)
            .status,
        401
    );
    // A viewer's forms and confirmations are refused too.
    assert_eq!(viewer.get("/pushes/later/pause").status, 403);
    assert_eq!(viewer.get("/pushes/later/retry").status, 403);
    let page = viewer.get("/pushes/later");
    assert!(
        !page.body.contains("/pause\"") && !page.body.contains("/cancel\""),
        "viewer sees actions"
    );

    assert_eq!(
        status_of(&d, "later"),
        "scheduled",
        "a refused POST changed the push"
    );
    assert_eq!(audit(&d, "push").len(), before);
    assert_eq!(count(&d.db(), "SELECT count(*) FROM pushes"), 1);
    assert_eq!(count(&d.db(), "SELECT count(*) FROM audiences"), 0);

    // The admin, from the panel, with the token: done, and audited as the session.
    let r = admin.post("/pushes/later/pause", &[], From::Panel);
    assert_eq!(r.status, 303, "{}", r.body);
    assert_eq!(r.header("location"), "/pushes/later");
    assert_eq!(status_of(&d, "later"), "paused");
    let e = &audit(&d, "push.pause")[0];
    let actor = e["actor"].as_str().unwrap();
    assert!(
        actor.starts_with("panel:") && actor.ends_with("(admin)"),
        "{e}"
    );
    assert_eq!(e["target"], "later");
    let show = d.cli_json(&["push", "show", "later"]);
    assert!(
        show["data"]["push"]["status_reason"]
            .as_str()
            .unwrap()
            .contains("panel:"),
        "{show}"
    );
    // A conflict is a page with the command's own words, not a crash.
    let r = admin.post("/pushes/later/pause", &[], From::Panel);
    assert_eq!(r.status, 409);
    assert!(
        r.body
            .contains("only scheduled or running pushes can be paused"),
        "{}",
        r.body
    );
}

#[test]
fn a_public_listen_address_needs_allow_remote_and_hosts_must_be_local() {
    let cfg = "[daemon]\ndata_dir = \"data\"\n[http]\nlisten = \"0.0.0.0:0\"\n";
    let d = TestDaemon::prepare(cfg);
    let mut child = d.spawn_raw();
    let status = wait_exit(&mut child, Duration::from_secs(30));
    assert!(!status.success());
    let log = d.log();
    assert!(
        log.contains("panel.allow_remote") && log.contains("0.0.0.0:0"),
        "{log}"
    );
    assert!(!d.socket.exists());

    // A loopback panel answers only to loopback names (DNS rebinding).
    let d = sim_daemon(1, "", "");
    let base = d.http_base();
    let rt = crate::e2e::runtime();
    let (status, _) = crate::webhooks::http(
        &rt,
        "GET",
        &format!("{base}/"),
        &[("host", "evil.example".into())],
        "",
    );
    assert_eq!(status, 421);
    let (status, _) = crate::webhooks::http(
        &rt,
        "GET",
        &format!("{base}/"),
        &[("host", "localhost".into())],
        "",
    );
    assert_eq!(status, 401);
}

/// No credential of the config (nor the panel's own key, nor another
/// login link) shows on any page, including failure messages of sends that
/// timed out against a platform whose URLs carry the token.
#[test]
fn no_secret_of_the_config_appears_in_any_page() {
    use crate::support::mocks::{Behavior, MockPlatform};
    use pushd::model::Platform;
    let rt = crate::e2e::runtime();
    let custom = rt.block_on(MockPlatform::start(Platform::Custom));
    let telegram = rt.block_on(MockPlatform::start(Platform::Telegram));
    let cfg = base_config(&format!(
        "[dispatch]\nrate_per_minute = 0\nmax_attempts = 2\nbackoff_base = \"20ms\"\n{}\n{}timeout = \"300ms\"\n",
        custom.channel_toml("hook"),
        telegram.channel_toml("tg")
    ));
    let mut d = TestDaemon::prepare(&cfg);
    d.write_script("10.lua", crate::e2e::HELLO);
    d.spawn();
    let members: Vec<(String, String)> = ["u1", "u2"]
        .iter()
        .map(|u| ("hook".to_string(), u.to_string()))
        .chain(
            ["101", "102", "103"]
                .iter()
                .map(|u| ("tg".to_string(), u.to_string())),
        )
        .collect();
    crate::e2e::import_members(&d, &members);
    custom.script("u2", Behavior::Block);
    telegram.script("102", Behavior::Hang);
    telegram.script("103", Behavior::ServerError);
    create_push(
        &d,
        &["--audience", "all", "--template", "hello", "--name", "p"],
    );
    crate::dispatch::wait_status(&d, "p", "completed", Duration::from_secs(60));
    scheduled_push(&d, "later");
    let c = PanelClient::sign_in(&d, false);
    let other_link = login_link(&d, &["--viewer"]);
    let key: Vec<u8> = d
        .db()
        .query_row("SELECT key FROM panel_key", [], |r| r.get(0))
        .unwrap();
    let mut secrets: Vec<String> = custom
        .secrets()
        .into_iter()
        .chain(telegram.secrets())
        .map(String::from)
        .collect();
    secrets.push(hex::encode(&key));
    secrets.push(other_link.rsplit('/').next().unwrap().to_string());
    let paths = [
        "/",
        "/pushes/p",
        "/pushes/p/failures",
        "/pushes/p/export.csv",
        "/pushes/p/retry",
        "/pushes/later/pause",
        "/pushes/later/cancel",
        "/audiences/all/push?from=p",
        "/pushes/nope",
        "/login/nope",
        "/assets/panel.js",
    ];
    let failures = c.get("/pushes/p/failures");
    assert!(
        failures.text().contains("timeout") || failures.text().contains("transient"),
        "{}",
        failures.body
    );
    for path in paths {
        let r = c.get(path);
        for s in &secrets {
            assert!(
                !r.body.contains(s.as_str()),
                "{path} shows a secret ({}…)",
                &s[..6]
            );
        }
    }
    // Signed out, too.
    let anonymous = PanelClient::new(&d);
    for s in &secrets {
        assert!(!anonymous.get("/").body.contains(s.as_str()));
    }
}

#[test]
fn a_disabled_panel_serves_nothing_and_issues_no_links() {
    let d = TestDaemon::start(&base_config("[panel]\nenabled = false\n"));
    let c = PanelClient::new(&d);
    assert_eq!(c.get("/").status, 404);
    assert_eq!(
        c.get("/healthz").status,
        200,
        "the rest of the listener still serves"
    );
    let out = d.cli(&["panel", "login"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("[panel] enabled = false"),
        "{}",
        stderr(&out)
    );
}
