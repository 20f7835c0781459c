//! Many accounts at once: a daemon with 100 WhatsApp-shaped channel
//! instances on the mock, each with its own `rate_per_second` (10–80 msg/s),
//! and one more ("solo") whose limit is their sum. Three phases, each on the
//! real clock, every send timestamped by the mock:
//!
//! 1. solo: one push through the one channel at the 100 channels' summed
//!    rate — the single-channel figure (aggregate rate, CPU per message);
//! 2. all: one push per channel, all at once, the global rate above their
//!    sum — each channel's rate over the window in which all of them send;
//! 3. global: the same pushes again with the global rate at half their sum
//!    — the aggregate must hold to the global rate, each channel to its own;
//!    cancelled once the window is measured.
//!
//! CPU is the daemon's utime + stime from /proc over each phase.

use crate::daemon::Daemon;
use crate::fixtures::{self, config_head, whatsapp_channel};
use crate::mock::{self, Arrival};
use crate::table::{Row, Target};
use crate::{fmt, stats};
use serde_json::json;
use std::collections::HashMap;
use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

pub const CHANNELS: usize = 100;
const SOLO: &str = "solo";
const SOLO_PHONE: &str = "79999999";
/// Seconds at the start of a phase that are not measured: the pushes'
/// start-up and each limiter's initial bucket.
pub const SETTLE: f64 = 1.0;

/// The channels' limits, mixed over 10–80 msg/s (a fixed permutation, so
/// every run has the same mix).
pub fn rates() -> Vec<u32> {
    (0..CHANNELS).map(|i| 10 + ((i * 37) % 71) as u32).collect()
}

fn name(i: usize) -> String {
    format!("acc{i:03}")
}

fn phone(i: usize) -> String {
    format!("7000{i:04}")
}

/// A GCRA limiter's bucket at `rate` (`dispatch::rate`: 50 ms of sends, at least one).
pub fn bucket(rate: f64) -> u64 {
    ((rate * 0.05).round() as u64).max(1)
}

/// Members that keep a channel at `rate` busy for `secs`.
fn members_for(rate: f64, secs: f64) -> u64 {
    (rate * secs).round() as u64 + bucket(rate)
}

pub fn config(mock_port: u16, concurrency: usize, global_per_second: f64) -> String {
    let rates = rates();
    let sum: u32 = rates.iter().sum();
    let mut c = config_head((global_per_second * 60.0).round() as u64, concurrency);
    for (i, r) in rates.iter().enumerate() {
        c.push_str(&whatsapp_channel(&name(i), mock_port, &phone(i), *r as f64));
    }
    c.push_str(&whatsapp_channel(SOLO, mock_port, SOLO_PHONE, sum as f64));
    c
}

pub fn scripts() -> String {
    let mut s = format!(
        "template \"hello\" {{ en = {{ text = \"{}\" }} }}\nroute(function(m, msg, ctx) return {{ channel = m.channel }} end)\n",
        fixtures::TEMPLATE_TEXT
    );
    for i in 0..CHANNELS {
        s.push_str(&format!(
            "audience \"{n}\" {{ where = {{ channel = \"{n}\" }} }}\n",
            n = name(i)
        ));
    }
    s.push_str(&format!(
        "audience \"{SOLO}\" {{ where = {{ channel = \"{SOLO}\" }} }}\n"
    ));
    s
}

/// Members for every channel (sized for `secs` at its limit) and for solo.
pub fn write_members(path: &Path, secs: f64) -> u64 {
    let f = std::fs::File::create(path).expect("create accounts csv");
    let mut w = std::io::BufWriter::new(f);
    writeln!(w, "channel,channel_user_id,name,locale,tags").expect("write csv");
    let mut total = 0;
    let rates = rates();
    let sum: u32 = rates.iter().sum();
    let chans = rates
        .iter()
        .enumerate()
        .map(|(i, r)| (name(i), *r))
        .chain([(SOLO.to_string(), sum)]);
    for (ch, rate) in chans {
        for j in 0..members_for(rate as f64, secs) {
            writeln!(w, "{ch},{ch}-{j:07},Ava,en,").expect("write csv");
            total += 1;
        }
    }
    w.flush().expect("flush csv");
    total
}

/// What one phase saw.
pub struct Phase {
    /// Arrival times (seconds since the phase began) per phone number id.
    pub arrivals: HashMap<String, Vec<f64>>,
    pub cpu_secs: f64,
    pub messages: u64,
    pub took: Duration,
}

impl Phase {
    fn from(arrivals: Vec<Arrival>, t0: Instant, cpu_secs: f64, took: Duration) -> Phase {
        let messages = arrivals.len() as u64;
        let mut by_phone: HashMap<String, Vec<f64>> = HashMap::new();
        for a in arrivals {
            by_phone
                .entry(a.phone)
                .or_default()
                .push(a.at.saturating_duration_since(t0).as_secs_f64());
        }
        for v in by_phone.values_mut() {
            v.sort_by(f64::total_cmp);
        }
        Phase {
            arrivals: by_phone,
            cpu_secs,
            messages,
            took,
        }
    }

