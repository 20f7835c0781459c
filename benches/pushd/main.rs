//! `cargo bench`: pushd's performance figures, each next to a raw baseline
//! measured in the same run on the same machine (shared, noisy machines make
//! absolute numbers meaningless on their own), as one summary table.
//!
//! Environment:
//! - `PUSHD_BENCH_SCALE=0.1` shrinks every size (default 1.0 = the targets' sizes);
//! - `PUSHD_BENCH_ONLY=dispatch,receipts` runs only those rows (keys: dispatch,
//!   core, resolution, import, report, receipts, links, export, rss, rate);
//! - `PUSHD_BENCH_CONCURRENCY=256` (the default) sets in-flight sends and the
//!   baselines' client concurrency;
//! - `PUSHD_BENCH_REPEAT=3` (the default) sets how many end-to-end pushes
//!   (and receipt runs) the dispatch and receipts figures take the median of.
//!
//! End-to-end figures drive the real release binary (`pushd serve`, the CLI,
//! the control socket, loopback HTTP); resolution and the store-write
//! baselines run in-process against the library, where that is the fair
//! comparison.

mod daemon;
mod inproc;
mod links;
mod mock;
mod table;

use daemon::Daemon;
use serde_json::json;
use std::collections::BTreeSet;
use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use table::{Row, Table};

/// The daemon's allocator (src/main.rs), so the bare loops and the mock
/// servers run on the same allocator as the daemon they are compared with.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

const WA_PHONE_ID: &str = "555000111";
const WA_TOKEN: &str = "bench-token";
const WA_APP_SECRET: &str = "bench-app-secret";
const TEMPLATE_TEXT: &str = "Hi {{name}}, this week's offer is waiting for you.";

const KEYS: &[&str] = &[
    "dispatch",
    "core",
    "resolution",
    "import",
    "report",
    "receipts",
    "links",
    "export",
    "rss",
    "rate",
];

struct Settings {
    scale: f64,
    only: BTreeSet<String>,
    concurrency: usize,
    /// End-to-end pushes, each with its receipts run (each run between two
    /// bare runs).
    repeat: usize,
}

impl Settings {
    fn from_env() -> Settings {
        let scale = std::env::var("PUSHD_BENCH_SCALE")
            .ok()
            .and_then(|s| s.parse::<f64>().ok())
            .filter(|s| *s > 0.0 && s.is_finite())
            .unwrap_or(1.0);
        let only: BTreeSet<String> = std::env::var("PUSHD_BENCH_ONLY")
            .ok()
            .map(|s| {
                s.split(',')
                    .map(|k| k.trim().to_string())
                    .filter(|k| !k.is_empty())
                    .collect()
            })
            .unwrap_or_default();
        for k in &only {
            if !KEYS.contains(&k.as_str()) {
                eprintln!(
                    "PUSHD_BENCH_ONLY: unknown figure {k:?} (figures: {})",
                    KEYS.join(", ")
                );
                std::process::exit(2);
            }
        }
        let concurrency = std::env::var("PUSHD_BENCH_CONCURRENCY")
            .ok()
            .and_then(|s| s.parse().ok())
            .filter(|c| *c > 0)
            .unwrap_or(256);
        let repeat = std::env::var("PUSHD_BENCH_REPEAT")
            .ok()
            .and_then(|s| s.parse().ok())
            .filter(|r| *r > 0)
            .unwrap_or(3);
        Settings {
            scale,
            only,
            concurrency,
            repeat,
        }
    }

    fn wants(&self, key: &str) -> bool {
        self.only.is_empty() || self.only.contains(key)
    }

    fn any(&self, keys: &[&str]) -> bool {
        keys.iter().any(|k| self.wants(k))
    }

    fn size(&self, full: u64) -> u64 {
        ((full as f64 * self.scale).round() as u64).max(100)
    }
}

