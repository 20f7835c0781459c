//! Pushes: creation (once per name), lookup by id or name, lifecycle status,
//! and the per-push counters kept exact by the schema's triggers.

use super::{Result, StoreError};
use crate::model::{DeliveryState, Millis, PushId, now_ms};
use crate::variants::Plan;
use rusqlite::{Connection, OptionalExtension, Row, params};
use serde::{Deserialize, Serialize};
use std::fmt;

/// `scheduled → running → completed`, with `paused` and `cancelled`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PushStatus {
    Scheduled,
    Running,
    Paused,
    Completed,
    Cancelled,
}

impl PushStatus {
    pub const ALL: [PushStatus; 5] = [
        PushStatus::Scheduled,
        PushStatus::Running,
        PushStatus::Paused,
        PushStatus::Completed,
        PushStatus::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            PushStatus::Scheduled => "scheduled",
            PushStatus::Running => "running",
            PushStatus::Paused => "paused",
            PushStatus::Completed => "completed",
            PushStatus::Cancelled => "cancelled",
        }
    }

    pub fn parse(s: &str) -> Option<PushStatus> {
        PushStatus::ALL.into_iter().find(|p| p.as_str() == s)
    }

    pub fn is_final(self) -> bool {
        matches!(self, PushStatus::Completed | PushStatus::Cancelled)
    }
}

impl fmt::Display for PushStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PushRow {
    pub id: PushId,
    pub name: String,
    pub origin: String,
    pub audience: String,
    pub template: String,
    pub status: PushStatus,
    pub status_reason: Option<String>,
    pub start_at: Millis,
    pub rate_per_minute: Option<u32>,
    pub batch_size: Option<u32>,
    pub batch_every_ms: Option<i64>,
    pub window_from: Option<String>,
    pub window_to: Option<String>,
    pub generation: Option<i64>,
    pub script_hash: Option<String>,
    pub retry_of: Option<PushId>,
    pub resolved: bool,
    pub created_at: Millis,
    pub created_by: Option<u32>,
    pub started_at: Option<Millis>,
    pub finished_at: Option<Millis>,
    /// [`BYPASS`]: `[policy]` does not apply; None: it does.
    pub policy: Option<String>,
    /// Its A/B variant plan (variants, test, holdout); None: one message for all.
    pub ab: Option<Plan>,
    /// When the winner is due: set once the test share has all been sent.
    pub ab_decide_at: Option<Millis>,
    pub ab_winner: Option<String>,
    pub ab_decided_at: Option<Millis>,
    /// "auto", or the admin who picked the winner.
    pub ab_decided_by: Option<String>,
}

/// A push's `policy` that opts out of `[policy]` (frequency caps, quiet
/// hours), for transactional messages. Admin-only and audited.
pub const BYPASS: &str = "bypass";

impl PushRow {
    /// Frequency caps and quiet hours do not apply to this push.
    pub fn bypasses_policy(&self) -> bool {
        self.policy.as_deref() == Some(BYPASS)
    }
}

/// What a new push needs.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NewPush {
    pub name: String,
    /// "script" or "cli".
    pub origin: String,
    pub audience: String,
    pub template: String,
    pub start_at: Millis,
    pub rate_per_minute: Option<u32>,
    pub batch_size: Option<u32>,
    pub batch_every_ms: Option<i64>,
    pub window_from: Option<String>,
    pub window_to: Option<String>,
    pub retry_of: Option<PushId>,
    pub created_by: Option<u32>,
    /// [`BYPASS`] or None.
    pub policy: Option<String>,
    pub ab: Option<Plan>,
}

const COLUMNS: &str =
    "id, name, origin, audience, template, status, status_reason, start_at, rate_per_minute,
    batch_size, batch_every_ms, window_from, window_to, generation, script_hash, retry_of, resolved,
    created_at, created_by, started_at, finished_at, policy, ab, ab_decide_at, ab_winner,
    ab_decided_at, ab_decided_by";

