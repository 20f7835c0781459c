//! A/B template variants: who gets which variant, the test phase and the
//! winner phase, and the statistics that pick and judge a winner.
//!
//! A push with a [`Plan`] assigns every member by a hash of (push, member):
//! the same member always lands in the same group, whatever restarts or
//! re-runs happen, and the groups split evenly. With a [`Test`], only the
//! test share is sent first; the rest waits (pending, held until
//! [`REST_HELD`]) for a winner, chosen by the metric's rate after `wait`
//! (`auto`) or by `pushd push pick-winner` (`manual`). Holdout members get
//! nothing and are reported as the control group.
//!
//! This module is pure: the store keeps the plan and the groups, the
//! dispatcher runs the phases.

use crate::model::Millis;
use serde::{Deserialize, Serialize};
use std::fmt;

/// Fewest and most variants a template may have.
pub const MIN_VARIANTS: usize = 2;
pub const MAX_VARIANTS: usize = 8;

/// A variant name: 1–32 letters, digits, `_` or `-`, and not the
/// control group's name.
pub fn valid_name(name: &str) -> bool {
    (1..=32).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        && name != HOLDOUT
}

/// Shares (test share, holdout) are kept in basis points of the audience.
pub const BUCKETS: u64 = 10_000;

/// `next_attempt_at` of a member waiting for the winner (the year 9999):
/// pending, never due, never counted as held; the decision sets it to NULL.
pub const REST_HELD: Millis = 253_402_300_799_000;

/// `skip_reason` of a holdout member.
pub const HOLDOUT: &str = "holdout";

/// Independent hash streams, so holdout, test share and variant do not
/// correlate.
pub const SALT_HOLDOUT: u64 = 1;
pub const SALT_TEST: u64 = 2;
pub const SALT_VARIANT: u64 = 3;

/// A malformed A/B option (a share, a metric, a winner mode, a test on a
/// template without variants).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PlanError {
    #[error("metric {0:?} is not one of read, interacted, clicked")]
    Metric(String),
    #[error("winner {0:?} is not auto or manual")]
    Winner(String),
    #[error("{what} {text:?} is not a share like \"20%\" or 0.2")]
    ShareText { what: String, text: String },
    #[error("{0} must be more than 0% and less than 100% (like \"20%\" or 0.2)")]
    ShareRange(String),
    #[error("a test needs a template with variants (variants = {{ a = {{ … }}, b = {{ … }} }})")]
    TestWithoutVariants,
    #[error(
        "the clicked metric needs tracked links, but the template has none: add {{{{track \"https://…\"}}}} \
         to a text or track = true to a URL button, or test by read or interacted"
    )]
    ClickedWithoutLinks,
}

/// The rate a winner is chosen by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Metric {
    Read,
    Interacted,
    Clicked,
}

impl Metric {
    pub fn parse(s: &str) -> Result<Metric, PlanError> {
        match s.trim() {
            "read" => Ok(Metric::Read),
            "interacted" => Ok(Metric::Interacted),
            "clicked" => Ok(Metric::Clicked),
            other => Err(PlanError::Metric(other.to_string())),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Metric::Read => "read",
            Metric::Interacted => "interacted",
            Metric::Clicked => "clicked",
        }
    }
}

/// Who decides the winner.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WinnerMode {
    /// The best rate once `wait` has passed.
    Auto,
    /// `pushd push pick-winner PUSH VARIANT`.
    Manual,
}

impl WinnerMode {
    pub fn parse(s: &str) -> Result<WinnerMode, PlanError> {
        match s.trim() {
            "auto" => Ok(WinnerMode::Auto),
            "manual" => Ok(WinnerMode::Manual),
            other => Err(PlanError::Winner(other.to_string())),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            WinnerMode::Auto => "auto",
            WinnerMode::Manual => "manual",
        }
    }
}

/// A test phase: the share sent first, and how its winner is chosen.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Test {
    /// Fraction of the (non-holdout) audience in the test, 0 < share < 1.
    pub share: f64,
    /// How long after the test share's last send the winner is chosen.
    pub wait_ms: i64,
    pub metric: Metric,
    pub winner: WinnerMode,
}

/// A push's variant plan, fixed when the push is created.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    /// The template's variant names, sorted; empty for a holdout alone.
    #[serde(default)]
    pub variants: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test: Option<Test>,
    /// Fraction of the audience held out (sent nothing), 0 ≤ holdout < 1.
    #[serde(default)]
    pub holdout: f64,
}