fn config(mock_port: u16, concurrency: usize) -> String {
    format!(
        r#"[daemon]
data_dir = "data"
[http]
listen = "127.0.0.1:0"
max_connections = 4096
[dispatch]
rate_per_minute = 0
concurrency = {concurrency}
[scripts]
debounce = "100ms"
[links]
public_url = "https://go.example.com"
preview_window = "0s"
[channels.lk]
kind = "simulator"
latency = "0ms"
block_rate = 0.0
invalid_rate = 0.0
transient_rate = 0.0
rate_limit_rate = 0.0
delivered_rate = 0.0
[channels.sim]
kind = "simulator"
latency = "0ms"
block_rate = 0.0
invalid_rate = 0.0
transient_rate = 0.0
rate_limit_rate = 0.0
delivered_rate = 0.0
[channels.wa]
kind = "whatsapp"
base_url = "http://127.0.0.1:{mock_port}"
phone_number_id = "{WA_PHONE_ID}"
token = "{WA_TOKEN}"
app_secret = "{WA_APP_SECRET}"
verify_token = "bench-verify"
rate_per_second = 10000000
[channels.wr]
kind = "whatsapp"
base_url = "http://127.0.0.1:{mock_port}"
phone_number_id = "{rate}"
token = "{WA_TOKEN}"
app_secret = "{WA_APP_SECRET}"
verify_token = "bench-verify"
rate_per_second = 10000000
"#,
        rate = mock::RATE_PHONE_ID
    )
}

fn scripts() -> String {
    format!(
        r#"audience "sim" {{ where = {{ channel = "sim" }} }}
audience "wa" {{ where = {{ channel = "wa" }} }}
audience "lk" {{ where = {{ channel = "lk" }} }}
template "tracked" {{ en = {{ text = 'Hi {{{{name}}}}, your offer: {{{{track "{target}"}}}}' }} }}
audience "r100" {{ where = {{ channel = "wr", tags_all = {{ "r100" }} }} }}
audience "r6000" {{ where = {{ channel = "wr", tags_all = {{ "r6000" }} }} }}
template "hello" {{ en = {{ text = "{TEMPLATE_TEXT}" }} }}
route(function(m, msg, ctx) return {{ channel = m.channel }} end)
"#,
        target = links::TARGET
    )
}

const NAMES: [&str; 8] = [
    "Ava", "Ben", "Chloe", "Dev", "Elif", "Farah", "Goran", "Hana",
];

/// The member rows every import measurement uses (the CSV and the bare
/// baseline write the same rows).
fn member_row(channel: &str, i: u64) -> inproc::MemberRow {
    let user = match channel {
        "sim" => format!("u{i:08}"),
        _ => format!("8525{i:08}"),
    };
    let mut tags = Vec::new();
    if i.is_multiple_of(10) {
        tags.push("vip".to_string());
    }
    if i.is_multiple_of(2) {
        tags.push("news".to_string());
    }
    inproc::MemberRow {
        channel: channel.to_string(),
        user,
        name: NAMES[(i % 8) as usize].to_string(),
        locale: "en".into(),
        tags,
    }
}

fn write_csv(path: &Path, rows: impl Iterator<Item = inproc::MemberRow>) {
    let f = std::fs::File::create(path).expect("create csv");
    let mut w = std::io::BufWriter::with_capacity(1 << 20, f);
    writeln!(w, "channel,channel_user_id,name,locale,tags").expect("write csv");
    for r in rows {
        writeln!(
            w,
            "{},{},{},{},{}",
            r.channel,
            r.user,
            r.name,
            r.locale,
            r.tags.join(";")
        )
        .expect("write csv");
    }
    w.flush().expect("flush csv");
}