fn from_row(r: &Row<'_>) -> rusqlite::Result<PushRow> {
    let status: String = r.get(5)?;
    Ok(PushRow {
        id: r.get(0)?,
        name: r.get(1)?,
        origin: r.get(2)?,
        audience: r.get(3)?,
        template: r.get(4)?,
        status: PushStatus::parse(&status).unwrap_or(PushStatus::Paused),
        status_reason: r.get(6)?,
        start_at: r.get(7)?,
        rate_per_minute: r.get(8)?,
        batch_size: r.get(9)?,
        batch_every_ms: r.get(10)?,
        window_from: r.get(11)?,
        window_to: r.get(12)?,
        generation: r.get(13)?,
        script_hash: r.get(14)?,
        retry_of: r.get(15)?,
        resolved: r.get(16)?,
        created_at: r.get(17)?,
        created_by: r.get(18)?,
        started_at: r.get(19)?,
        finished_at: r.get(20)?,
        policy: r.get(21)?,
        ab: r
            .get::<_, Option<String>>(22)?
            .and_then(|j| serde_json::from_str(&j).ok()),
        ab_decide_at: r.get(23)?,
        ab_winner: r.get(24)?,
        ab_decided_at: r.get(25)?,
        ab_decided_by: r.get(26)?,
    })
}

pub fn exists(conn: &Connection, name: &str) -> Result<bool> {
    Ok(conn
        .prepare_cached("SELECT 1 FROM pushes WHERE name = ?1")?
        .exists([name])?)
}

/// Creates a push; a name already taken is an error.
pub fn create(conn: &Connection, p: &NewPush) -> Result<PushRow> {
    if exists(conn, &p.name)? {
        return Err(StoreError::Invalid(format!(
            "a push named {:?} already exists (push names are unique; pick another --name)",
            p.name
        )));
    }
    let now = now_ms();
    conn.prepare_cached(
        "INSERT INTO pushes (name, origin, audience, template, status, start_at, rate_per_minute,
            batch_size, batch_every_ms, window_from, window_to, retry_of, created_at, created_by, updated_at,
            policy, ab)
         VALUES (?1, ?2, ?3, ?4, 'scheduled', ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?12, ?14, ?15)",
    )?
    .execute(params![
        p.name,
        p.origin,
        p.audience,
        p.template,
        p.start_at,
        p.rate_per_minute,
        p.batch_size,
        p.batch_every_ms,
        p.window_from,
        p.window_to,
        p.retry_of,
        now,
        p.created_by,
        p.policy,
        p.ab.as_ref().map(|a| serde_json::to_string(a).unwrap_or_default())
    ])?;
    get(conn, conn.last_insert_rowid())?
        .ok_or_else(|| StoreError::Sqlite("push vanished after insert".into()))
}

pub fn get(conn: &Connection, id: PushId) -> Result<Option<PushRow>> {
    Ok(conn
        .prepare_cached(&format!("SELECT {COLUMNS} FROM pushes WHERE id = ?1"))?
        .query_row([id], from_row)
        .optional()?)
}

/// A push by id or unique name.
pub fn find(conn: &Connection, reference: &str) -> Result<PushRow> {
    let by_name = conn
        .prepare_cached(&format!("SELECT {COLUMNS} FROM pushes WHERE name = ?1"))?
        .query_row([reference], from_row)
        .optional()?;
    if let Some(p) = by_name {
        return Ok(p);
    }
    if let Ok(id) = reference.parse::<PushId>()
        && let Some(p) = get(conn, id)?
    {
        return Ok(p);
    }
    Err(StoreError::NotFound(format!(
        "no push with id or name {reference:?} (see `pushd push list`)"
    )))
}

pub fn list(conn: &Connection, status: Option<PushStatus>, limit: u32) -> Result<Vec<PushRow>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM pushes WHERE ?1 IS NULL OR status = ?1 ORDER BY id DESC LIMIT ?2"
    ))?;
    let rows = stmt.query_map(params![status.map(|s| s.as_str()), limit], from_row)?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// Pushes the dispatcher must look after (not finished).
pub fn active(conn: &Connection) -> Result<Vec<PushRow>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM pushes WHERE status IN ('scheduled','running','paused') ORDER BY start_at, id"
    ))?;
    let rows = stmt.query_map([], from_row)?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

pub fn set_status(
    conn: &Connection,
    id: PushId,
    status: PushStatus,
    reason: Option<&str>,
) -> Result<()> {
    let now = now_ms();
    conn.prepare_cached(
        "UPDATE pushes SET status = ?2, status_reason = ?3, updated_at = ?4,
            finished_at = CASE WHEN ?2 IN ('completed','cancelled') THEN coalesce(finished_at, ?4) ELSE finished_at END
         WHERE id = ?1",
    )?
    .execute(params![id, status.as_str(), reason, now])?;
    Ok(())
}

