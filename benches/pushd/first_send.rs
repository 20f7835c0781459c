//! Time to first send: from `push.create` over the control socket to the
//! first request arriving at the mock, on an SQL audience of every member
//! (a daemon of its own, with one WhatsApp instance and the bench's member
//! count). The baseline is the least any implementation must do: freeze the
//! first chunk of the audience (the same INSERT … SELECT, plan and cache,
//! on a plain connection to the bare database) and make one request over a
//! new connection. Runs alternate with the baseline's; each push is
//! cancelled once its first request has arrived.

use crate::daemon::{Conn, Daemon, wait_for};
use crate::fixtures::{self, config_head, whatsapp_channel};
use crate::stats::{Paired, a_first};
use crate::{e2e, inproc, mock};
use serde_json::json;
use std::path::Path;
use std::time::{Duration, Instant};

const PHONE: &str = "71111111";
/// The pushes' own rate: the first send is never held back by it (the
/// bucket lets one through at once), and the few sends before the cancel
/// stay few.
const PUSH_RATE_PER_MINUTE: u32 = 600;

pub fn config(mock_port: u16, concurrency: usize) -> String {
    format!(
        "{}{}",
        config_head(0, concurrency),
        whatsapp_channel("wf", mock_port, PHONE, 10_000_000.0)
    )
}

pub fn scripts() -> String {
    format!(
        r#"audience "first" {{ where = {{ channel = "wf" }} }}
template "hello" {{ en = {{ text = "{}" }} }}
route(function(m, msg, ctx) return {{ channel = m.channel }} end)
"#,
        fixtures::TEMPLATE_TEXT
    )
}

/// The bare side's HTTP: a runtime and a client kept across runs, as
/// pushd keeps its own.
type Http = (tokio::runtime::Runtime, reqwest::Client);

/// One push: created over `conn`, timed to its first request at the mock,
/// then cancelled. Returns (to the first request, to the create's reply).
fn pushd_run(d: &Daemon, conn: &mut Conn, wa: &mock::Server, name: &str) -> (Duration, Duration) {
    wa.seen.take_arrivals();
    let t0 = Instant::now();
    let v = conn.call(
        "push.create",
        json!({ "audience": "first", "template": "hello", "name": name,
                "rate_per_minute": PUSH_RATE_PER_MINUTE }),
    );
    let replied = t0.elapsed();
    assert_eq!(v["ok"], true, "push.create failed: {v}");
    let first = wait_for(
        &format!("the first request of push {name}"),
        Duration::from_secs(120),
        Duration::from_micros(200),
        || wa.seen.first_at(PHONE),
    );
    d.cancel(name);
    (first.saturating_duration_since(t0), replied)
}

/// The baseline: the first chunk frozen on `bare` (then removed), and one
/// request.
fn bare_run(bare: &rusqlite::Connection, http: &Http, wa: &mock::Server) -> Duration {
    let t = Instant::now();
    let (rows, _) = inproc::bare_chunk(bare, 0, pushd::store::deliveries::RESOLVE_CHUNK);
    e2e::one_request(&http.0, &http.1, wa.addr, mock::BULK_PHONE_ID);
    let took = t.elapsed();
    assert!(rows > 0, "the bare first chunk froze nothing");
    inproc::bare_clear(bare);
    took
}

/// What the runs came to.
pub struct FirstSend {
    pub runs: Paired,
    /// The time `push.create` took to reply, per pushd run.
    pub replies: Vec<Duration>,
}

/// `pairs` alternated runs each way, after one untimed run of each (the
/// figure is a running daemon's, not a cold start's).
pub fn measure(d: &Daemon, wa: &mock::Server, bare_db: &Path, pairs: usize) -> FirstSend {
    let bare = inproc::open_like_writer(bare_db);
    let http = (e2e::tokio_rt(), e2e::client());
    let mut conn = d.conn();
    pushd_run(d, &mut conn, wa, "first-warmup");
    bare_run(&bare, &http, wa);
    let mut out = FirstSend {
        runs: Paired::default(),
        replies: Vec::new(),
    };
    for i in 0..pairs {
        let name = format!("first-{i}");
        let ((p, reply), b) = if a_first(i) {
            let b = bare_run(&bare, &http, wa);
            (pushd_run(d, &mut conn, wa, &name), b)
        } else {
            let p = pushd_run(d, &mut conn, wa, &name);
            (p, bare_run(&bare, &http, wa))
        };
        out.runs.push(p, b);
        out.replies.push(reply);
    }
    out
}
