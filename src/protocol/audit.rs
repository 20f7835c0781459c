//! Wire types of `audit.list` and `events.list`: the audit trail and the
//! message log.

use crate::model::{MemberId, Millis, PushId};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditListArgs {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
    /// Only this action (or its sub-actions: "push" matches "push.create").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<String>,
    /// Only this actor: a uid (`1000` or `uid 1000`), `daemon`, or a panel
    /// actor's name or its start (`panel` for every session).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor: Option<String>,
    /// Entries older than this id: the `next` of the previous page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub before: Option<i64>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventsListArgs {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub push: Option<String>,
    /// Member id, or `channel:channel_user_id`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub member: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AuditData {
    pub entries: Vec<AuditEntry>,
    /// `before` for the next (older) page; None on the last page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<i64>,
}

/// One entry of the audit trail.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditEntry {
    pub id: i64,
    pub at: Millis,
    /// Peer uid over the socket; `None` when the daemon acted on its own
    /// (file-watch reload, startup).
    pub uid: Option<u32>,
    /// Who acted when it was not a socket peer: `panel:<session> (role)`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor: Option<String>,
    pub action: String,
    pub target: Option<String>,
    pub ok: bool,
    pub detail: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct EventsData {
    pub events: Vec<LogEntry>,
}

/// One line of the message log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogEntry {
    pub at: String,
    pub at_ms: Millis,
    /// "in" (webhook / receipt) or "out" (a send).
    pub direction: String,
    pub channel: String,
    pub kind: String,
    pub member_id: Option<MemberId>,
    pub push_id: Option<PushId>,
    pub delivery_id: Option<i64>,
    pub detail: String,
}
