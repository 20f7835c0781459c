//! Rate accuracy: two pushes at once on the real clock, with per-push rates
//! of 100/min and 6000/min (global rate unlimited); the mock timestamps
//! each arrival.

use crate::daemon::Daemon;
use crate::fixtures::import;
use crate::mock;
use crate::stats::max_burst;
use std::path::Path;
use std::time::{Duration, Instant};

pub struct Accuracy {
    pub per_min: u32,
    pub bucket: u64,
    pub sends: u64,
    pub span: f64,
    /// Sends per minute, as GCRA counts them: n conforming sends take
    /// (n − bucket) periods.
    pub measured: f64,
    pub max_burst: u64,
}

/// (audience, per minute, bucket, seconds to run at `scale`).
fn plans(scale: f64) -> [(&'static str, u32, u64, f64); 2] {
    [
        ("r100", 100u32, 1u64, (30.0 * scale).max(10.0)),
        ("r6000", 6000, 5, (10.0 * scale).max(5.0)),
    ]
}

pub fn measure(d: &Daemon, wa: &mock::Server, dir: &Path, scale: f64) -> Vec<Accuracy> {
    let plans = plans(scale);
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
    wa.seen.take_arrivals();
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
    let arrivals = wa.seen.take_arrivals();
    plans
        .into_iter()
        .zip(counts)
        .map(|((aud, per_min, bucket, _), n)| {
            let prefix = format!("{aud}-");
            let times: Vec<Instant> = arrivals
                .iter()
                .filter(|a| a.phone == mock::RATE_PHONE_ID && a.to.starts_with(&prefix))
                .map(|a| a.at)
                .collect();
            assert_eq!(times.len() as u64, n, "rate push {aud}: sends seen");
            let period = 60.0 / per_min as f64;
            let span = (times[times.len() - 1] - times[0]).as_secs_f64();
            Accuracy {
                per_min,
                bucket,
                sends: n,
                span,
                measured: (n - bucket) as f64 / span * 60.0,
                // Arrivals are timestamped at the mock, after the daemon's
                // store write and HTTP: jitter up to half a period (at most
                // 20 ms) is not a burst.
                max_burst: max_burst(&times, period, (period / 2.0).min(0.020)),
            }
        })
        .collect()
}
