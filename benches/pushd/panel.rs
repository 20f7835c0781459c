//! The panel's push page on a finished push: its server time (one GET with
//! a session, the page rendered from `push.show`) beside `push.report` over
//! the socket, the command whose numbers the page shows.

use crate::daemon::Daemon;
use crate::e2e::tokio_rt;
use serde_json::json;
use std::time::Instant;

/// Median seconds of 41 GETs of the push page, and of 41 `push.report`s.
pub fn push_page(d: &Daemon, push: i64) -> (f64, f64) {
    let login = d.call("panel.login", json!({}));
    let url = login["data"]["url"]
        .as_str()
        .unwrap_or_else(|| panic!("panel.login: {login}"))
        .to_string();
    let page = reqwest::Url::parse(&url)
        .and_then(|u| u.join(&format!("/pushes/{push}")))
        .expect("push page URL");
    let rt = tokio_rt();
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let times = rt.block_on(async {
        let r = client.get(&url).send().await.expect("login link");
        let cookie = r
            .headers()
            .get("set-cookie")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .expect("a session cookie")
            .to_string();
        let mut times = Vec::new();
        for _ in 0..41 {
            let t = Instant::now();
            let r = client
                .get(page.clone())
                .header("cookie", &cookie)
                .send()
                .await
                .expect("push page");
            let status = r.status();
            let body = r.text().await.expect("push page body");
            times.push(t.elapsed().as_secs_f64());
            assert!(
                status.is_success() && body.contains("Push result"),
                "{status}: {body}"
            );
        }
        times
    });
    let mut conn = d.conn();
    let mut report = Vec::new();
    for _ in 0..41 {
        let t = Instant::now();
        let v = conn.call("push.report", json!({ "push": push.to_string() }));
        report.push(t.elapsed().as_secs_f64());
        assert_eq!(v["ok"], true, "push.report failed: {v}");
    }
    (crate::stats::median(&times), crate::stats::median(&report))
}