fn import(d: &Daemon, csv: &Path) -> Duration {
    let t = Instant::now();
    let out = d.cli(&[
        "--json",
        "members",
        "import",
        csv.to_str().expect("utf-8 path"),
    ]);
    let took = t.elapsed();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    assert!(
        v["ok"] == true,
        "members import failed: {} {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    took
}

fn rate(n: u64, d: Duration) -> f64 {
    n as f64 / d.as_secs_f64().max(1e-9)
}

fn main() {
    // `cargo bench` passes `--bench`; a filter argument is not supported.
    let s = Settings::from_env();
    let started = Instant::now();
    let mut table = Table::default();
    let bench_dir = tempfile::Builder::new()
        .prefix("pushd-bench-data-")
        .tempdir()
        .expect("tempdir");

    let n_members = s.size(1_000_000);
    let n_e2e = s.size(200_000);
    eprintln!(
        "pushd bench: scale {} ({} members, {} end-to-end), concurrency {}, figures: {}",
        s.scale,
        n_members,
        n_e2e,
        s.concurrency,
        if s.only.is_empty() {
            "all".to_string()
        } else {
            s.only.iter().cloned().collect::<Vec<_>>().join(",")
        }
    );

    // --- in-process: the bare SQLite floor, and audience resolution ---
    let bare_db = bench_dir.path().join("bare.db");
    let mut bare_import: Option<Duration> = None;
    if s.any(&["import", "resolution", "core"]) {
        let rows: Vec<inproc::MemberRow> = (1..=n_members).map(|i| member_row("sim", i)).collect();
        eprintln!("[import] bare batched rusqlite inserts of {n_members} rows…");
        bare_import = Some(inproc::bare_insert_members(&bare_db, &rows));
    }
    let mut bare_update: Option<Duration> = None;
    if s.any(&["resolution", "core"]) {
        eprintln!("[resolution] {n_members} members → delivery rows…");
        let r = inproc::resolution(&bare_db);
        assert_eq!(
            r.rows, n_members,
            "resolution froze the wrong number of rows"
        );
        let ok = r.pushd.as_secs_f64() <= 2.0 * s.scale.min(1.0)
            && r.bare.as_secs_f64() / r.pushd.as_secs_f64() >= 0.5;
        if s.wants("resolution") {
            table.push(Row {
                figure: format!("audience resolution ({} members)", fmt_n(n_members)),
                value: fmt_secs(r.pushd),
                baseline: format!("{} bare INSERT…SELECT", fmt_secs(r.bare)),
                ratio: Some(r.bare.as_secs_f64() / r.pushd.as_secs_f64()),
                target: "≤ 2 s, ≥ 0.5×".into(),
                pass: Some(ok),
            });
        }
        eprintln!("[core] bare batched UPDATE of {n_members} delivery rows…");
        bare_update = Some(inproc::bare_update_deliveries(&bare_db, r.push));
    }

    // --- the daemon ---
    let need_daemon = s.any(&[
        "dispatch", "core", "import", "report", "receipts", "links", "export", "rss", "rate",
    ]);
    if need_daemon {
        let wa_mock = mock::whatsapp_mock(2);
        let d = Daemon::start(&config(wa_mock.addr.port(), s.concurrency), &scripts());
        let mut sim_push: Option<i64> = None;

        if s.any(&["import", "core", "report", "export", "rss"]) {
            let csv = bench_dir.path().join("members.csv");
            write_csv(&csv, (1..=n_members).map(|i| member_row("sim", i)));
            eprintln!("[import] pushd members import ({n_members} rows)…");
            let took = import(&d, &csv);
            let r = rate(n_members, took);
            if s.wants("import") {
                let base = bare_import.map(|b| rate(n_members, b)).unwrap_or(0.0);
                table.push(Row {
                    figure: format!("member import ({} CSV rows)", fmt_n(n_members)),
                    value: format!("{} rows/s ({})", fmt_rate(r), fmt_secs(took)),
                    baseline: format!("{} rows/s bare inserts", fmt_rate(base)),
                    ratio: Some(r / base),
                    target: "≥ 200k rows/s, ≥ 0.3×".into(),
                    pass: Some(r >= 200_000.0 && r / base >= 0.3),
                });
            }
        }

        if s.any(&["core", "report", "export", "rss"]) {
            let idle_rss = d.proc_kb("VmRSS");
            d.reset_peak_rss();
            eprintln!("[core] push to {n_members} simulator recipients…");
            let t = Instant::now();
            let id = d.create_push("core", "sim", "hello", None);
            let p = d.wait_completed("core", Duration::from_secs(3600));
            let took = t.elapsed();
            let peak = d.proc_kb("VmHWM");
            sim_push = Some(id);
            assert_eq!(p["sent"].as_u64(), Some(n_members), "core push: {p}");
            let r = rate(n_members, took);
            if s.wants("core") {
                let base = bare_update.map(|b| rate(n_members, b)).unwrap_or(0.0);
                table.push(Row {
                    figure: "core overhead (null channel, resolve+Lua+render+store)".into(),
                    value: format!("{} recipients/s ({})", fmt_rate(r), fmt_secs(took)),
                    baseline: format!("{} rows/s bare UPDATEs", fmt_rate(base)),
                    ratio: (base > 0.0).then(|| r / base),
                    target: "≥ 200k recipients/s".into(),
                    pass: Some(r >= 200_000.0),
                });
            }
            if s.wants("rss") {
                table.push(Row {
                    figure: format!("peak RSS (daemon, {}-recipient push)", fmt_n(n_members)),
                    value: fmt_mb(peak),
                    baseline: format!("{} idle", fmt_mb(idle_rss)),
                    ratio: Some(peak as f64 / idle_rss.max(1) as f64),
                    target: "≤ 64 MB".into(),
                    pass: Some(peak <= 64 * 1024),
                });
            }
        }

        if let Some(id) = sim_push
            && s.wants("report")
        {
            eprintln!("[report] push.report on the finished push…");
            let (value, base) = report_latency(&d, id);
            table.push(Row {
                figure: format!("report (push.report, {} recipients)", fmt_n(n_members)),
                value: format!("{:.2} ms median", value * 1e3),
                baseline: format!("{:.1} ms GROUP BY scan", base * 1e3),
                ratio: Some(base / value),
                target: "≤ 10 ms".into(),
                pass: Some(value <= 0.010),
            });
        }

        if let Some(id) = sim_push
            && s.wants("export")
        {
            eprintln!("[export] CSV export of {n_members} rows…");
            let e = export(&d, id, bench_dir.path());
            assert_eq!(e.rows, n_members + 1, "export row count");
            let flat = e.daemon_growth_kb <= 32 * 1024 && e.cli_peak_kb <= 32 * 1024;
            table.push(Row {
                figure: format!("export ({} rows CSV)", fmt_n(n_members)),
                value: format!(
                    "{} (daemon +{}, CLI {})",
                    fmt_secs(e.took),
                    fmt_mb(e.daemon_growth_kb),
                    fmt_mb(e.cli_peak_kb)
                ),
                baseline: format!("{} bare SELECT→csv", fmt_secs(e.bare)),
                ratio: Some(e.bare.as_secs_f64() / e.took.as_secs_f64()),
                target: "≤ 3 s, flat memory".into(),
                pass: Some(e.took.as_secs_f64() <= 3.0 * s.scale.clamp(0.1, 1.0) && flat),
            });
        }

        if s.any(&["dispatch", "receipts"]) {
            let csv = bench_dir.path().join("wa.csv");
            write_csv(&csv, (1..=n_e2e).map(|i| member_row("wa", i)));
            import(&d, &csv);
            // The machine is shared: bare runs and measured runs alternate
            // (bare, run, bare, run, …, bare) and each figure is the median
            // of its runs, so a neighbour's burst of load shifts one sample,
            // not the verdict. Each push's receipts are measured right after
            // it, between runs of the bare webhook sink.
            let runs = s.repeat;
            let bare_run = |k: usize| {
                eprintln!(
                    "[dispatch] bare reqwest loop {k}/{}, {n_e2e} requests…",
                    runs + 1
                );
                rate(n_e2e, bare_send_loop(wa_mock.addr, n_e2e, s.concurrency))
            };
            let mut dispatch = Interleaved::default();
            let mut receipts = Interleaved::default();
            if s.wants("dispatch") {
                dispatch.bare.push(bare_run(1));
            }
            for k in 1..=runs {
                let name = format!("e2e-{k}");
                eprintln!("[dispatch] push {k}/{runs} to {n_e2e} WhatsApp recipients…");
                let before = wa_mock.seen.requests.load(Ordering::Relaxed);
                let t = Instant::now();
                let push = d.create_push(&name, "wa", "hello", None);
                let p = d.wait_completed(&name, Duration::from_secs(3600));
                let took = t.elapsed();
                let sent_to_mock = wa_mock.seen.requests.load(Ordering::Relaxed) - before;
                assert_eq!(p["sent"].as_u64(), Some(n_e2e), "e2e push: {p}");
                assert_eq!(
                    sent_to_mock, n_e2e,
                    "the mock saw a different number of sends"
                );
                dispatch.runs.push(rate(n_e2e, took));
                if s.wants("receipts") {
                    let messages = Arc::new(inproc::sent_messages(d.db_path(), push));
                    if k == 1 {
                        receipts.bare.push(sink_run(&messages, s.concurrency));
                    }
                    receipts
                        .runs
                        .push(receipts_run(&d, push, &messages, s.concurrency));
                    receipts.bare.push(sink_run(&messages, s.concurrency));
                }
                if s.wants("dispatch") {
                    dispatch.bare.push(bare_run(k + 1));
                }
            }
            if s.wants("dispatch") {
                let (r, b, ratio, spread) = dispatch.summary();
                table.push(Row {
                    figure: format!(
                        "end-to-end dispatch ({} recipients, WhatsApp mock, c={})",
                        fmt_n(n_e2e),
                        s.concurrency
                    ),
                    value: format!("{} msg/s (median of {runs})", fmt_rate(r)),
                    baseline: format!(
                        "{} req/s bare reqwest (median of {}{spread})",
                        fmt_rate(b),
                        runs + 1
                    ),
                    ratio: Some(ratio),
                    target: "≥ 20k msg/s, ≥ 0.8×".into(),
                    pass: Some(r >= 20_000.0 && ratio >= 0.8),
                });
            }
            if s.wants("receipts") {
                let (r, b, ratio, spread) = receipts.summary();
                table.push(Row {
                    figure: format!(
                        "receipts ({} signed status webhooks, c={})",
                        fmt_n(n_e2e),
                        s.concurrency
                    ),
                    value: format!("{} events/s (median of {runs})", fmt_rate(r)),
                    baseline: format!(
                        "{} req/s bare HTTP (median of {}{spread})",
                        fmt_rate(b),
                        runs + 1
                    ),
                    ratio: Some(ratio),
                    target: "≥ 20k events/s, ≥ 0.6×".into(),
                    pass: Some(r >= 20_000.0 && ratio >= 0.6),
                });
            }
        }

        if s.wants("links") {
            table.push(links::redirects(
                &d,
                bench_dir.path(),
                s.size(100_000),
                s.repeat,
                s.concurrency,
            ));
        }

        if s.wants("rate") {
            for row in rate_accuracy(&d, &wa_mock, bench_dir.path(), s.scale) {
                table.push(row);
            }
        }
        d.stop();
    }

    table.print(&machine(), started.elapsed());
}

/// Rates of measured runs and of the bare runs around them: bare[i] and
/// bare[i + 1] bracket runs[i].
#[derive(Default)]
struct Interleaved {
    runs: Vec<f64>,
    bare: Vec<f64>,
}

impl Interleaved {
    /// (median run, median bare, ratio, "; runs lo–hi×" when there are
    /// several). The ratio is the median of the runs' own ratios, each run
    /// over the mean of the bare runs just before and after it: the
    /// machine's speed drifts between runs, and a run is only comparable
    /// with the baseline measured around it.
    fn summary(&self) -> (f64, f64, f64, String) {
        let ratios: Vec<f64> = self
            .runs
            .iter()
            .zip(self.bare.windows(2))
            .map(|(r, b)| r / ((b[0] + b[1]) / 2.0))
            .collect();
        let spread = if ratios.len() > 1 {
            let lo = ratios.iter().copied().fold(f64::INFINITY, f64::min);
            let hi = ratios.iter().copied().fold(0.0, f64::max);
            format!("; runs {lo:.2}–{hi:.2}×")
        } else {
            String::new()
        };
        (
            median(&self.runs),
            median(&self.bare),
            median(&ratios),
            spread,
        )
    }
}

/// The same webhooks posted to a bare "200 OK" sink: the receipts baseline.
fn sink_run(messages: &Arc<Vec<(String, String)>>, concurrency: usize) -> f64 {
    eprintln!("[receipts] bare HTTP loop, {} webhooks…", messages.len());
    let sink = mock::webhook_sink(2);
    let took = post_receipts(
        &format!("http://{}/webhooks/wa", sink.addr),
        messages,
        concurrency,
    );
    rate(messages.len() as u64, took)
}

/// Signed WhatsApp `delivered` statuses for every message of `push`, posted
/// to the daemon; every one must be applied.
fn receipts_run(
    d: &Daemon,
    push: i64,
    messages: &Arc<Vec<(String, String)>>,
    concurrency: usize,
) -> f64 {
    let status = d.call("status", json!({}));
    let listen = status["data"]["http_listen"]
        .as_str()
        .expect("http_listen in status")
        .to_string();
    eprintln!("[receipts] signed status webhooks to the daemon…");
    let took = post_receipts(
        &format!("http://{listen}/webhooks/wa"),
        messages,
        concurrency,
    );
    let delivered = inproc::count(
        d.db_path(),
        &format!(
            "SELECT count(*) FROM deliveries WHERE push_id = {push} AND delivered_at IS NOT NULL"
        ),
    );
    assert_eq!(
        delivered,
        messages.len() as u64,
        "receipts were not all applied"
    );
    rate(messages.len() as u64, took)
}

fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => 0.0,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

/// Median latency of `push.report` over the socket, and the GROUP BY scan
/// the counters replace (read-only connection to the same database).
fn report_latency(d: &Daemon, push: i64) -> (f64, f64) {
    let mut conn = d.conn();
    let mut times = Vec::new();
    for _ in 0..41 {
        let t = Instant::now();
        let v = conn.call("push.report", json!({ "push": push.to_string() }));
        times.push(t.elapsed().as_secs_f64());
        assert_eq!(v["ok"], true, "push.report failed: {v}");
    }
    times.sort_by(f64::total_cmp);
    let base = inproc::group_by_scan(d.db_path(), push);
    (times[times.len() / 2], base.as_secs_f64())
}

struct Export {
    took: Duration,
    bare: Duration,
    rows: u64,
    daemon_growth_kb: u64,
    cli_peak_kb: u64,
}

fn export(d: &Daemon, push: i64, dir: &Path) -> Export {
    let out = dir.join("export.csv");
    let rss_before = d.proc_kb("VmRSS");
    d.reset_peak_rss();
    let t = Instant::now();
    let child = std::process::Command::new(daemon::BIN)
        .arg("--config")
        .arg(&d.config)
        .args(["export", &push.to_string(), "-o"])
        .arg(&out)
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("spawn export");
    let (status, cli_peak_kb) = wait_with_peak_rss(child);
    let took = t.elapsed();
    assert!(status == 0, "pushd export exited with {status}");
    let daemon_peak = d.proc_kb("VmHWM");
    let rows = count_lines(&out);
    let bare = inproc::bare_export(d.db_path(), push, &dir.join("bare-export.csv"));
    Export {
        took,
        bare,
        rows,
        daemon_growth_kb: daemon_peak.saturating_sub(rss_before),
        cli_peak_kb,
    }
}

/// Waits for a child, sampling its peak RSS (VmHWM) until it exits; returns
/// (exit code, peak RSS in kB). Sampled rather than taken from wait4's
/// rusage: a child forked from this process inherits its high-water mark
/// across exec, and the bench process holds the generated rows.
fn wait_with_peak_rss(mut child: std::process::Child) -> (i32, u64) {
    let pid = child.id();
    let mut peak = 0;
    loop {
        peak = peak.max(daemon::proc_kb(pid, "VmHWM"));
        if let Ok(Some(status)) = child.try_wait() {
            return (status.code().unwrap_or(-1), peak);
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

fn count_lines(p: &Path) -> u64 {
    let data = std::fs::read(p).expect("read export");
    data.iter().filter(|b| **b == b'\n').count() as u64
}

fn tokio_rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("bench-client")
        .enable_all()
        .build()
        .expect("client runtime")
}

/// The baseline the daemon's send path is held to: reqwest (configured as
/// pushd's client) posting WhatsApp message bodies to the same mock at the
/// same concurrency, reading each reply's message id.
fn bare_send_loop(mock: std::net::SocketAddr, n: u64, concurrency: usize) -> Duration {
    let rt = tokio_rt();
    // The daemon's client settings (pushd::channel::http_client).
    let client = reqwest::Client::builder()
        .tcp_nodelay(true)
        .build()
        .expect("client");
    let url = format!("http://{mock}/v21.0/{WA_PHONE_ID}/messages");
    let next = Arc::new(AtomicUsize::new(1));
    rt.block_on(async move {
        let t = Instant::now();
        let mut tasks = Vec::new();
        for _ in 0..concurrency {
            let (client, url, next) = (client.clone(), url.clone(), next.clone());
            tasks.push(tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed) as u64;
                    if i > n {
                        break;
                    }
                    let body = json!({
                        "messaging_product": "whatsapp",
                        "recipient_type": "individual",
                        "to": format!("8525{i:08}"),
                        "type": "text",
                        "text": { "body": "Hi Ava, this week's offer is waiting for you." }
                    });
                    let r = client
                        .post(&url)
                        .bearer_auth(WA_TOKEN)
                        .json(&body)
                        .send()
                        .await
                        .expect("bare send");
                    let bytes = r.bytes().await.expect("bare reply");
                    let v: serde_json::Value = serde_json::from_slice(&bytes).expect("reply json");
                    assert!(v.pointer("/messages/0/id").is_some());
                }
            }));
        }
        for t in tasks {
            t.await.expect("send task");
        }
        t.elapsed()
    })
}