    /// Each channel's arrivals with its limit, in channel order (empty
    /// when a channel sent nothing).
    pub fn channels(&self) -> Vec<(Vec<f64>, f64)> {
        rates()
            .into_iter()
            .enumerate()
            .map(|(i, r)| {
                (
                    self.arrivals.get(&phone(i)).cloned().unwrap_or_default(),
                    r as f64,
                )
            })
            .collect()
    }

    pub fn solo(&self) -> Vec<f64> {
        self.arrivals.get(SOLO_PHONE).cloned().unwrap_or_default()
    }

    pub fn cpu_per_message(&self) -> f64 {
        self.cpu_secs / self.messages.max(1) as f64
    }
}

fn wait_all(d: &Daemon, names: &[String], secs: f64) {
    for n in names {
        d.wait_completed(n, Duration::from_secs_f64(secs * 3.0 + 120.0));
    }
}

/// Creates `pushes` (name, audience) scheduled to start together a moment
/// from now (so that the last created does not start late); returns the
/// start and the daemon's CPU time before the creates.
fn start_together(d: &Daemon, pushes: &[(String, String)]) -> (Instant, f64) {
    let lead = Duration::from_millis(2000 + 20 * pushes.len() as u64);
    let at = chrono::Utc::now() + lead;
    let start = Instant::now() + lead;
    let at = at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let cpu0 = d.cpu_secs();
    for (name, audience) in pushes {
        d.create_push_with(
            json!({ "name": name, "audience": audience, "template": "hello", "at": at }),
        );
    }
    if Instant::now() > start {
        eprintln!("[accounts] creating the pushes outlasted their common start: some start late");
    }
    (start, cpu0)
}

fn per_channel(prefix: &str) -> Vec<(String, String)> {
    (0..CHANNELS)
        .map(|i| (format!("{prefix}-{}", name(i)), name(i)))
        .collect()
}

/// Phase 1: the one channel at the summed rate, to completion.
pub fn solo(d: &Daemon, wa: &mock::Server, secs: f64) -> Phase {
    wa.seen.take_arrivals();
    let pushes = [("solo".to_string(), SOLO.to_string())];
    let (t0, cpu0) = start_together(d, &pushes);
    wait_all(d, &["solo".to_string()], secs);
    let (took, cpu) = (t0.elapsed(), d.cpu_secs() - cpu0);
    Phase::from(wa.seen.take_arrivals(), t0, cpu, took)
}

/// Phase 2: a push per channel, all at once, to completion.
pub fn all(d: &Daemon, wa: &mock::Server, secs: f64) -> Phase {
    wa.seen.take_arrivals();
    let pushes = per_channel("all");
    let (t0, cpu0) = start_together(d, &pushes);
    let names: Vec<String> = pushes.into_iter().map(|(n, _)| n).collect();
    wait_all(d, &names, secs);
    let (took, cpu) = (t0.elapsed(), d.cpu_secs() - cpu0);
    Phase::from(wa.seen.take_arrivals(), t0, cpu, took)
}

/// Phase 3: the pushes again under a binding global rate, for `secs` after
/// they have all started; then every one is cancelled.
pub fn global(d: &Daemon, wa: &mock::Server, config: &str, secs: f64) -> Phase {
    d.reload_config(config);
    wa.seen.take_arrivals();
    let pushes = per_channel("global");
    let (t0, cpu0) = start_together(d, &pushes);
    // Every channel's first send, then the window.
    crate::daemon::wait_for(
        "every channel's first send under the global rate",
        Duration::from_secs(120),
        Duration::from_millis(50),
        || {
            let a = wa.seen.arrivals.lock().ok()?;
            let seen: std::collections::HashSet<&str> =
                a.iter().map(|a| a.phone.as_str()).collect();
            (seen.len() >= CHANNELS).then_some(())
        },
    );
    // The measurement window itself: sends on the real clock.
    std::thread::sleep(Duration::from_secs_f64(SETTLE + secs));
    let (took, cpu) = (t0.elapsed(), d.cpu_secs() - cpu0);
    let phase = Phase::from(wa.seen.take_arrivals(), t0, cpu, took);
    for (n, _) in &pushes {
        d.cancel(n);
    }
    phase
}

/// Each channel's rate over the window in which every channel sends.
pub struct Steady {
    /// (measured, limit) per channel.
    pub rates: Vec<(f64, f64)>,
    pub from: f64,
    pub to: f64,
}

impl Steady {
    /// None when a channel sent too little for a window or a rate.
    pub fn of(p: &Phase) -> Option<Steady> {
        let chans = p.channels();
        let streams: Vec<Vec<f64>> = chans.iter().map(|(t, _)| t.clone()).collect();
        let (from, to) = stats::steady_window(&streams, SETTLE)?;
        let rates = chans
            .iter()
            .map(|(t, limit)| Some((stats::rate_in(t, from, to)?, *limit)))
            .collect::<Option<Vec<_>>>()?;
        Some(Steady { rates, from, to })
    }
}

