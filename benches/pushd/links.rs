//! The tracked-links row: `GET /l/TOKEN` over loopback to the daemon, each
//! request a recipient's first click (the token checked, one `link_clicks`
//! row, the recipient's interaction, the counters, committed before the
//! 302), beside a bare hyper server answering the same requests with the
//! same 302. Bare and measured runs alternate as in the receipts row; each
//! run clicks recipients no run clicked before.

use super::daemon::Daemon;
use super::e2e::tokio_rt;
use super::fixtures::{import, member_row, rate, write_csv};
use super::stats::Interleaved;
use super::table::{Cost, Row, Target, Unit};
use super::{fmt, mock};
use pushd::links::token::{self, Key};
use serde_json::json;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// The tracked URL of the bench template (and the bare server's Location).
pub const TARGET: &str = "https://shop.example.com/offer";

/// `per_run` clicks per run, `runs` runs, `concurrency` clients.
pub fn redirects(d: &Daemon, dir: &Path, per_run: u64, runs: usize, concurrency: usize) -> Row {
    let n = per_run * runs as u64;
    let csv = dir.join("links.csv");
    write_csv(&csv, (1..=n).map(|i| member_row("lk", i)));
    import(d, &csv);
    eprintln!("[links] push with a tracked link to {n} simulator recipients…");
    let push = d.create_push("links", "lk", "tracked", None);
    d.wait_completed("links", Duration::from_secs(3600));
    let (key, ids) = key_and_deliveries(d.db_path(), push);
    assert_eq!(ids.len() as u64, n, "tracked push: every recipient sent");
    let tokens: Vec<Arc<Vec<String>>> = ids
        .chunks(per_run as usize)
        .map(|c| Arc::new(c.iter().map(|&id| token::encode(&key, id, 0)).collect()))
        .collect();
    let listen = d.call("status", json!({}))["data"]["http_listen"]
        .as_str()
        .expect("http_listen in status")
        .to_string();
    let bare = mock::redirect_server(2, TARGET);
    let bare_run = |k: usize, tokens: &Arc<Vec<String>>| {
        eprintln!("[links] bare HTTP 302 loop {k}/{}…", runs + 1);
        rate(
            per_run,
            click_loop(&bare.addr.to_string(), tokens, concurrency),
        )
    };
    let mut figures = Interleaved::default();
    figures.bare.push(bare_run(1, &tokens[0]));
    for (k, t) in tokens.iter().enumerate() {
        eprintln!(
            "[links] {per_run} first clicks to the daemon ({}/{runs})…",
            k + 1
        );
        let cpu = cpu_ticks(d.pid());
        let perf = (k == 0 && std::env::var_os("PUSHD_BENCH_PERF").is_some()).then(|| {
            std::process::Command::new("perf")
                .args(["record", "-F", "1999", "-g", "-o", "/tmp/links.perf", "-p"])
                .arg(d.pid().to_string())
                .stderr(std::process::Stdio::null())
                .spawn()
                .expect("perf")
        });
        figures
            .runs
            .push(rate(per_run, click_loop(&listen, t, concurrency)));
        if let Some(mut p) = perf {
            unsafe { libc::kill(p.id() as i32, libc::SIGINT) };
            let _ = p.wait();
        }
        // Clock ticks are 10 ms: µs of daemon CPU per click.
        let used = (cpu_ticks(d.pid()) - cpu) as f64 * 10_000.0 / per_run as f64;
        eprintln!("[links] daemon CPU: {used:.1} µs per click");
        figures.bare.push(bare_run(k + 2, t));
    }
    let recorded = super::inproc::count(
        d.db_path(),
        &format!("SELECT count(*) FROM link_clicks WHERE push_id = {push}"),
    );
    assert_eq!(recorded, n, "every click recorded once");
    let sum = figures.summary();
    Row::new(
        "links",
        format!(
            "tracked-link redirects ({} first clicks, c={concurrency})",
            fmt::n(per_run)
        ),
    )
    .value(format!(
        "{} redirects/s (median of {runs})",
        fmt::rate(sum.run)
    ))
    .baseline(format!(
        "{} req/s bare HTTP 302 (median of {}{})",
        fmt::rate(sum.bare),
        runs + 1,
        sum.spread
    ))
    .ratio(sum.ratio, Target::AtLeast(0.6))
    .absolute("≥ 20k redirects/s", sum.run >= 20_000.0)
    .cost(Cost {
        pushd: per_run as f64 / sum.run,
        bare: Some(per_run as f64 / sum.bare),
        unit: Unit::Seconds,
        work: per_run as f64,
    })
}

/// utime + stime of a process, in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command's closing parenthesis; utime and stime are
    // the 14th and 15th fields of the whole line.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let n = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    n(11) + n(12)
}

/// The daemon's link key and the sent deliveries of `push`, in order.
fn key_and_deliveries(db: &Path, push: i64) -> (Key, Vec<i64>) {
    let conn =
        rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .expect("open db");
    let bytes: Vec<u8> = conn
        .query_row("SELECT key FROM link_key", [], |r| r.get(0))
        .expect("link key");
    let ids = conn
        .prepare("SELECT id FROM deliveries WHERE push_id = ?1 AND state = 2 ORDER BY id")
        .expect("prepare")
        .query_map([push], |r| r.get(0))
        .expect("query")
        .collect::<rusqlite::Result<_>>()
        .expect("deliveries");
    (Key::from_bytes(&bytes).expect("key"), ids)
}

/// GETs `/l/TOKEN` for every token from `concurrency` clients, redirects not
/// followed; every answer must be a 302.
fn click_loop(addr: &str, tokens: &Arc<Vec<String>>, concurrency: usize) -> Duration {
    let rt = tokio_rt();
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .pool_max_idle_per_host(1024)
        .tcp_nodelay(true)
        .build()
        .expect("client");
    let next = Arc::new(AtomicUsize::new(0));
    let base = format!("http://{addr}/l/");
    let ua = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36";
    rt.block_on(async move {
        let t = Instant::now();
        let mut tasks = Vec::new();
        for _ in 0..concurrency {
            let (client, next, tokens, base) =
                (client.clone(), next.clone(), tokens.clone(), base.clone());
            tasks.push(tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(token) = tokens.get(i) else { break };
                    let r = client
                        .get(format!("{base}{token}"))
                        .header("User-Agent", ua)
                        .send()
                        .await
                        .expect("click");
                    let status = r.status();
                    let _ = r.bytes().await;
                    assert_eq!(status.as_u16(), 302, "a click answered {status}");
                }
            }));
        }
        for t in tasks {
            t.await.expect("click task");
        }
        t.elapsed()
    })
}
