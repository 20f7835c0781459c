//! `sending`, before any request leaves: a group of fresh deliveries claimed
//! by one row of `claims`, or retries and deferred ones marked row by row.

use super::{ClaimId, PENDING, SENDING, SENT, encode, expect_one};
use crate::model::{DeliveryId, Millis, PushId, now_ms};
use crate::store::Result;
use crate::util::group_by;
use rusqlite::{Connection, params};
use std::collections::HashSet;

/// Claims fresh deliveries `first..=last` of a running push for sending,
/// committed before their requests leave. None: the push is no longer
/// running (paused or cancelled meanwhile), so nothing may be sent.
pub fn claim(
    conn: &Connection,
    push: PushId,
    first: DeliveryId,
    last: DeliveryId,
    at: Millis,
) -> Result<Option<ClaimId>> {
    let mut stmt = conn.prepare_cached(
        "INSERT INTO claims (push_id, first_id, last_id, at)
         SELECT ?1, ?2, ?3, ?4 WHERE EXISTS (SELECT 1 FROM pushes WHERE id = ?1 AND status = 'running')
         RETURNING id",
    )?;
    let mut rows = stmt.query(params![push, first, last, at])?;
    Ok(match rows.next()? {
        Some(r) => Some(r.get(0)?),
        None => None,
    })
}

/// Drops claims whose every delivery has its outcome recorded.
pub fn release_claims(conn: &Connection, ids: &[ClaimId]) -> Result<()> {
    let mut stmt = conn.prepare_cached("DELETE FROM claims WHERE id = ?1")?;
    for id in ids {
        stmt.execute([id])?;
    }
    Ok(())
}

/// True when the push holds a claim (a walk must then skip claimed rows).
pub fn has_claims(conn: &Connection, push: PushId) -> Result<bool> {
    Ok(conn
        .prepare_cached("SELECT EXISTS (SELECT 1 FROM claims WHERE push_id = ?1)")?
        .query_row([push], |r| r.get(0))?)
}

/// `pending → sending` for one delivery that is not fresh (a retry or a
/// deferred recipient), committed before the request leaves.
pub fn mark_sending(conn: &Connection, id: DeliveryId, channel: &str, at: Millis) -> Result<()> {
    let n = conn
        .prepare_cached(&format!(
            "UPDATE deliveries SET state = {SENDING}, channel = ?2, attempts = attempts + 1,
                sending_at = ?3, next_attempt_at = NULL, updated_at = ?3
             WHERE id = ?1 AND state = {PENDING}"
        ))?
        .execute(params![id, channel, at])?;
    expect_one(n, id, "mark_sending")
}

// The set-based statements below spell the state codes out.
const _: () = assert!(PENDING == 0 && SENDING == 1 && SENT == 2);

/// One row of a set-based `sending` mark: (delivery, channel, time).
pub type Mark<'a> = (DeliveryId, &'a str, Millis);

/// [`mark_sending`] for many deliveries: one UPDATE per channel in the batch
/// (normally one), over the ids passed as one JSON array, stamped with the
/// batch's latest time. Items are (delivery, channel, time); returns the
/// deliveries that were pending and are now `sending`.
pub fn mark_sending_many(conn: &Connection, items: &[Mark<'_>]) -> Result<HashSet<DeliveryId>> {
    let mut stmt = conn.prepare_cached(
        "UPDATE deliveries SET state = 1, channel = ?2, attempts = attempts + 1,
            sending_at = ?3, next_attempt_at = NULL, updated_at = ?3
         WHERE id IN (SELECT value FROM json_each(?1)) AND state = 0
         RETURNING id",
    )?;
    let mut changed = HashSet::with_capacity(items.len());
    for (channel, marks) in group_by(items, |m| m.1) {
        let ids = encode(&marks.iter().map(|m| m.0).collect::<Vec<_>>())?;
        let at = marks.iter().map(|m| m.2).max().unwrap_or_else(now_ms);
        let rows = stmt.query_map(params![ids, channel, at], |r| r.get::<_, DeliveryId>(0))?;
        for id in rows {
            changed.insert(id?);
        }
    }
    Ok(changed)
}
