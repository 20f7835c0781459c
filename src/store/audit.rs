//! The audit trail: who changed what, when (reloads included, good or bad).

use super::{Result, Store};
use crate::model::{Millis, now_ms};
use rusqlite::{Connection, params};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
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

pub fn record(
    conn: &Connection,
    uid: Option<u32>,
    action: &str,
    target: Option<&str>,
    ok: bool,
    detail: Option<&str>,
) -> Result<i64> {
    record_by(conn, uid, None, action, target, ok, detail)
}

/// [`record`] naming an actor besides (or instead of) a uid.
pub fn record_by(
    conn: &Connection,
    uid: Option<u32>,
    actor: Option<&str>,
    action: &str,
    target: Option<&str>,
    ok: bool,
    detail: Option<&str>,
) -> Result<i64> {
    conn.prepare_cached(
        "INSERT INTO audit (at, uid, actor, action, target, ok, detail) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?
    .execute(params![now_ms(), uid, actor, action, target, ok, detail])?;
    Ok(conn.last_insert_rowid())
}

/// Longest `detail` kept (a reload error can list many problems).
const MAX_DETAIL: usize = 2000;

/// Appends to the audit trail in its own write. A failure to record is
/// logged, not returned: the action itself already happened.
pub async fn log(
    store: &Store,
    uid: Option<u32>,
    action: &str,
    target: Option<&str>,
    ok: bool,
    detail: Option<String>,
) {
    log_by(store, uid, None, action, target, ok, detail).await
}

/// [`log`] naming an actor besides (or instead of) a uid.
pub async fn log_by(
    store: &Store,
    uid: Option<u32>,
    actor: Option<&str>,
    action: &str,
    target: Option<&str>,
    ok: bool,
    detail: Option<String>,
) {
    let (action, target) = (action.to_string(), target.map(String::from));
    let actor = actor.map(String::from);
    let detail = detail.map(|d| crate::util::truncate(&d, MAX_DETAIL));
    let r = store
        .write(move |c| {
            record_by(
                c,
                uid,
                actor.as_deref(),
                &action,
                target.as_deref(),
                ok,
                detail.as_deref(),
            )
        })
        .await;
    if let Err(e) = r {
        tracing::error!(error = %e, "cannot write the audit trail");
    }
}

/// Newest first.
pub fn list(conn: &Connection, limit: u32, action: Option<&str>) -> Result<Vec<AuditEntry>> {
    let mut stmt = conn.prepare_cached(
        "SELECT id, at, uid, action, target, ok, detail, actor FROM audit
         WHERE ?1 IS NULL OR action = ?1 OR action LIKE ?1 || '.%'
         ORDER BY id DESC LIMIT ?2",
    )?;
    let rows = stmt.query_map(params![action, limit], |r| {
        Ok(AuditEntry {
            id: r.get(0)?,
            at: r.get(1)?,
            uid: r.get(2)?,
            action: r.get(3)?,
            target: r.get(4)?,
            ok: r.get(5)?,
            detail: r.get(6)?,
            actor: r.get(7)?,
        })
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}
