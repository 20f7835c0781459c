//! Saved (static) audiences: the retry audiences built from a push's failed
//! recipients and those saved from any outcome of a push, each linked to the
//! push it came from; listed a page at a time by name.

use super::Result;
use crate::model::{DeliveryState, Millis, PushId};
use rusqlite::{Connection, OptionalExtension, params};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AudienceRow {
    pub id: i64,
    pub name: String,
    pub source_push_id: Option<PushId>,
    pub only_class: Option<String>,
    /// The outcome it was made from (`sent_fail` for retry audiences).
    pub outcome: Option<String>,
    /// The other filters it was made with, e.g. `channel=wa locale=en`.
    pub filter: Option<String>,
    pub created_at: Millis,
    pub members: u64,
}

pub fn find(conn: &Connection, name: &str) -> Result<Option<AudienceRow>> {
    Ok(conn
        .prepare_cached(
            "SELECT a.id, a.name, a.source_push_id, a.only_class, a.created_at,
                    (SELECT count(*) FROM audience_members am WHERE am.audience_id = a.id),
                    a.outcome, a.filter
             FROM audiences a WHERE a.name = ?1",
        )?
        .query_row([name], |r| {
            Ok(AudienceRow {
                id: r.get(0)?,
                name: r.get(1)?,
                source_push_id: r.get(2)?,
                only_class: r.get(3)?,
                created_at: r.get(4)?,
                members: r.get::<_, i64>(5)? as u64,
                outcome: r.get(6)?,
                filter: r.get(7)?,
            })
        })
        .optional()?)
}

/// The names of saved audiences, newest first (for "known audiences" in
/// error messages).
pub fn names(conn: &Connection, limit: u32) -> Result<Vec<String>> {
    let mut stmt = conn.prepare_cached("SELECT name FROM audiences ORDER BY id DESC LIMIT ?1")?;
    let rows = stmt.query_map([limit], |r| r.get(0))?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// Freezes a saved audience into a push's deliveries.
pub fn insert_deliveries(conn: &Connection, audience: i64, push: PushId) -> Result<u64> {
    let (pending, skipped) = (DeliveryState::Pending as i64, DeliveryState::Skipped as i64);
    Ok(conn.execute(
        &format!(
            "INSERT INTO deliveries (push_id, member_id, state, skip_reason)
             SELECT ?2, m.id,
                    CASE WHEN m.subscribed THEN {pending} ELSE {skipped} END,
                    CASE WHEN m.subscribed THEN NULL ELSE 'unsubscribed' END
             FROM audience_members am JOIN members m ON m.id = am.member_id
             WHERE am.audience_id = ?1 ORDER BY m.id"
        ),
        params![audience, push],
    )? as u64)
}

/// Subscribed members of a saved audience.
pub fn subscribed(conn: &Connection, audience: i64) -> Result<u64> {
    let n: i64 = conn
        .prepare_cached(
            "SELECT count(*) FROM audience_members am JOIN members m ON m.id = am.member_id
             WHERE am.audience_id = ?1 AND m.subscribed = 1",
        )?
        .query_row([audience], |r| r.get(0))?;
    Ok(n as u64)
}

/// Members of a saved audience (for previews).
pub fn member_ids(conn: &Connection, audience: i64, limit: u32) -> Result<Vec<i64>> {
    let mut stmt = conn.prepare_cached(
        "SELECT member_id FROM audience_members WHERE audience_id = ?1 ORDER BY member_id LIMIT ?2",
    )?;
    let rows = stmt.query_map(params![audience, limit], |r| r.get(0))?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// A saved audience with the name of the push it came from (its lineage).
#[derive(Debug, Clone, PartialEq)]
pub struct SavedAudience {
    pub row: AudienceRow,
    /// The source push's name, when it still exists.
    pub source_push: Option<String>,
}

/// Saved audiences named after `after`, in name order (keyset on the
/// unique name index), at most `limit`.
pub fn page(conn: &Connection, after: &str, limit: u32) -> Result<Vec<SavedAudience>> {
    let mut stmt = conn.prepare_cached(
        "SELECT a.id, a.name, a.source_push_id, a.only_class, a.created_at,
                (SELECT count(*) FROM audience_members am WHERE am.audience_id = a.id),
                a.outcome, a.filter, p.name
         FROM audiences a LEFT JOIN pushes p ON p.id = a.source_push_id
         WHERE a.name > ?1 ORDER BY a.name LIMIT ?2",
    )?;
    let rows = stmt.query_map(params![after, limit], |r| {
        Ok(SavedAudience {
            row: AudienceRow {
                id: r.get(0)?,
                name: r.get(1)?,
                source_push_id: r.get(2)?,
                only_class: r.get(3)?,
                created_at: r.get(4)?,
                members: r.get::<_, i64>(5)? as u64,
                outcome: r.get(6)?,
                filter: r.get(7)?,
            },
            source_push: r.get(8)?,
        })
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// The saved audience named `name`, with its source push's name.
pub fn find_saved(conn: &Connection, name: &str) -> Result<Option<SavedAudience>> {
    let Some(row) = find(conn, name)? else {
        return Ok(None);
    };
    let source_push = match row.source_push_id {
        Some(id) => conn
            .prepare_cached("SELECT name FROM pushes WHERE id = ?1")?
            .query_row([id], |r| r.get(0))
            .optional()?,
        None => None,
    };
    Ok(Some(SavedAudience { row, source_push }))
}
