//! The key indicators of a push, read from counters the store keeps exact
//! (milliseconds whatever the push size).

use crate::model::{fmt_ms, now_ms};
use crate::store::links::LinkStats;
use crate::store::pushes::{Counts, PushRow};
use serde::{Deserialize, Serialize};

/// The same keys as the counts, as percentages of `recipients`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Percentages {
    pub sent_success: f64,
    pub sent_fail: f64,
    pub read_and_interacted: f64,
    pub read_only: f64,
    pub interacted_only: f64,
    pub not_read_or_interacted: f64,
    pub skipped: f64,
    pub cancelled: f64,
    /// Recipients who clicked a tracked link.
    #[serde(default)]
    pub clicks: f64,
}

/// `push.report` data. Field names are the contract (DESIGN.md).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub push: String,
    pub push_id: i64,
    pub status: String,
    pub audience: String,
    pub template: String,
    pub start_at: String,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
    /// Members the push attempted (skipped and cancelled excluded).
    pub recipients: u64,
    pub sent_success: u64,
    pub sent_fail: u64,
    pub read_and_interacted: u64,
    pub read_only: u64,
    pub interacted_only: u64,
    pub not_read_or_interacted: u64,
    pub skipped: u64,
    /// Of `skipped`, those over a `[policy]` frequency cap.
    #[serde(default)]
    pub capped: u64,
    pub cancelled: u64,
    /// Not yet attempted (or in flight) while the push runs.
    pub remaining: u64,
    pub percent: Percentages,
    /// Analytics are final once the push finished; late receipts still update them.
    #[serde(rename = "final")]
    pub is_final: bool,
    pub as_of: String,
    /// Set when the push sends to a retry audience: the push it retries.
    pub retry_of: Option<String>,
    pub note: String,
    /// Recipients who clicked any tracked link (`[links] privacy =
    /// "individual"` clicks; a click is also an interaction).
    #[serde(default)]
    pub clicks: u64,
    /// Every click on the push's tracked links, repeats and anonymous
    /// clicks included (previews never).
    #[serde(default)]
    pub clicks_total: u64,
    /// The push's tracked links, in link order.
    #[serde(default)]
    pub links: Vec<LinkStats>,
    /// A/B: each variant's indicators (the same keys), in the plan's order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub variants: Vec<super::ab::VariantReport>,
    /// A/B: the variant chosen for the rest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub winner: Option<String>,
    /// A/B: the test (metric, phase, who decided) and the control group.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ab: Option<super::ab::AbReport>,
}

pub(crate) fn pct(n: u64, of: u64) -> f64 {
    if of == 0 {
        0.0
    } else {
        (n as f64 * 10_000.0 / of as f64).round() / 100.0
    }
}

/// Builds the report of `push` from its counters.
pub fn build(push: &PushRow, c: &Counts, retry_of: Option<String>) -> Report {
    let recipients = c.sent + c.failed + c.pending + c.sending;
    let is_final = push.status.is_final();
    Report {
        push: push.name.clone(),
        push_id: push.id,
        status: push.status.to_string(),
        audience: push.audience.clone(),
        template: push.template.clone(),
        start_at: fmt_ms(push.start_at),
        started_at: push.started_at.map(fmt_ms),
        finished_at: push.finished_at.map(fmt_ms),
        recipients,
        sent_success: c.sent,
        sent_fail: c.failed,
        read_and_interacted: c.read_and_interacted,
        read_only: c.read_only,
        interacted_only: c.interacted_only,
        not_read_or_interacted: c.not_read_or_interacted,
        skipped: c.skipped,
        capped: 0,
        cancelled: c.cancelled,
        remaining: c.remaining(),
        percent: Percentages {
            sent_success: pct(c.sent, recipients),
            sent_fail: pct(c.failed, recipients),
            read_and_interacted: pct(c.read_and_interacted, recipients),
            read_only: pct(c.read_only, recipients),
            interacted_only: pct(c.interacted_only, recipients),
            not_read_or_interacted: pct(c.not_read_or_interacted, recipients),
            skipped: pct(c.skipped, recipients),
            cancelled: pct(c.cancelled, recipients),
            clicks: 0.0,
        },
        is_final,
        as_of: fmt_ms(now_ms()),
        retry_of,
        note: if is_final {
            "final: the push has finished; late receipts keep updating read/interaction counts"
                .into()
        } else {
            format!(
                "not final: the push is {} with {} recipient(s) remaining",
                push.status,
                c.remaining()
            )
        },
        clicks: 0,
        clicks_total: 0,
        links: Vec::new(),
        variants: Vec::new(),
        winner: push.ab_winner.clone(),
        ab: None,
    }
}

impl Report {
    /// Adds the tracked links' counts (`store::links::stats`).
    pub fn with_links(mut self, clicked: u64, links: Vec<LinkStats>) -> Report {
        self.clicks = clicked;
        self.clicks_total = links.iter().map(|l| l.clicks_total).sum();
        self.percent.clicks = pct(clicked, self.recipients);
        self.links = links;
        self
    }
}

impl Report {
    /// The five disjoint slices of the pie, in display order, with counts.
    pub fn slices(&self) -> [(&'static str, &'static str, u64); 5] {
        [
            (
                "read_and_interacted",
                "Read & Interacted",
                self.read_and_interacted,
            ),
            ("read_only", "Read Only", self.read_only),
            ("interacted_only", "Interacted Only", self.interacted_only),
            (
                "not_read_or_interacted",
                "Not Read / Interacted",
                self.not_read_or_interacted,
            ),
            ("sent_fail", "Sent Fail", self.sent_fail),
        ]
    }
}
