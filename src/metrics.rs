//! Process metrics, rendered as Prometheus text at `/metrics`. Plain atomics
//! and small maps: cheap on the send path, no registry crate needed.

use crate::channel::activity::Activity;
use crate::model::SendError;
use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Default)]
pub struct Metrics {
    /// (channel, outcome) → sends.
    sends: Mutex<BTreeMap<(String, &'static str), u64>>,
    /// channel → retries scheduled.
    retries: Mutex<BTreeMap<String, u64>>,
    /// (channel, kind) → webhook events applied.
    events: Mutex<BTreeMap<(String, &'static str), u64>>,
    /// (channel, status code) → webhook requests refused.
    webhook_rejects: Mutex<BTreeMap<(String, u16), u64>>,
    reloads_ok: AtomicU64,
    reloads_failed: AtomicU64,
    /// Each channel's current rate and last error (the Channels page).
    pub activity: Activity,
}

fn bump<K: Ord>(m: &Mutex<BTreeMap<K, u64>>, k: K, n: u64) {
    if let Ok(mut m) = m.lock() {
        *m.entry(k).or_insert(0) += n;
    }
}

/// Extra gauges read at scrape time.
#[derive(Default)]
pub struct Gauges {
    pub queue_depth: u64,
    pub pushes_by_state: BTreeMap<String, u64>,
    pub members: u64,
}

impl Metrics {
    /// `n` sends the channel accepted (counted per recorded run, not per send).
    pub fn record_sent(&self, channel: &str, n: u64) {
        bump(&self.sends, (channel.to_string(), "sent"), n);
        self.activity.sent(channel, n);
    }

    pub fn record_send_error(&self, channel: &str, e: &SendError) {
        bump(&self.sends, (channel.to_string(), e.class.as_str()), 1);
        self.activity.failed(channel, e);
    }

    pub fn record_retry(&self, channel: &str) {
        bump(&self.retries, channel.to_string(), 1);
    }

    pub fn record_event(&self, channel: &str, kind: &'static str) {
        bump(&self.events, (channel.to_string(), kind), 1);
    }

    pub fn record_webhook_reject(&self, channel: &str, status: u16) {
        bump(&self.webhook_rejects, (channel.to_string(), status), 1);
    }

    pub fn record_reload(&self, ok: bool) {
        if ok {
            self.reloads_ok.fetch_add(1, Ordering::Relaxed);
        } else {
            self.reloads_failed.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub fn render(&self, g: &Gauges) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "# HELP pushd_sends_total Send attempts by channel and outcome."
        );
        let _ = writeln!(out, "# TYPE pushd_sends_total counter");
        if let Ok(m) = self.sends.lock() {
            for ((ch, outcome), n) in m.iter() {
                let _ = writeln!(
                    out,
                    "pushd_sends_total{{channel=\"{}\",outcome=\"{outcome}\"}} {n}",
                    esc(ch)
                );
            }
        }
        let _ = writeln!(
            out,
            "# HELP pushd_retries_total Retries scheduled after transient failures."
        );
        let _ = writeln!(out, "# TYPE pushd_retries_total counter");
        if let Ok(m) = self.retries.lock() {
            for (ch, n) in m.iter() {
                let _ = writeln!(out, "pushd_retries_total{{channel=\"{}\"}} {n}", esc(ch));
            }
        }
        let _ = writeln!(
            out,
            "# HELP pushd_webhook_events_total Inbound events applied, by kind."
        );
        let _ = writeln!(out, "# TYPE pushd_webhook_events_total counter");
        if let Ok(m) = self.events.lock() {
            for ((ch, kind), n) in m.iter() {
                let _ = writeln!(
                    out,
                    "pushd_webhook_events_total{{channel=\"{}\",kind=\"{kind}\"}} {n}",
                    esc(ch)
                );
            }
        }
        let _ = writeln!(
            out,
            "# HELP pushd_webhook_rejected_total Webhook requests refused, by HTTP status."
        );
        let _ = writeln!(out, "# TYPE pushd_webhook_rejected_total counter");
        if let Ok(m) = self.webhook_rejects.lock() {
            for ((ch, status), n) in m.iter() {
                let _ = writeln!(
                    out,
                    "pushd_webhook_rejected_total{{channel=\"{}\",status=\"{status}\"}} {n}",
                    esc(ch)
                );
            }
        }
        let _ = writeln!(
            out,
            "# HELP pushd_reloads_total Config and script reload attempts by result."
        );
        let _ = writeln!(out, "# TYPE pushd_reloads_total counter");
        let _ = writeln!(
            out,
            "pushd_reloads_total{{result=\"ok\"}} {}",
            self.reloads_ok.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "pushd_reloads_total{{result=\"failed\"}} {}",
            self.reloads_failed.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP pushd_queue_depth Recipients not yet in a final state, over all pushes."
        );
        let _ = writeln!(out, "# TYPE pushd_queue_depth gauge");
        let _ = writeln!(out, "pushd_queue_depth {}", g.queue_depth);
        let _ = writeln!(out, "# HELP pushd_pushes Pushes by status.");
        let _ = writeln!(out, "# TYPE pushd_pushes gauge");
        for (state, n) in &g.pushes_by_state {
            let _ = writeln!(out, "pushd_pushes{{status=\"{state}\"}} {n}");
        }
        let _ = writeln!(out, "# HELP pushd_members Members in the store.");
        let _ = writeln!(out, "# TYPE pushd_members gauge");
        let _ = writeln!(out, "pushd_members {}", g.members);
        out
    }
}

fn esc(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}
