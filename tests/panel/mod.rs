//! The web panel over plain HTTP (reqwest on loopback against the real
//! binary): sign-in links, the session cookie, security headers, CSRF and
//! same-origin checks, roles, the audit trail, exposure rules, and the
//! shared live ticker. The browser's view is in `browser.rs`.

mod browser;

use crate::dispatch::{create_push, sim_daemon};
use crate::support::*;
use reqwest::header::HeaderMap;
use serde_json::Value;
use std::time::{Duration, Instant};

/// A signed-in (or not) HTTP client of one daemon's panel.
pub struct PanelClient {
    rt: tokio::runtime::Runtime,
    client: reqwest::Client,
    pub base: String,
    pub cookie: Option<String>,
    pub csrf: Option<String>,
}

pub struct Resp {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: String,
}

impl Resp {
    /// The body with HTML's escapes undone (to look for a message in it).
    pub fn text(&self) -> String {
        self.body
            .replace("&#34;", "\"")
            .replace("&quot;", "\"")
            .replace("&#39;", "'")
            .replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&amp;", "&")
    }

    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }
}

/// Where a POST says it comes from.
#[derive(Clone, Copy, PartialEq)]
pub enum From {
    /// `Origin` of the panel itself and `Sec-Fetch-Site: same-origin`, as a browser sends.
    Panel,
    /// `Origin: http://evil.example`, `Sec-Fetch-Site: cross-site`.
    OtherSite,
    /// Neither header (a script, not a browser).
    Nowhere,
}

/// A one-time link from `pushd panel login`.
pub fn login_link(d: &TestDaemon, extra: &[&str]) -> String {
    let mut args = vec!["panel", "login"];
    args.extend_from_slice(extra);
    let out = d.cli(&args);
    assert!(out.status.success(), "panel login: {}", stderr(&out));
    let url = stdout(&out).trim().to_string();
    assert!(url.starts_with("http://127.0.0.1:"), "{url}");
    url
}

/// The value of the first `name="csrf"` field of a page.
pub fn csrf_of(html: &str) -> Option<String> {
    let at = html.find("name=\"csrf\" value=\"")? + "name=\"csrf\" value=\"".len();
    Some(html[at..].split('"').next()?.to_string())
}

impl PanelClient {
    pub fn new(d: &TestDaemon) -> PanelClient {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("client");
        PanelClient {
            rt,
            client,
            base: d.http_base(),
            cookie: None,
            csrf: None,
        }
    }

    /// Opens a fresh login link; keeps the cookie and the CSRF token.
    pub fn sign_in(d: &TestDaemon, viewer: bool) -> PanelClient {
        let mut c = PanelClient::new(d);
        let link = login_link(d, if viewer { &["--viewer"] } else { &[] });
        let r = c.get_url(&link);
        assert_eq!(r.status, 303, "login: {}", r.body);
        let set = r.header("set-cookie").to_string();
        c.cookie = Some(set.split(';').next().expect("cookie pair").to_string());
        let home = c.get("/");
        assert_eq!(home.status, 200, "{}", home.body);
        c.csrf = csrf_of(&home.body);
        c
    }

    pub fn get_url(&self, url: &str) -> Resp {
        self.rt.block_on(async {
            let mut req = self.client.get(url);
            if let Some(c) = &self.cookie {
                req = req.header("cookie", c);
            }
            let resp = req.send().await.expect("GET");
            Resp {
                status: resp.status().as_u16(),
                headers: resp.headers().clone(),
                body: resp.text().await.unwrap_or_default(),
            }
        })
    }

    pub fn get(&self, path: &str) -> Resp {
        self.get_url(&format!("{}{path}", self.base))
    }

    /// A form POST; `csrf` is added unless the form has one.
    pub fn post(&self, path: &str, form: &[(&str, &str)], from: From) -> Resp {
        let mut fields: Vec<(String, String)> = form
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        if !form.iter().any(|(k, _)| *k == "csrf")
            && let Some(t) = &self.csrf
        {
            fields.push(("csrf".into(), t.clone()));
        }
        self.rt.block_on(async {
            let mut req = self
                .client
                .post(format!("{}{path}", self.base))
                .form(&fields);
            if let Some(c) = &self.cookie {
                req = req.header("cookie", c);
            }
            match from {
                From::Panel => {
                    req = req
                        .header("origin", &self.base)
                        .header("sec-fetch-site", "same-origin")
                }
                From::OtherSite => {
                    req = req
                        .header("origin", "http://evil.example")
                        .header("sec-fetch-site", "cross-site")
                }
                From::Nowhere => {}
            }
            let resp = req.send().await.expect("POST");
            Resp {
                status: resp.status().as_u16(),
                headers: resp.headers().clone(),
                body: resp.text().await.unwrap_or_default(),
            }
        })
    }
}

