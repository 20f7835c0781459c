//! The read side of a finished push: `push.report`'s latency beside the
//! GROUP BY scan its counters replace, and the CSV export's time and memory
//! beside a bare SELECT written to CSV.

use crate::daemon::{self, Daemon};
use crate::inproc;
use serde_json::json;
use std::io::Read;
use std::path::Path;
use std::time::{Duration, Instant};

/// Median latency of `push.report` over the socket, and the GROUP BY scan
/// the counters replace (read-only connection to the same database).
pub fn report_latency(d: &Daemon, push: i64) -> (f64, f64) {
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

pub struct Export {
    pub took: Duration,
    pub bare: Duration,
    pub rows: u64,
    pub daemon_growth_kb: u64,
    pub cli_peak_kb: u64,
}

pub fn export(d: &Daemon, push: i64, dir: &Path) -> Export {
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
    let _ = std::fs::remove_file(&out);
    let bare_out = dir.join("bare-export.csv");
    let bare = inproc::bare_export(d.db_path(), push, &bare_out);
    let _ = std::fs::remove_file(&bare_out);
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

/// Lines in a file, read in blocks (an export of 10M rows is over a GB).
fn count_lines(p: &Path) -> u64 {
    let mut f = std::fs::File::open(p).expect("open export");
    let mut buf = vec![0u8; 1 << 20];
    let mut lines = 0;
    loop {
        let n = f.read(&mut buf).expect("read export");
        if n == 0 {
            return lines;
        }
        lines += buf[..n].iter().filter(|b| **b == b'\n').count() as u64;
    }
}