fn sign(body: &[u8]) -> String {
    use hmac::{KeyInit, Mac};
    let mut mac = <hmac::Hmac<sha2::Sha256> as KeyInit>::new_from_slice(WA_APP_SECRET.as_bytes())
        .expect("any key length");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// A WhatsApp `delivered` status webhook for message `id` sent to `to`.
fn status_body(id: &str, to: &str) -> String {
    let ts = chrono::Utc::now().timestamp();
    json!({
        "object": "whatsapp_business_account",
        "entry": [{
            "id": "102290129340398",
            "changes": [{ "field": "messages", "value": {
                "messaging_product": "whatsapp",
                "metadata": { "display_phone_number": "15550783881", "phone_number_id": WA_PHONE_ID },
                "statuses": [{
                    "id": id,
                    "status": "delivered",
                    "timestamp": ts.to_string(),
                    "recipient_id": to,
                    "conversation": { "id": "CONVERSATION_ID", "origin": { "type": "marketing" } },
                    "pricing": { "billable": true, "pricing_model": "PMP", "category": "marketing", "type": "regular" }
                }]
            }}]
        }]
    })
    .to_string()
}

/// A signed status webhook for each of `messages`, posted by `concurrency`
/// client tasks.
fn post_receipts(url: &str, messages: &Arc<Vec<(String, String)>>, concurrency: usize) -> Duration {
    let n = messages.len() as u64;
    let rt = tokio_rt();
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(1024)
        .tcp_nodelay(true)
        .build()
        .expect("client");
    let next = Arc::new(AtomicUsize::new(1));
    let url = url.to_string();
    rt.block_on(async move {
        let t = Instant::now();
        let mut tasks = Vec::new();
        for _ in 0..concurrency {
            let (client, url, next) = (client.clone(), url.clone(), next.clone());
            let messages = messages.clone();
            tasks.push(tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed) as u64;
                    if i > n {
                        break;
                    }
                    let (id, to) = &messages[i as usize - 1];
                    let body = status_body(id, to);
                    let sig = sign(body.as_bytes());
                    let r = client
                        .post(&url)
                        .header("Content-Type", "application/json")
                        .header("X-Hub-Signature-256", sig)
                        .body(body)
                        .send()
                        .await
                        .expect("post webhook");
                    let status = r.status();
                    let _ = r.bytes().await;
                    assert!(status.is_success(), "webhook answered {status}");
                }
            }));
        }
        for t in tasks {
            t.await.expect("webhook task");
        }
        t.elapsed()
    })
}