/// Where a member lands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Group {
    Holdout,
    /// Waits for the winner (a push with a test, outside its share).
    Rest,
    /// Sent this variant (index into [`Plan::variants`]); `None` for a
    /// holdout-only plan.
    Variant(Option<usize>),
}

impl Plan {
    pub fn holdout_bp(&self) -> u64 {
        basis_points(self.holdout)
    }

    pub fn share_bp(&self) -> Option<u64> {
        self.test.map(|t| basis_points(t.share))
    }

    /// The group of `member` in push `push`: the same answer every time.
    pub fn group(&self, push: i64, member: i64) -> Group {
        if bucket(push, member, SALT_HOLDOUT, BUCKETS) < self.holdout_bp() {
            return Group::Holdout;
        }
        if let Some(share) = self.share_bp()
            && bucket(push, member, SALT_TEST, BUCKETS) >= share
        {
            return Group::Rest;
        }
        if self.variants.is_empty() {
            return Group::Variant(None);
        }
        let n = self.variants.len() as u64;
        Group::Variant(Some(bucket(push, member, SALT_VARIANT, n) as usize))
    }

    /// The plan in words, for status lines and the audit log.
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if !self.variants.is_empty() {
            parts.push(format!("variants {}", self.variants.join(", ")));
        }
        if let Some(t) = &self.test {
            parts.push(format!(
                "test {}% then the {} winner by {} rate after {}",
                pct_str(t.share),
                t.winner.as_str(),
                t.metric.as_str(),
                crate::util::duration::human_secs((t.wait_ms / 1000).max(0) as u64)
            ));
        }
        if self.holdout > 0.0 {
            parts.push(format!("holdout {}%", pct_str(self.holdout)));
        }
        parts.join("; ")
    }
}

/// The plan of a push of a template with `variants` (sorted), its `test`
/// and `holdout`: None when there is nothing to plan (no variants, no
/// holdout). `tracks_links`: whether the template has tracked links (a
/// test by clicks without any could only ever pick by its tie rule).
pub fn plan_for(
    variants: &[String],
    tracks_links: bool,
    test: Option<Test>,
    holdout: f64,
) -> Result<Option<Plan>, PlanError> {
    if test.is_some() && variants.is_empty() {
        return Err(PlanError::TestWithoutVariants);
    }
    if test.as_ref().is_some_and(|t| t.metric == Metric::Clicked) && !tracks_links {
        return Err(PlanError::ClickedWithoutLinks);
    }
    if variants.is_empty() && holdout <= 0.0 {
        return Ok(None);
    }
    Ok(Some(Plan {
        variants: variants.to_vec(),
        test,
        holdout,
    }))
}

fn pct_str(f: f64) -> String {
    let p = (f * 10_000.0).round() / 100.0;
    format!("{p}")
}

/// A fraction as basis points of [`BUCKETS`].
pub fn basis_points(f: f64) -> u64 {
    (f * BUCKETS as f64).round().clamp(0.0, BUCKETS as f64) as u64
}

/// A share written `"20%"`, `"0.2"` or `0.2` → 0.2. `what` names it in errors.
pub fn parse_share(s: &str, what: &str) -> Result<f64, PlanError> {
    let t = s.trim();
    let v = match t.strip_suffix('%') {
        Some(p) => p.trim().parse::<f64>().map(|p| p / 100.0),
        None => t.parse::<f64>(),
    }
    .map_err(|_| PlanError::ShareText {
        what: what.to_string(),
        text: s.to_string(),
    })?;
    check_share(v, what)
}

/// A share must be a fraction strictly between 0 and 1.
pub fn check_share(v: f64, what: &str) -> Result<f64, PlanError> {
    if v.is_finite() && v > 0.0 && v < 1.0 {
        Ok(v)
    } else {
        Err(PlanError::ShareRange(what.to_string()))
    }
}

/// SplitMix64 of (push, member, salt) reduced to `0..modulus`: a fixed,
/// well-mixed hash (the same on every machine and every version).
pub fn bucket(push: i64, member: i64, salt: u64, modulus: u64) -> u64 {
    let mut z = (push as u64)
        .wrapping_mul(0x9E37_79B9_7F4A_7C15)
        .wrapping_add((member as u64).wrapping_mul(0xBF58_476D_1CE4_E5B9))
        .wrapping_add(salt.wrapping_mul(0x94D0_49BB_1331_11EB));
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    if modulus == 0 { 0 } else { z % modulus }
}

