//! The arithmetic behind the verdicts, kept pure so it is unit-tested
//! (`unit.rs`): medians, ratios bracketed by the baseline runs around them,
//! the alternating run order, bursts and rates measured from arrival times.

use std::time::{Duration, Instant};

pub fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

/// Rates of measured runs and of the bare runs around them: bare[i] and
/// bare[i + 1] bracket runs[i] (bare, run, bare, run, …, bare).
#[derive(Debug, Default)]
pub struct Interleaved {
    pub runs: Vec<f64>,
    pub bare: Vec<f64>,
}

/// What a set of runs came to.
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    pub run: f64,
    pub bare: f64,
    pub ratio: f64,
    /// "; runs lo–hi×" when there are several runs.
    pub spread: String,
}

fn spread(ratios: &[f64]) -> String {
    if ratios.len() < 2 {
        return String::new();
    }
    let lo = ratios.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = ratios.iter().copied().fold(0.0, f64::max);
    format!("; runs {lo:.2}–{hi:.2}×")
}

impl Interleaved {
    /// The ratio is the median of the runs' own ratios, each run over the
    /// mean of the bare runs just before and after it: the machine's speed
    /// drifts between runs, and a run is only comparable with the baseline
    /// measured around it. A run without a bare run after it is dropped.
    pub fn summary(&self) -> Summary {
        let ratios: Vec<f64> = self
            .runs
            .iter()
            .zip(self.bare.windows(2))
            .map(|(r, b)| r / ((b[0] + b[1]) / 2.0))
            .collect();
        Summary {
            run: median(&self.runs),
            bare: median(&self.bare),
            ratio: median(&ratios),
            spread: spread(&ratios),
        }
    }
}

/// Which of a pair runs first in round `i` of an alternating series: A B,
/// B A, A B, … (ABBA order: a drift of the machine's speed that is linear
/// over the series favours neither side).
pub fn a_first(i: usize) -> bool {
    i.is_multiple_of(2)
}

/// Paired measurements taken in alternating order ([`a_first`]), as times:
/// the ratio is the median of the pairs' bare ÷ pushd (> 1 = pushd faster).
#[derive(Debug, Default)]
pub struct Paired {
    pub pushd: Vec<Duration>,
    pub bare: Vec<Duration>,
}

impl Paired {
    pub fn push(&mut self, pushd: Duration, bare: Duration) {
        self.pushd.push(pushd);
        self.bare.push(bare);
    }

    pub fn summary(&self) -> Summary {
        let secs = |v: &[Duration]| v.iter().map(Duration::as_secs_f64).collect::<Vec<_>>();
        let ratios: Vec<f64> = self
            .pushd
            .iter()
            .zip(&self.bare)
            .map(|(p, b)| b.as_secs_f64() / p.as_secs_f64().max(1e-12))
            .collect();
        Summary {
            run: median(&secs(&self.pushd)),
            bare: median(&secs(&self.bare)),
            ratio: median(&ratios),
            spread: spread(&ratios),
        }
    }
}

/// The largest number of sends in excess of what the rate allows over any
/// stretch of arrivals: max over i ≤ j of (j − i + 1) − ⌊(t_j − t_i + slack) / T⌋.
/// GCRA with bucket b keeps this ≤ b; `slack` absorbs loopback jitter.
pub fn max_burst(times: &[Instant], period: f64, slack: f64) -> u64 {
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

/// The most arrivals in any window of `width` seconds (times in seconds,
/// sorted): a burst check that is linear in the number of arrivals.
pub fn max_in_window(times: &[f64], width: f64) -> usize {
    let mut best = 0;
    let mut lo = 0;
    for hi in 0..times.len() {
        while times[hi] - times[lo] >= width {
            lo += 1;
        }
        best = best.max(hi - lo + 1);
    }
    best
}

/// The rate of one stream of arrivals (seconds, sorted) inside a window:
/// (arrivals − 1) ÷ (last − first) over the arrivals in [from, to], so the
/// window's edges do not quantise it. None with fewer than two.
pub fn rate_in(times: &[f64], from: f64, to: f64) -> Option<f64> {
    let inside: Vec<f64> = times
        .iter()
        .copied()
        .filter(|t| *t >= from && *t <= to)
        .collect();
    let (first, last) = (inside.first()?, inside.last()?);
    (inside.len() >= 2 && last > first).then(|| (inside.len() - 1) as f64 / (last - first))
}

/// The window in which every stream is sending: from the latest first
/// arrival plus `settle` (start-up and the initial bucket behind us) to the
/// earliest last arrival. None when the streams never overlap that long.
pub fn steady_window(streams: &[Vec<f64>], settle: f64) -> Option<(f64, f64)> {
    let from = streams
        .iter()
        .map(|s| s.first().copied())
        .try_fold(f64::NEG_INFINITY, |acc, f| f.map(|f| acc.max(f)))?
        + settle;
    let to = streams
        .iter()
        .map(|s| s.last().copied())
        .try_fold(f64::INFINITY, |acc, l| l.map(|l| acc.min(l)))?;
    (to > from).then_some((from, to))
}

/// The worst relative error of measured rates against their limits:
/// (lowest measured ÷ limit, highest measured ÷ limit).
pub fn ratio_range(pairs: &[(f64, f64)]) -> (f64, f64) {
    pairs
        .iter()
        .fold((f64::INFINITY, 0.0f64), |(lo, hi), (m, l)| {
            let r = m / l;
            (lo.min(r), hi.max(r))
        })
}

/// Growth of a cost between two runs, against the growth of the work: the
/// cost grew `growth`× for `work`× the work; within `slack` of linear
/// (e.g. 1.1: ≤ 11× for 10× the work) is linear or better.
pub fn growth_ok(growth: f64, work: f64, slack: f64) -> bool {
    growth.is_finite() && growth <= work * slack
}
