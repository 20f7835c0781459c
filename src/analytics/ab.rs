//! The A/B part of a push's report: each variant's indicators (the same
//! keys as the push's), its rate on the test's metric, the difference to
//! the best variant in percentage points and the chi-squared p-value of
//! that difference; the winner and the control group.

use super::report::{Percentages, pct};
use crate::model::fmt_ms;
use crate::store::pushes::{Counts, PushRow};
use crate::store::variants::VariantCounts;
use crate::variants::{self, Metric, Plan, best, chi_squared_p};
use serde::{Deserialize, Serialize};

/// One variant's indicators and how it compares with the best.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct VariantReport {
    pub variant: String,
    pub recipients: u64,
    pub sent_success: u64,
    pub sent_fail: u64,
    pub read_and_interacted: u64,
    pub read_only: u64,
    pub interacted_only: u64,
    pub not_read_or_interacted: u64,
    pub remaining: u64,
    /// Recipients who clicked a tracked link.
    pub clicks: u64,
    pub percent: Percentages,
    /// Sent successfully in the test phase (before the winner was
    /// chosen): what `rate` is measured over.
    pub tested: u64,
    /// The metric's rate in the test phase: recipients who read
    /// (interacted, clicked) of those sent successfully then, in %.
    pub rate: f64,
    /// Percentage points from the best variant's rate (0 for the best).
    pub diff_to_best: f64,
    /// Chi-squared p-value of the difference to the best (None for the
    /// best itself, or when there is too little to compare).
    pub p_value: Option<f64>,
    /// The best rate so far.
    pub best: bool,
}

/// The A/B test as a whole.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AbReport {
    /// What `rate` measures: read, interacted or clicked.
    pub metric: String,
    /// test, waiting, winner or split (no test).
    pub phase: String,
    /// The test share (a fraction), when there is a test.
    pub test_share: Option<f64>,
    /// "auto", or the admin who picked the winner.
    pub decided_by: Option<String>,
    pub decided_at: Option<String>,
    /// Members held out (sent nothing): the control group.
    pub control_group: u64,
    pub holdout: f64,
}

/// The variants' part of the report: (variants, winner, the test).
pub fn build(
    push: &PushRow,
    plan: &Plan,
    counts: &[VariantCounts],
    control_group: u64,
) -> (Vec<VariantReport>, AbReport) {
    let metric = plan.test.map_or(Metric::Read, |t| t.metric);
    let scores: Vec<_> = counts.iter().map(|c| c.score(metric)).collect();
    let top = best(&scores);
    let reports = counts
        .iter()
        .zip(&scores)
        .enumerate()
        .map(|(i, (vc, s))| {
            let c: &Counts = &vc.counts;
            let recipients = c.sent + c.failed + c.pending + c.sending;
            let (diff, p) = match top {
                Some(b) if b != i => {
                    let t = &scores[b];
                    (
                        round2((s.rate() - t.rate()) * 100.0),
                        chi_squared_p(s.hits, s.sent, t.hits, t.sent),
                    )
                }
                _ => (0.0, None),
            };
            VariantReport {
                variant: vc.variant.clone(),
                recipients,
                sent_success: c.sent,
                sent_fail: c.failed,
                read_and_interacted: c.read_and_interacted,
                read_only: c.read_only,
                interacted_only: c.interacted_only,
                not_read_or_interacted: c.not_read_or_interacted,
                remaining: c.remaining(),
                clicks: vc.clicked,
                percent: Percentages {
                    sent_success: pct(c.sent, recipients),
                    sent_fail: pct(c.failed, recipients),
                    read_and_interacted: pct(c.read_and_interacted, recipients),
                    read_only: pct(c.read_only, recipients),
                    interacted_only: pct(c.interacted_only, recipients),
                    not_read_or_interacted: pct(c.not_read_or_interacted, recipients),
                    skipped: 0.0,
                    cancelled: 0.0,
                    clicks: pct(vc.clicked, recipients),
                },
                tested: s.sent,
                rate: round2(s.rate() * 100.0),
                diff_to_best: diff,
                p_value: p.map(|p| (p * 10_000.0).round() / 10_000.0),
                best: top == Some(i),
            }
        })
        .collect();
    let ab = AbReport {
        metric: metric.as_str().into(),
        phase: variants::phase(plan, push.ab_winner.as_deref(), push.ab_decide_at).to_string(),
        test_share: plan.test.map(|t| t.share),
        decided_by: push.ab_decided_by.clone(),
        decided_at: push.ab_decided_at.map(fmt_ms),
        control_group,
        holdout: plan.holdout,
    };
    (reports, ab)
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}