/// Marks the push started with the script generation it pins.
pub fn mark_started(
    conn: &Connection,
    id: PushId,
    generation: Option<i64>,
    hash: Option<&str>,
) -> Result<()> {
    conn.prepare_cached(
        "UPDATE pushes SET status = 'running', status_reason = NULL,
            started_at = coalesce(started_at, ?2), generation = coalesce(generation, ?3),
            script_hash = coalesce(script_hash, ?4), updated_at = ?2
         WHERE id = ?1 AND status IN ('scheduled', 'running')",
    )?
    .execute(params![id, now_ms(), generation, hash])?;
    Ok(())
}

pub fn mark_resolved(conn: &Connection, id: PushId) -> Result<()> {
    conn.prepare_cached("UPDATE pushes SET resolved = 1 WHERE id = ?1")?
        .execute([id])?;
    Ok(())
}

/// Sets Finish At to when the last recipient reached a final state.
pub fn mark_completed(conn: &Connection, id: PushId) -> Result<()> {
    conn.prepare_cached(
        "UPDATE pushes SET status = 'completed', status_reason = NULL, updated_at = ?2,
            finished_at = coalesce((SELECT max(coalesce(sent_at, failed_at, updated_at)) FROM deliveries WHERE push_id = ?1), ?2)
         WHERE id = ?1",
    )?
    .execute(params![id, now_ms()])?;
    Ok(())
}

/// Delivery counts of one push: per state, and the engagement cells of sent ones.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    pub pending: u64,
    pub sending: u64,
    pub sent: u64,
    pub failed: u64,
    pub skipped: u64,
    pub cancelled: u64,
    pub read_and_interacted: u64,
    pub read_only: u64,
    pub interacted_only: u64,
    pub not_read_or_interacted: u64,
}

impl Counts {
    pub fn total(&self) -> u64 {
        self.pending + self.sending + self.sent + self.failed + self.skipped + self.cancelled
    }
    /// Adds `n` deliveries in one (state, read, interacted) cell.
    pub(crate) fn add(&mut self, state: i64, rd: bool, ia: bool, n: u64) {
        match DeliveryState::from_code(state) {
            Some(DeliveryState::Pending) => self.pending += n,
            Some(DeliveryState::Sending) => self.sending += n,
            Some(DeliveryState::Sent) => {
                self.sent += n;
                match (rd, ia) {
                    (true, true) => self.read_and_interacted += n,
                    (true, false) => self.read_only += n,
                    (false, true) => self.interacted_only += n,
                    (false, false) => self.not_read_or_interacted += n,
                }
            }
            Some(DeliveryState::Failed) => self.failed += n,
            Some(DeliveryState::Skipped) => self.skipped += n,
            Some(DeliveryState::Cancelled) => self.cancelled += n,
            None => {}
        }
    }

    /// Not yet in a final state.
    pub fn remaining(&self) -> u64 {
        self.pending + self.sending
    }
}

/// Reads the maintained counters (a handful of rows, whatever the push size).
/// They count pending and sending together, reported as `pending`.
pub fn counts(conn: &Connection, id: PushId) -> Result<Counts> {
    let mut c = Counts::default();
    let mut stmt =
        conn.prepare_cached("SELECT state, rd, ia, n FROM push_counts WHERE push_id = ?1")?;
    let mut rows = stmt.query([id])?;
    while let Some(r) = rows.next()? {
        let (state, rd, ia, n): (i64, bool, bool, i64) =
            (r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?);
        c.add(state, rd, ia, n.max(0) as u64);
    }
    Ok(c)
}

/// What `/metrics` reads at scrape time: members, pushes by state, and the
/// recipients the active pushes still have to send.
pub fn gauges(c: &Connection) -> Result<crate::metrics::Gauges> {
    let mut g = crate::metrics::Gauges {
        members: super::members::count(c)?,
        ..Default::default()
    };
    for p in active(c)? {
        *g.pushes_by_state.entry(p.status.to_string()).or_insert(0) += 1;
        g.queue_depth += counts(c, p.id)?.remaining();
    }
    let mut stmt = c.prepare_cached(
        "SELECT status, count(*) FROM pushes WHERE status IN ('completed','cancelled') GROUP BY status",
    )?;
    let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))?;
    for row in rows {
        let (s, n) = row?;
        g.pushes_by_state.insert(s, n as u64);
    }
    Ok(g)
}