/// Audit entries (newest first) with this action.
pub fn audit(d: &TestDaemon, action: &str) -> Vec<Value> {
    let v = d.cli_json(&["audit", "--action", action, "--limit", "100"]);
    v["data"]["entries"].as_array().cloned().unwrap_or_default()
}

/// A push that will not start for an hour (so it can be paused, resumed, cancelled).
pub fn scheduled_push(d: &TestDaemon, name: &str) -> Value {
    let at = (chrono::Utc::now() + chrono::Duration::hours(1)).to_rfc3339();
    create_push(
        d,
        &[
            "--audience",
            "all",
            "--template",
            "hello",
            "--name",
            name,
            "--at",
            &at,
        ],
    )
}

fn status_of(d: &TestDaemon, push: &str) -> String {
    let v = d.cli_json(&["push", "show", push]);
    v["data"]["push"]["status"]
        .as_str()
        .unwrap_or("")
        .to_string()
}

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

/// Bad input to the forms: the command's error on the form, nothing created.
#[test]
fn bad_form_input_is_refused_with_its_reason_and_changes_nothing() {
    let d = sim_daemon(5, "rate_per_minute = 0", "block_rate = 1.0");
    create_push(
        &d,
        &["--audience", "all", "--template", "hello", "--name", "p"],
    );
    crate::dispatch::wait_status(&d, "p", "completed", Duration::from_secs(30));
    let c = PanelClient::sign_in(&d, false);
    let r = c.post(
        "/pushes/p/retry",
        &[("name", "  "), ("only", "all")],
        From::Panel,
    );
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(r.body.contains("must not be empty"), "{}", r.body);
    let r = c.post(
        "/pushes/p/retry",
        &[("name", "x"), ("only", "sometimes")],
        From::Panel,
    );
    assert_eq!(r.status, 400);
    assert!(r.body.contains("transient"), "{}", r.body);
    let r = c.post(
        "/pushes/p/retry",
        &[("name", "all"), ("only", "all")],
        From::Panel,
    );
    assert_eq!(r.status, 409, "a script audience's name: {}", r.body);
    assert_eq!(count(&d.db(), "SELECT count(*) FROM audiences"), 0);

    let r = c.post(
        "/audiences/all/push",
        &[("template", "nope"), ("when", "now")],
        From::Panel,
    );
    assert_eq!(r.status, 400);
    assert!(
        r.text().contains("template \"nope\" is not defined"),
        "{}",
        r.body
    );
    let r = c.post(
        "/audiences/all/push",
        &[("template", "hello"), ("when", "at"), ("at", "soon")],
        From::Panel,
    );
    assert_eq!(r.status, 400);
    assert!(r.body.contains("Start At"), "{}", r.body);
    let r = c.post(
        "/audiences/all/push",
        &[("template", "hello"), ("when", "now"), ("rate", "fast")],
        From::Panel,
    );
    assert_eq!(r.status, 400);
    assert!(r.body.contains("whole number"), "{}", r.body);
    assert_eq!(count(&d.db(), "SELECT count(*) FROM pushes"), 1);
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

#[test]
fn serve_prints_the_panel_address_and_on_a_terminal_a_login_link() {
    let d = TestDaemon::prepare(&base_config("[channels.sim]\nkind = \"simulator\"\n"));
    // Not a terminal: the address only.
    let mut child = std::process::Command::new(BIN)
        .args(["serve", "--config"])
        .arg(&d.config_path)
        .stdout(std::process::Stdio::piped())
        .stderr(std::fs::File::create(&d.log_path).unwrap())
        .spawn()
        .unwrap();
    let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    std::io::BufRead::read_line(&mut out, &mut line).unwrap();
    assert!(
        line.starts_with("pushd panel: http://127.0.0.1:"),
        "{line:?}"
    );
    // SAFETY: plain kill(2) on our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut out, &mut rest).unwrap();
    wait_exit(&mut child, Duration::from_secs(30));
    assert!(
        !rest.contains("/login/"),
        "a login link without a terminal: {rest}"
    );

    // On a terminal (script(1) gives it a pty): a one-time admin link that
    // works, and never in the log.
    if std::process::Command::new("script")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("!!!!!!!! SKIPPED the terminal half: no script(1) !!!!!!!!");
        return;
    }
    let transcript = d.path("tty.txt");
    let cmd = format!(
        "{BIN} serve --config {} 2>>{}",
        d.config_path.display(),
        d.log_path.display()
    );
    let mut child = std::process::Command::new("script")
        .args(["-qfec", &cmd])
        .arg(&transcript)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let link = wait_for(
        "the login link on the terminal",
        Duration::from_secs(30),
        || {
            let text = std::fs::read_to_string(&transcript).unwrap_or_default();
            text.split_whitespace()
                .find(|w| w.contains("/login/"))
                .map(String::from)
        },
    );
    let mut d = d;
    d.wait_ready();
    let c = PanelClient::new(&d);
    assert_eq!(c.get_url(&link).status, 303, "{link}");
    let token = link.rsplit('/').next().unwrap();
    assert!(!d.log().contains(token), "the login link went into the log");
    let pid = d.status()["pid"].as_i64().unwrap();
    // SAFETY: plain kill(2) on the daemon script(1) started for us.
    unsafe { libc::kill(pid as i32, libc::SIGTERM) };
    wait_exit(&mut child, Duration::from_secs(30));
}