/// Where a push with a plan stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Sending the test share.
    Test,
    /// The test share is sent; the winner is due at `decide_at` (auto) or
    /// waits for pick-winner (manual).
    Waiting,
    /// The winner is chosen and goes to the rest.
    Winner,
    /// No test: every variant goes to its share of the audience.
    Split,
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Phase::Test => "test",
            Phase::Waiting => "waiting",
            Phase::Winner => "winner",
            Phase::Split => "split",
        })
    }
}

/// A push's phase from its plan and decision columns.
pub fn phase(plan: &Plan, winner: Option<&str>, decide_at: Option<Millis>) -> Phase {
    match (plan.test, winner, decide_at) {
        (None, _, _) => Phase::Split,
        (Some(_), Some(_), _) => Phase::Winner,
        (Some(_), None, Some(_)) => Phase::Waiting,
        (Some(_), None, None) => Phase::Test,
    }
}

/// One variant's score on the metric: `hits` of `sent`.
#[derive(Debug, Clone, PartialEq)]
pub struct Score {
    pub variant: String,
    pub hits: u64,
    pub sent: u64,
}

impl Score {
    pub fn rate(&self) -> f64 {
        if self.sent == 0 {
            0.0
        } else {
            self.hits as f64 / self.sent as f64
        }
    }
}

/// The best score's index: the highest rate; a tie goes to the variant
/// sent to more members, then to the first name. None when nothing was sent.
pub fn best(scores: &[Score]) -> Option<usize> {
    let mut best: Option<usize> = None;
    for (i, s) in scores.iter().enumerate() {
        if s.sent == 0 {
            continue;
        }
        best = match best {
            None => Some(i),
            Some(b) => {
                let (r, rb) = (s.rate(), scores[b].rate());
                if r > rb || (r == rb && s.sent > scores[b].sent) {
                    Some(i)
                } else {
                    Some(b)
                }
            }
        };
    }
    best
}

/// Pearson's chi-squared test of two proportions (a 2×2 table, one degree
/// of freedom, no continuity correction): the p-value of "`a` and `b` have
/// the same rate". None when a group is empty or nobody (or everybody) hit.
pub fn chi_squared_p(a_hits: u64, a_n: u64, b_hits: u64, b_n: u64) -> Option<f64> {
    if a_n == 0 || b_n == 0 || a_hits > a_n || b_hits > b_n {
        return None;
    }
    let (a, b) = (a_hits as f64, (a_n - a_hits) as f64);
    let (c, d) = (b_hits as f64, (b_n - b_hits) as f64);
    let n = a + b + c + d;
    let (hits, misses) = (a + c, b + d);
    if hits == 0.0 || misses == 0.0 {
        return None;
    }
    let chi2 = n * (a * d - b * c).powi(2) / (a_n as f64 * b_n as f64 * hits * misses);
    // One degree of freedom: P(X > chi2) = erfc(sqrt(chi2 / 2)).
    Some(erfc((chi2 / 2.0).sqrt()).clamp(0.0, 1.0))
}

