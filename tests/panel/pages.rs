//! The panel's pages and forms over plain HTTP: bad input refused with the
//! command's reason, Push again's ETA warning, what `serve` prints, and the
//! live updates (one shared ticker, at most one update a second).

use super::*;
use crate::dispatch::{create_push, sim_daemon};
use crate::support::*;
use serde_json::Value;
use std::time::{Duration, Instant};

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
