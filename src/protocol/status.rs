//! Wire types of `status` and `reload`: what the daemon runs with and
//! how its last reloads went.

use super::PushSummary;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StatusArgs {}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReloadArgs {}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StatusData {
    pub version: String,
    pub pid: u32,
    pub started_at: String,
    pub uptime_secs: u64,
    pub config_path: String,
    pub config_loaded_at: String,
    pub database_path: String,
    pub socket_path: String,
    pub http_listen: Option<String>,
    pub members: u64,
    pub rate_per_minute: u32,
    pub channels: Vec<ChannelStatus>,
    pub scripts: Option<ScriptStatus>,
    pub last_config_reload: Option<ReloadStatus>,
    pub last_script_reload: Option<ReloadStatus>,
    pub pushes: Vec<PushSummary>,
    /// Problems the operator should act on (storage faults, paused pushes).
    pub alerts: Vec<String>,
    /// `[policy]` in force.
    #[serde(default)]
    pub policy: PolicyStatus,
}

/// The delivery policy in force (`[policy]`), as `status` shows it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PolicyStatus {
    /// Messages per member per calendar day, all pushes together.
    pub max_per_day: Option<u32>,
    pub max_per_week: Option<u32>,
    /// "21:00-08:00", in each member's timezone.
    pub quiet_hours: Option<String>,
    /// For members without a timezone.
    pub default_timezone: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ChannelStatus {
    pub name: String,
    pub kind: String,
    pub rate_per_second: Option<f64>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ScriptStatus {
    pub generation: i64,
    pub hash: String,
    pub loaded_at: String,
    pub files: Vec<String>,
    pub audiences: Vec<String>,
    pub templates: Vec<String>,
    pub pushes: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ReloadStatus {
    pub at: String,
    /// "scripts" or "config".
    pub what: String,
    /// Scripts: the generation number this attempt would have (or has) become.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempt: Option<i64>,
    pub ok: bool,
    /// file:line problems of a failed reload.
    pub errors: Vec<String>,
    /// Changed settings that only take effect after a restart.
    pub restart_required: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ReloadData {
    pub config: ReloadStatus,
    pub scripts: ReloadStatus,
}