/// The complementary error function (Numerical Recipes' Chebyshev
/// fit, fractional error below 1.2e-7 everywhere).
pub fn erfc(x: f64) -> f64 {
    let z = x.abs();
    let t = 1.0 / (1.0 + 0.5 * z);
    let poly = -z * z - 1.265_512_23
        + t * (1.000_023_68
            + t * (0.374_091_96
                + t * (0.096_784_18
                    + t * (-0.186_288_06
                        + t * (0.278_868_07
                            + t * (-1.135_203_98
                                + t * (1.488_515_87 + t * (-0.822_152_23 + t * 0.170_872_77))))))));
    let r = t * poly.exp();
    if x >= 0.0 { r } else { 2.0 - r }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(n: usize, share: Option<f64>, holdout: f64) -> Plan {
        Plan {
            variants: (0..n).map(|i| format!("v{i}")).collect(),
            test: share.map(|share| Test {
                share,
                wait_ms: 1000,
                metric: Metric::Read,
                winner: WinnerMode::Auto,
            }),
            holdout,
        }
    }

    #[test]
    fn assignment_is_fixed_and_even() {
        let p = plan(2, None, 0.0);
        let mut n = [0u64; 2];
        for m in 1..=10_000 {
            let g = p.group(7, m);
            assert_eq!(g, p.group(7, m), "the same member, the same group");
            match g {
                Group::Variant(Some(i)) => n[i] += 1,
                other => panic!("{other:?}"),
            }
        }
        for k in n {
            assert!((4_800..=5_200).contains(&k), "{n:?}");
        }
        // Another push draws its own split.
        let moved = (1..=1000)
            .filter(|m| p.group(7, *m) != p.group(8, *m))
            .count();
        assert!(moved > 300, "{moved}");
    }

    #[test]
    fn holdout_and_test_share_take_their_fractions() {
        let p = plan(3, Some(0.2), 0.05);
        let (mut hold, mut rest, mut test) = (0, 0, [0u64; 3]);
        for m in 1..=100_000 {
            match p.group(1, m) {
                Group::Holdout => hold += 1,
                Group::Rest => rest += 1,
                Group::Variant(Some(i)) => test[i] += 1,
                Group::Variant(None) => unreachable!(),
            }
        }
        assert!((4_500..=5_500).contains(&hold), "{hold}");
        let tested: u64 = test.iter().sum();
        // 20% of the 95% not held out.
        assert!((18_000..=20_000).contains(&tested), "{tested}");
        assert_eq!(hold + rest + tested, 100_000);
        for k in test {
            assert!((tested / 3).abs_diff(k) < tested / 30, "{test:?}");
        }
    }

    #[test]
    fn shares_parse_and_check() {
        assert_eq!(parse_share("20%", "--test-share").unwrap(), 0.2);
        assert_eq!(parse_share(" 0.05 ", "x").unwrap(), 0.05);
        for bad in ["0%", "100%", "1.5", "-1", "abc", "NaN"] {
            let e = parse_share(bad, "--holdout").unwrap_err();
            assert!(e.to_string().contains("--holdout"), "{e}");
        }
    }

    #[test]
    fn chi_squared_matches_known_values() {
        // 2x2 table 30/100 vs 50/100: chi2 = 8.3333, p = 0.00389.
        let p = chi_squared_p(30, 100, 50, 100).unwrap();
        assert!((p - 0.003_892).abs() < 1e-5, "{p}");
        // Equal rates: p = 1.
        assert!((chi_squared_p(10, 100, 10, 100).unwrap() - 1.0).abs() < 1e-6);
        assert_eq!(chi_squared_p(0, 100, 0, 100), None);
        assert_eq!(chi_squared_p(1, 0, 0, 10), None);
        assert!((erfc(0.0) - 1.0).abs() < 1e-7);
        assert!((erfc(1.0) - 0.157_299_207).abs() < 1e-6);
        assert!((erfc(-1.0) - 1.842_700_793).abs() < 1e-6);
    }

    #[test]
    fn best_prefers_rate_then_size_then_order() {
        let s = |v: &str, hits, sent| Score {
            variant: v.into(),
            hits,
            sent,
        };
        assert_eq!(best(&[s("a", 10, 100), s("b", 20, 100)]), Some(1));
        assert_eq!(best(&[s("a", 10, 100), s("b", 20, 200)]), Some(1));
        assert_eq!(best(&[s("a", 10, 100), s("b", 10, 100)]), Some(0));
        assert_eq!(best(&[s("a", 0, 0), s("b", 0, 0)]), None);
    }

    #[test]
    fn plans_refuse_what_could_never_pick_a_winner() {
        let ab = ["a".to_string(), "b".to_string()];
        let test = |metric| {
            Some(Test {
                share: 0.2,
                wait_ms: 1_000,
                metric,
                winner: WinnerMode::Auto,
            })
        };
        assert_eq!(
            plan_for(&[], true, test(Metric::Read), 0.0),
            Err(PlanError::TestWithoutVariants)
        );
        assert_eq!(
            plan_for(&ab, false, test(Metric::Clicked), 0.0),
            Err(PlanError::ClickedWithoutLinks)
        );
        assert!(plan_for(&ab, true, test(Metric::Clicked), 0.0).is_ok_and(|p| p.is_some()));
        assert!(plan_for(&ab, false, test(Metric::Read), 0.0).is_ok_and(|p| p.is_some()));
        assert_eq!(plan_for(&[], false, None, 0.0), Ok(None));
    }

    #[test]
    fn phases() {
        let p = plan(2, Some(0.1), 0.0);
        assert_eq!(phase(&p, None, None), Phase::Test);
        assert_eq!(phase(&p, None, Some(5)), Phase::Waiting);
        assert_eq!(phase(&p, Some("a"), Some(5)), Phase::Winner);
        assert_eq!(phase(&plan(2, None, 0.0), None, None), Phase::Split);
    }
}