/// The many-accounts rows from the three phases' arrivals.
pub fn rows(solo: &Phase, all: &Phase, bound: &Phase, sum: f64, global: f64) -> Vec<Row> {
    let k = CHANNELS;
    let mut rows = Vec::new();
    let solo_rate = stats::rate_in(&solo.solo(), SETTLE, f64::INFINITY);
    let mut own = Row::new(
        "accounts-rates",
        format!("{k} accounts at once: each channel's rate (10–80/s, sum {sum}/s)"),
    )
    .baseline("each channel's own rate_per_second".into());
    let mut agg = Row::new(
        "accounts-cpu",
        format!("{k} accounts at once: aggregate and CPU per message"),
    );
    match Steady::of(all) {
        Some(Steady { rates: r, from, to }) => {
            let (lo, hi) = stats::ratio_range(&r);
            eprintln!("[accounts] measured ÷ limit by limit: {}", by_limit(&r));
            let within = r
                .iter()
                .filter(|(m, l)| (m / l - 1.0).abs() <= 0.02)
                .count();
            let worst = if (1.0 - lo) > (hi - 1.0) { lo } else { hi };
            let n_in: usize = all
                .channels()
                .iter()
                .map(|(t, _)| t.iter().filter(|x| **x >= from && **x <= to).count())
                .sum();
            let aggregate = n_in as f64 / (to - from);
            own = own
                .value(format!(
                    "{within}/{k} within ±2% over {:.1} s (measured ÷ limit {lo:.3}–{hi:.3})",
                    to - from
                ))
                .ratio(worst, Target::Within(0.98, 1.02));
            agg = agg
                .value(format!(
                    "{} msg/s ({:.3}× the limits' sum), {:.0} µs CPU/msg",
                    fmt::rate(aggregate),
                    aggregate / sum,
                    all.cpu_per_message() * 1e6
                ))
                .also(
                    "aggregate within ±2% of the sum",
                    (aggregate / sum - 1.0).abs() <= 0.02,
                );
        }
        None => {
            own = own.value("a channel sent too little to be measured".into());
            own.target = Target::Within(0.98, 1.02);
            agg = agg.value(format!("{:.0} µs CPU/msg", all.cpu_per_message() * 1e6));
        }
    }
    rows.push(own);
    rows.push(
        agg.baseline(format!(
            "one channel at {sum}/s: {} msg/s, {:.0} µs CPU/msg",
            solo_rate.map(fmt::rate).unwrap_or_else(|| "–".into()),
            solo.cpu_per_message() * 1e6
        ))
        // A hundred accounts may cost at most twice one account's CPU per message.
        .ratio(
            solo.cpu_per_message() / all.cpu_per_message().max(1e-12),
            Target::AtLeast(0.5),
        ),
    );
    rows.push(global_row(bound, global, Steady::of(bound)));
    rows
}

/// Mean measured ÷ limit per band of limits (where a shortfall comes from).
fn by_limit(rates: &[(f64, f64)]) -> String {
    [(10.0, 30.0), (30.0, 50.0), (50.0, 70.0), (70.0, 81.0)]
        .iter()
        .filter_map(|(lo, hi)| {
            let band: Vec<f64> = rates
                .iter()
                .filter(|(_, l)| l >= lo && l < hi)
                .map(|(m, l)| m / l)
                .collect();
            (!band.is_empty()).then(|| {
                format!(
                    "{lo}–{}/s {:.3}",
                    hi - 1.0,
                    band.iter().sum::<f64>() / band.len() as f64
                )
            })
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// The pushes of every account under a global rate below their sum.
fn global_row(bound: &Phase, global: f64, steady: Option<Steady>) -> Row {
    let row = Row::new(
        "accounts-global",
        format!("{} accounts under a global rate of {global}/s", CHANNELS),
    )
    .baseline(format!("global {global}/s, bucket {}", bucket(global)));
    let Some(Steady { rates: r, from, to }) = steady else {
        let mut row = row.value("a channel sent too little to be measured".into());
        row.target = Target::Within(0.98, 1.02);
        return row;
    };
    let mut all: Vec<f64> = bound.arrivals.values().flatten().copied().collect();
    all.sort_by(f64::total_cmp);
    let inside: Vec<f64> = all.into_iter().filter(|t| *t >= from && *t <= to).collect();
    let aggregate = inside.len() as f64 / (to - from);
    let max_1s = stats::max_in_window(&inside, 1.0);
    let over = r.iter().filter(|(m, l)| m / l > 1.02).count();
    // One second may hold the rate plus the bucket, plus 50 ms of sends for
    // arrival jitter: sends are timed at the mock, and a group of them
    // leaves together once its claim is committed.
    let burst_ok = (max_1s as f64) <= global * 1.05 + bucket(global) as f64;
    row.value(format!(
        "{} msg/s over {:.1} s, max {max_1s} in 1 s, {over} channel(s) over their own limit",
        fmt::rate(aggregate),
        to - from
    ))
    .ratio(aggregate / global, Target::Within(0.98, 1.02))
    .also(
        "no channel over its limit, no 1 s over rate + bucket + 50 ms",
        over == 0 && burst_ok,
    )
}
