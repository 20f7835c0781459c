//! The panel's cost: the push page on a finished push (one GET with a
//! session, the page rendered from `push.show`) beside `push.report` over
//! the socket, the command whose numbers the page shows; and dispatch with
//! panel viewers on the live feed (Server-Sent Events) beside the same push
//! without them.

use crate::daemon::Daemon;
use crate::e2e::{self, tokio_rt};
use crate::mock;
use crate::stats::Interleaved;
use serde_json::json;
use std::time::Instant;

/// A signed-in panel session: the panel's base URL and the session cookie.
fn session(
    d: &Daemon,
    rt: &tokio::runtime::Runtime,
    client: &reqwest::Client,
) -> (reqwest::Url, String) {
    let login = d.call("panel.login", json!({}));
    let url = login["data"]["url"]
        .as_str()
        .unwrap_or_else(|| panic!("panel.login: {login}"))
        .to_string();
    let base = reqwest::Url::parse(&url).expect("login URL");
    let cookie = rt.block_on(async {
        let r = client.get(&url).send().await.expect("login link");
        r.headers()
            .get("set-cookie")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .expect("a session cookie")
            .to_string()
    });
    (base, cookie)
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client")
}

/// Median seconds of 41 GETs of the push page, and of 41 `push.report`s.
pub fn push_page(d: &Daemon, push: i64) -> (f64, f64) {
    let rt = tokio_rt();
    let client = client();
    let (base, cookie) = session(d, &rt, &client);
    let page = base
        .join(&format!("/pushes/{push}"))
        .expect("push page URL");
    let times = rt.block_on(async {
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

/// Dispatch rates of `n`-recipient pushes with `viewers` panel viewers on
/// the live feed (runs) and without (bare), alternated.
pub fn viewers(d: &Daemon, wa: &mock::Server, n: u64, viewers: usize, runs: usize) -> Interleaved {
    let rt = tokio_rt();
    let client = client();
    let (base, cookie) = session(d, &rt, &client);
    let live = base.join("/live").expect("live URL");
    let mut out = Interleaved::default();
    let alone = |k: usize| {
        eprintln!("[viewers] push {k}/{} without viewers…", runs + 1);
        e2e::push(d, wa, &format!("alone-{k}"), n).rate
    };
    out.bare.push(alone(1));
    for k in 1..=runs {
        let watching: Vec<_> = (0..viewers)
            .map(|_| {
                let (client, live, cookie) = (client.clone(), live.clone(), cookie.clone());
                rt.spawn(async move {
                    let mut r = client
                        .get(live)
                        .header("cookie", cookie)
                        .send()
                        .await
                        .expect("live feed");
                    assert!(r.status().is_success(), "live feed: {}", r.status());
                    while let Ok(Some(_)) = r.chunk().await {}
                })
            })
            .collect();
        eprintln!("[viewers] push {k}/{runs} with {viewers} viewers on the live feed…");
        out.runs
            .push(e2e::push(d, wa, &format!("watched-{k}"), n).rate);
        for w in watching {
            w.abort();
        }
        out.bare.push(alone(k + 1));
    }
    out
}