/// Two pushes at once on the real clock, with per-push rates of 100/min and
/// 6000/min (global rate unlimited); the mock timestamps each arrival.
fn rate_accuracy(d: &Daemon, wa: &mock::Server, dir: &Path, scale: f64) -> Vec<Row> {
    // (audience, per minute, bucket, seconds to run)
    let plans = [
        ("r100", 100u32, 1u64, (30.0 * scale).max(10.0)),
        ("r6000", 6000, 5, (10.0 * scale).max(5.0)),
    ];
    let csv = dir.join("rate.csv");
    let mut rows = Vec::new();
    let mut counts = Vec::new();
    for (aud, per_min, bucket, secs) in plans {
        let n = bucket + (secs * per_min as f64 / 60.0).round() as u64;
        counts.push(n);
        for i in 1..=n {
            rows.push(format!("wr,{aud}-{i:06},Rate,en,{aud}"));
        }
    }
    std::fs::write(
        &csv,
        format!(
            "channel,channel_user_id,name,locale,tags\n{}\n",
            rows.join("\n")
        ),
    )
    .expect("write rate csv");
    import(d, &csv);
    if let Ok(mut a) = wa.seen.rate_arrivals.lock() {
        a.clear();
    }
    eprintln!(
        "[rate] 100/min and 6000/min pushes on the real clock (~{:.0} s)…",
        plans[0].3
    );
    for (aud, per_min, _, _) in plans {
        d.create_push(&format!("rate-{aud}"), aud, "hello", Some(per_min));
    }
    for (aud, _, _, secs) in plans {
        d.wait_completed(
            &format!("rate-{aud}"),
            Duration::from_secs_f64(secs * 3.0 + 60.0),
        );
    }
    let arrivals = wa
        .seen
        .rate_arrivals
        .lock()
        .map(|a| a.clone())
        .unwrap_or_default();
    let mut out = Vec::new();
    for ((aud, per_min, bucket, _), n) in plans.into_iter().zip(counts) {
        let times: Vec<Instant> = arrivals
            .iter()
            .filter(|(_, to)| to.starts_with(&format!("{aud}-")))
            .map(|(t, _)| *t)
            .collect();
        assert_eq!(times.len() as u64, n, "rate push {aud}: sends seen");
        let period = 60.0 / per_min as f64;
        let span = (times[times.len() - 1] - times[0]).as_secs_f64();
        // GCRA: n conforming sends take (n - bucket) periods.
        let measured = (n - bucket) as f64 / span * 60.0;
        // Arrivals are timestamped at the mock, after the daemon's store write
        // and HTTP: jitter up to half a period (at most 20 ms) is not a burst.
        let worst = max_burst(&times, period, (period / 2.0).min(0.020));
        let err = measured / per_min as f64 - 1.0;
        out.push(Row {
            figure: format!("rate accuracy {per_min}/min ({n} sends, {span:.1} s)"),
            value: format!("{measured:.2}/min, max burst {worst}"),
            baseline: format!("{per_min}/min configured, bucket {bucket}"),
            ratio: Some(measured / per_min as f64),
            target: "±1%, burst ≤ bucket".into(),
            pass: Some(err.abs() <= 0.01 && worst <= bucket),
        });
    }
    out
}