/// However many tabs watch a push, one ticker reads it, once a second.
#[test]
fn live_updates_share_one_ticker_and_come_at_most_once_a_second() {
    let d = sim_daemon(300, "rate_per_minute = 600", "");
    create_push(
        &d,
        &["--audience", "all", "--template", "hello", "--name", "slow"],
    );
    let c = PanelClient::sign_in(&d, true);
    let cookie = c.cookie.clone().unwrap();
    let url = format!("{}/pushes/slow/live", c.base);
    let rt = crate::e2e::runtime();
    let stamps: Vec<Vec<(Instant, String)>> = rt.block_on(async {
        let client = reqwest::Client::new();
        let mut tasks = Vec::new();
        for _ in 0..5 {
            let req = client.get(&url).header("cookie", &cookie);
            tasks.push(tokio::spawn(async move {
                let mut resp = req.send().await.expect("SSE");
                assert_eq!(resp.status(), 200);
                assert!(
                    resp.headers()["content-type"]
                        .to_str()
                        .unwrap()
                        .starts_with("text/event-stream")
                );
                let mut got = Vec::new();
                let mut buf = String::new();
                while got.len() < 4 {
                    let chunk = tokio::time::timeout(Duration::from_secs(20), resp.chunk())
                        .await
                        .expect("an update within 20s")
                        .expect("stream")
                        .expect("not ended");
                    buf.push_str(&String::from_utf8_lossy(&chunk));
                    while let Some(end) = buf.find("\n\n") {
                        let frame: String = buf.drain(..end + 2).collect();
                        if let Some(data) = frame.lines().find_map(|l| l.strip_prefix("data: ")) {
                            got.push((Instant::now(), data.to_string()));
                        }
                    }
                }
                got
            }));
        }
        let mut all = Vec::new();
        for t in tasks {
            all.push(t.await.expect("viewer"));
        }
        all
    });
    for viewer in &stamps {
        let v: Value = serde_json::from_str(&viewer[0].1).unwrap();
        assert_eq!(v["rows"][0]["status"], "running", "{v}");
        // The first frame is the snapshot at connect; then one per tick at most.
        for w in viewer[1..].windows(2) {
            let gap = w[1].0.duration_since(w[0].0);
            assert!(
                gap >= Duration::from_millis(800),
                "two updates {gap:?} apart"
            );
        }
    }
    let started = d.log().matches("panel live ticker started").count();
    assert_eq!(started, 1, "one ticker for five viewers of one push");
    wait_for(
        "the ticker to stop once nobody watches",
        Duration::from_secs(10),
        || d.log().contains("panel live ticker stopped").then_some(()),
    );
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

/// Push again warns like `pushd push create` when the ETA is over an hour.
#[test]
fn push_again_shows_the_same_eta_warning_as_the_cli() {
    let d = sim_daemon(120, "", "");
    let c = PanelClient::sign_in(&d, false);
    let r = c.post(
        "/audiences/all/push",
        &[
            ("template", "hello"),
            ("when", "now"),
            ("rate", "1"),
            ("name", "crawl"),
        ],
        From::Panel,
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let cli = d.cli_json(&[
        "push",
        "create",
        "--audience",
        "all",
        "--template",
        "hello",
        "--rate",
        "1",
        "--name",
        "crawl2",
    ]);
    let warning = cli["data"]["warnings"][0].as_str().unwrap().to_string();
    assert!(
        warning.contains("consider splitting it into batches"),
        "{warning}"
    );
    assert!(
        r.text().contains(&warning),
        "the panel's warning differs from the CLI's: {}",
        r.body
    );
    assert!(r.text().contains("Push crawl created"), "{}", r.body);
    let e = &audit(&d, "push.create")[1];
    assert!(e["actor"].as_str().unwrap().ends_with("(admin)"), "{e}");
}
