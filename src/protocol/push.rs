//! Wire types of the `push.*` commands (recipients apart, in
//! `recipients`): creating, listing, steering and reporting on pushes.

pub use crate::analytics::Report as ReportData;
use crate::model::FailureGroup;
use serde::{Deserialize, Serialize};

/// Names a push by id or unique name.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PushRef {
    pub push: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PushCreateArgs {
    pub audience: String,
    pub template: String,
    /// Unique name; generated when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// RFC 3339 time or "now" (default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_per_minute: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch_size: Option<u32>,
    /// Human duration, e.g. "1h".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch_every: Option<String>,
    /// "HH:MM" in each member's timezone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window_from: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window_to: Option<String>,
    /// "bypass": `[policy]` (frequency caps, quiet hours) does not apply,
    /// for transactional messages; audited as `push.policy_bypass`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<String>,
    /// A/B test share of a template with variants ("20%" or "0.2"): sent
    /// first; the winner goes to the rest after `test_wait`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test_share: Option<String>,
    /// Human duration, e.g. "2h".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test_wait: Option<String>,
    /// "read" (default), "interacted" or "clicked".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test_metric: Option<String>,
    /// "auto" (default) or "manual" (`push.pick_winner`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub winner: Option<String>,
    /// Share of the audience held out as a control group ("5%").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub holdout: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PushPickWinnerArgs {
    pub push: String,
    pub variant: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PushListArgs {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PushFailuresArgs {
    pub push: String,
    /// Sample recipients listed per error group.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub samples: Option<u32>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PushSummary {
    pub id: i64,
    pub name: String,
    pub status: String,
    pub status_reason: Option<String>,
    pub audience: String,
    pub template: String,
    pub start_at: String,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
    pub recipients: u64,
    pub sent: u64,
    pub failed: u64,
    pub skipped: u64,
    pub cancelled: u64,
    pub remaining: u64,
    /// Messages per minute over the last minute.
    pub current_rate: f64,
    pub rate_limit: Option<u32>,
    pub eta: Option<String>,
    pub eta_secs: Option<u64>,
    pub generation: Option<i64>,
    pub retry_of: Option<String>,
    /// "bypass" when `[policy]` does not apply to this push.
    #[serde(default)]
    pub policy: Option<String>,
    /// Recipients held by quiet hours or the send window (part of `remaining`).
    #[serde(default)]
    pub held: u64,
    /// When the last held recipient is released.
    #[serde(default)]
    pub held_until: Option<String>,
    /// When sending resumes, while every remaining recipient is held.
    #[serde(default)]
    pub resumes_at: Option<String>,
    /// The A/B plan and where it stands; None for a push without one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ab: Option<AbSummary>,
}

/// A push's A/B variants and its phase.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AbSummary {
    /// The plan in words ("variants a, b; test 20% then …").
    pub plan: String,
    pub variants: Vec<String>,
    /// "test", "waiting", "winner" or "split" (no test).
    pub phase: String,
    /// When the winner is due (auto), once the test share is sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decide_at: Option<String>,
    /// "auto" or "manual" (a push with a test).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub winner_mode: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub winner: Option<String>,
    /// Who chose it: "auto" or the admin.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decided_by: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PushCreateData {
    pub push: PushSummary,
    /// Advice the operator should read (e.g. an ETA over an hour).
    pub warnings: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PushListData {
    pub pushes: Vec<PushSummary>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PushShowData {
    pub push: PushSummary,
    pub report: ReportData,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FailuresData {
    pub push: String,
    pub sent_fail: u64,
    pub groups: Vec<FailureGroup>,
}

/// One chunk of a streamed CSV export; the last line carries `rows`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ExportData {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub csv: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rows: Option<u64>,
}