/// The largest number of sends in excess of what the rate allows over any
/// stretch of arrivals: max over i ≤ j of (j − i + 1) − ⌊(t_j − t_i + slack) / T⌋.
/// GCRA with bucket b keeps this ≤ b; `slack` absorbs loopback jitter.
fn max_burst(times: &[Instant], period: f64, slack: f64) -> u64 {
    let mut worst = 0i64;
    for i in 0..times.len() {
        for j in i..times.len() {
            let dt = (times[j] - times[i]).as_secs_f64();
            let allowed = ((dt + slack) / period).floor() as i64;
            worst = worst.max((j - i + 1) as i64 - allowed);
        }
    }
    worst.max(0) as u64
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|s| s.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let mem_kb = proc_meminfo("MemTotal");
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_default();
    format!(
        "{cpu}, {cores} cores, {:.0} GB RAM, Linux {kernel}",
        mem_kb as f64 / 1024.0 / 1024.0
    )
}

fn proc_meminfo(field: &str) -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn fmt_n(n: u64) -> String {
    if n >= 1_000_000 && n.is_multiple_of(100_000) {
        format!("{}M", n as f64 / 1e6)
    } else if n >= 1000 && n.is_multiple_of(1000) {
        format!("{}k", n / 1000)
    } else {
        n.to_string()
    }
}

fn fmt_rate(r: f64) -> String {
    if r >= 1e6 {
        format!("{:.2}M", r / 1e6)
    } else if r >= 1e3 {
        format!("{:.1}k", r / 1e3)
    } else {
        format!("{r:.0}")
    }
}

fn fmt_secs(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s < 1.0 {
        format!("{:.0} ms", s * 1e3)
    } else {
        format!("{s:.2} s")
    }
}

fn fmt_mb(kb: u64) -> String {
    format!("{:.1} MB", kb as f64 / 1024.0)
}
