//! What the main daemon under bench is given: its config and scripts, the
//! member rows every import uses (streamed to CSV: at 10M members a Vec of
//! rows would hold gigabytes in the bench process), and the import itself.

use crate::daemon::Daemon;
use crate::mock;
use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

pub const WA_TOKEN: &str = "bench-token";
pub const WA_APP_SECRET: &str = "bench-app-secret";
pub const TEMPLATE_TEXT: &str = "Hi {{name}}, this week's offer is waiting for you.";
/// One recipient in this many is blocked by the simulator, so the
/// recipients explorer's `sent_fail` has rows spread over the whole push.
pub const SIM_BLOCK_RATE: f64 = 0.001;

/// A WhatsApp instance on the mock, as a config table.
pub fn whatsapp_channel(name: &str, mock_port: u16, phone: &str, per_second: f64) -> String {
    format!(
        r#"[channels.{name}]
kind = "whatsapp"
base_url = "http://127.0.0.1:{mock_port}"
phone_number_id = "{phone}"
token = "{WA_TOKEN}"
app_secret = "{WA_APP_SECRET}"
verify_token = "bench-verify"
rate_per_second = {per_second}
"#
    )
}

/// The shared head of every bench daemon's config.
pub fn config_head(rate_per_minute: u64, concurrency: usize) -> String {
    format!(
        r#"[daemon]
data_dir = "data"
[http]
listen = "127.0.0.1:0"
max_connections = 4096
[dispatch]
rate_per_minute = {rate_per_minute}
concurrency = {concurrency}
[scripts]
debounce = "100ms"
"#
    )
}

/// The main daemon: the simulator, the bulk WhatsApp instance and the
/// rate-accuracy one.
pub fn config(mock_port: u16, concurrency: usize) -> String {
    format!(
        r#"{head}[channels.sim]
kind = "simulator"
latency = "0ms"
block_rate = {SIM_BLOCK_RATE}
invalid_rate = 0.0
transient_rate = 0.0
rate_limit_rate = 0.0
delivered_rate = 0.0
[channels.lk]
kind = "simulator"
latency = "0ms"
block_rate = 0.0
invalid_rate = 0.0
transient_rate = 0.0
rate_limit_rate = 0.0
delivered_rate = 0.0
[links]
public_url = "https://go.example.com"
preview_window = "0s"
{wa}{wr}{policy}"#,
        head = config_head(0, concurrency),
        wa = whatsapp_channel("wa", mock_port, mock::BULK_PHONE_ID, 10_000_000.0),
        wr = whatsapp_channel("wr", mock_port, mock::RATE_PHONE_ID, 10_000_000.0),
        policy = policy_section(),
    )
}

/// `PUSHD_BENCH_POLICY='max_per_member = { day = 1000000 }'` runs the main
/// daemon's figures under that `[policy]` (what checking and counting caps
/// costs).
fn policy_section() -> String {
    match std::env::var("PUSHD_BENCH_POLICY") {
        Ok(p) if !p.trim().is_empty() => format!("[policy]\n{p}\n"),
        _ => String::new(),
    }
}

pub fn scripts() -> String {
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
        target = super::links::TARGET
    )
}

const NAMES: [&str; 8] = [
    "Ava", "Ben", "Chloe", "Dev", "Elif", "Farah", "Goran", "Hana",
];

/// One member as the bench writes it (CSV for pushd, rows for the baseline).
pub struct MemberRow {
    pub channel: String,
    pub user: String,
    pub name: String,
    pub locale: String,
    pub tags: Vec<String>,
}

/// The member rows every import measurement uses (the CSV and the bare
/// baseline write the same rows).
pub fn member_row(channel: &str, i: u64) -> MemberRow {
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
    MemberRow {
        channel: channel.to_string(),
        user,
        name: NAMES[(i % 8) as usize].to_string(),
        locale: "en".into(),
        tags,
    }
}

/// Writes a members CSV row by row.
pub fn write_csv(path: &Path, rows: impl Iterator<Item = MemberRow>) {
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

/// `pushd members import` through the real CLI; the time it took.
pub fn import(d: &Daemon, csv: &Path) -> Duration {
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

pub fn rate(n: u64, d: Duration) -> f64 {
    n as f64 / d.as_secs_f64().max(1e-9)
}
