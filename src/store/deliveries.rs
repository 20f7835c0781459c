//! Deliveries: one row per (push, member), moved through the state machine
//! `pending → sending → sent | failed | skipped` (+ `cancelled`). Every
//! transition is guarded by the state it leaves, so a delivery can never be
//! sent twice by accident, whatever order things happen in.

use super::members::{MEMBER_COLUMNS, member_from_row};
use super::{Result, StoreError};
use crate::model::{
    DeliveryId, DeliveryState, ErrorClass, Member, MemberId, Millis, PushId, now_ms,
};
use crate::util::group_by;
use rusqlite::{Connection, params, params_from_iter};
use std::cell::RefCell;
use std::collections::{HashMap, HashSet};

/// A recipient waiting to be sent.
#[derive(Debug, Clone)]
pub struct Pending {
    pub delivery_id: DeliveryId,
    pub attempts: u32,
    pub next_attempt_at: Option<Millis>,
    pub member: Member,
}

const PENDING: i64 = DeliveryState::Pending as i64;
const SENDING: i64 = DeliveryState::Sending as i64;
const SENT: i64 = DeliveryState::Sent as i64;
const FAILED: i64 = DeliveryState::Failed as i64;
const SKIPPED: i64 = DeliveryState::Skipped as i64;
const CANCELLED: i64 = DeliveryState::Cancelled as i64;

/// Drops a half-done resolution (after a crash) so it can be redone.
pub fn clear(conn: &Connection, push: PushId) -> Result<u64> {
    Ok(conn.execute("DELETE FROM deliveries WHERE push_id = ?1", [push])? as u64)
}

/// Freezes an audience given as SQL into delivery rows in one statement.
/// Unsubscribed members are recorded as skipped. Members are scanned in id
/// order (NOT INDEXED): through an index, a large audience is sorted back
/// into id order in memory (+45 MB for 1M members) and the scan is no
/// faster; tag subqueries still use their own index. `filter_sql` is a boolean
/// expression over `members m`; `args` are its parameters.
pub fn insert_from_sql(
    conn: &Connection,
    push: PushId,
    filter_sql: &str,
    args: &[rusqlite::types::Value],
) -> Result<u64> {
    let sql = format!(
        "INSERT INTO deliveries (push_id, member_id, state, skip_reason)
         SELECT {push}, m.id,
                CASE WHEN m.subscribed THEN {PENDING} ELSE {SKIPPED} END,
                CASE WHEN m.subscribed THEN NULL ELSE 'unsubscribed' END
         FROM members m NOT INDEXED WHERE ({filter_sql}) ORDER BY m.id"
    );
    Ok(conn.execute(&sql, params_from_iter(args.iter()))? as u64)
}

/// Adds explicit members (Lua-filtered audiences, static audiences).
pub fn insert_members(
    conn: &Connection,
    push: PushId,
    members: &[(MemberId, bool)],
) -> Result<u64> {
    let mut stmt = conn.prepare_cached(
        "INSERT INTO deliveries (push_id, member_id, state, skip_reason) VALUES (?1, ?2, ?3, ?4)",
    )?;
    for (id, subscribed) in members {
        if *subscribed {
            stmt.execute(params![push, id, PENDING, Option::<&str>::None])?;
        } else {
            stmt.execute(params![push, id, SKIPPED, "unsubscribed"])?;
        }
    }
    Ok(members.len() as u64)
}

/// Sets the counters of a push whose audience was just frozen (the bulk
/// inserts bypass the per-row triggers). Such rows are pending or skipped
/// and carry no receipts yet, so two index-only counts say everything: the
/// pending ones (partial index) and all of them (push index).
pub fn count_resolved(conn: &Connection, push: PushId) -> Result<()> {
    conn.execute("DELETE FROM push_counts WHERE push_id = ?1", [push])?;
    let count = |sql: &str| -> Result<i64> {
        Ok(conn.prepare_cached(sql)?.query_row([push], |r| r.get(0))?)
    };
    let pending = count(&format!(
        "SELECT count(*) FROM deliveries WHERE push_id = ?1 AND state = {PENDING}"
    ))?;
    let total = count("SELECT count(*) FROM deliveries WHERE push_id = ?1")?;
    let mut insert = conn.prepare_cached(
        "INSERT INTO push_counts (push_id, state, rd, ia, n) VALUES (?1, ?2, 0, 0, ?3)",
    )?;
    for (state, n) in [(PENDING, pending), (SKIPPED, total - pending)] {
        if n > 0 {
            insert.execute(params![push, state, n])?;
        }
    }
    Ok(())
}

/// The next pending recipients after `after` (by delivery id), with members.
pub fn pending_page(
    conn: &Connection,
    push: PushId,
    after: DeliveryId,
    limit: u32,
) -> Result<Vec<Pending>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT d.id, d.attempts, d.next_attempt_at, {MEMBER_COLUMNS}
         FROM deliveries d JOIN members m ON m.id = d.member_id
         WHERE d.push_id = ?1 AND d.state = {PENDING} AND d.id > ?2
         ORDER BY d.id LIMIT ?3"
    ))?;
    let rows = stmt.query_map(params![push, after, limit], |r| {
        Ok(Pending {
            delivery_id: r.get(0)?,
            attempts: r.get(1)?,
            next_attempt_at: r.get(2)?,
            member: member_from_row(r, 3)?,
        })
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

fn expect_one(changed: usize, id: DeliveryId, what: &str) -> Result<()> {
    if changed == 1 {
        Ok(())
    } else {
        Err(StoreError::Invalid(format!(
            "delivery {id} is not in the state {what} expects"
        )))
    }
}

/// `pending → sending`, committed before the request leaves.
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

/// One row of a set-based transition: (delivery, text, time).
pub type Mark<'a> = (DeliveryId, &'a str, Millis);

fn encode<T: serde::Serialize>(v: &T) -> Result<String> {
    serde_json::to_string(v)
        .map_err(|e| StoreError::Invalid(format!("cannot encode deliveries: {e}")))
}

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

thread_local! {
    /// The batch [`mark_sent_many`] is writing, by delivery: (provider
    /// message id, time). Its UPDATE reads them through the SQL functions
    /// `pushd_sent_pid(id)` / `pushd_sent_at(id)` (see [`register_functions`]),
    /// which SQLite calls on this same thread while the statement runs.
    static SENT_BATCH: RefCell<HashMap<DeliveryId, (String, Millis)>> = RefCell::new(HashMap::new());
}

/// Registers the SQL functions [`mark_sent_many`] uses, on a connection
/// that will run it. (Handing each row's values over as JSON cost more than
/// the row's own update: every `->>` re-parsed the row's JSON.)
pub fn register_functions(conn: &Connection) -> rusqlite::Result<()> {
    use rusqlite::functions::FunctionFlags;
    let flags = FunctionFlags::SQLITE_UTF8 | FunctionFlags::SQLITE_DIRECTONLY;
    conn.create_scalar_function("pushd_sent_pid", 1, flags, |ctx| {
        let id: DeliveryId = ctx.get(0)?;
        Ok(SENT_BATCH.with_borrow(|b| b.get(&id).map(|(pid, _)| pid.clone())))
    })?;
    conn.create_scalar_function("pushd_sent_at", 1, flags, |ctx| {
        let id: DeliveryId = ctx.get(0)?;
        Ok(SENT_BATCH.with_borrow(|b| b.get(&id).map(|(_, at)| *at)))
    })
}

/// `sending → sent` for many deliveries in one statement, with the
/// provider's message ids. Items are (delivery, provider message id, time);
/// returns the deliveries that were `sending` and are now `sent`. The
/// connection needs [`register_functions`].
///
/// The counters' trigger leaves this move to us (schema migration 2): the
/// moved rows are counted per (push, read, interacted) cell and each cell's
/// counters are updated once, instead of two statements per row.
pub fn mark_sent_many(conn: &Connection, items: &[Mark<'_>]) -> Result<HashSet<DeliveryId>> {
    let ids = encode(&items.iter().map(|m| m.0).collect::<Vec<_>>())?;
    SENT_BATCH.with_borrow_mut(|b| {
        b.clear();
        b.extend(
            items
                .iter()
                .map(|(id, pid, at)| (*id, (pid.to_string(), *at))),
        );
    });
    let moved = sent_update(conn, &ids);
    SENT_BATCH.with_borrow_mut(HashMap::clear);
    // (delivery, (push, rd, ia)) for every row moved; a batch belongs to one
    // push, so there are few cells.
    let moved = moved?;
    let changed = moved.iter().map(|(id, _)| *id).collect();
    let mut from = conn.prepare_cached(
        "UPDATE push_counts SET n = n - ?5 WHERE push_id = ?1 AND state = ?2 AND rd = ?3 AND ia = ?4",
    )?;
    let mut to = conn.prepare_cached(
        "INSERT INTO push_counts (push_id, state, rd, ia, n) VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT (push_id, state, rd, ia) DO UPDATE SET n = n + excluded.n",
    )?;
    for ((push, rd, ia), rows) in group_by(moved, |(_, cell)| *cell) {
        let n = rows.len() as i64;
        // Pending and sending share counter cell 0.
        from.execute(params![push, PENDING, rd, ia, n])?;
        to.execute(params![push, SENT, rd, ia, n])?;
    }
    Ok(changed)
}

/// [`mark_sent_many`]'s UPDATE over `SENT_BATCH`: each moved row with its counter cell.
type Moved = Vec<(DeliveryId, (PushId, bool, bool))>;

fn sent_update(conn: &Connection, ids: &str) -> Result<Moved> {
    let mut stmt = conn.prepare_cached(
        "UPDATE deliveries SET state = 2, provider_message_id = pushd_sent_pid(id),
            sent_at = pushd_sent_at(id), updated_at = pushd_sent_at(id)
         WHERE id IN (SELECT value FROM json_each(?1)) AND state = 1
         RETURNING id, push_id, read_at IS NOT NULL, interacted_at IS NOT NULL",
    )?;
    let rows = stmt.query_map([ids], |r| {
        Ok((r.get(0)?, (r.get(1)?, r.get(2)?, r.get(3)?)))
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// `sending → failed` (permanent error, or attempts exhausted).
pub fn mark_failed(
    conn: &Connection,
    id: DeliveryId,
    class: ErrorClass,
    code: &str,
    message: &str,
    at: Millis,
) -> Result<()> {
    let n = conn
        .prepare_cached(&format!(
            "UPDATE deliveries SET state = {FAILED}, error_class = ?2, error_code = ?3, error_message = ?4,
                failed_at = ?5, updated_at = ?5
             WHERE id = ?1 AND state = {SENDING}"
        ))?
        .execute(params![id, class.as_str(), code, message, at])?;
    expect_one(n, id, "mark_failed")
}

/// `sending → pending` to be tried again at `next_at` (transient error), or
/// without counting the attempt (`refund`: the push paused before it could
/// really be tried, e.g. bad credentials).
pub fn mark_retry(
    conn: &Connection,
    id: DeliveryId,
    class: ErrorClass,
    code: &str,
    message: &str,
    next_at: Millis,
    refund: bool,
) -> Result<()> {
    let n = conn
        .prepare_cached(&format!(
            "UPDATE deliveries SET state = {PENDING}, error_class = ?2, error_code = ?3, error_message = ?4,
                next_attempt_at = ?5, attempts = attempts - ?6, updated_at = ?7
             WHERE id = ?1 AND state = {SENDING}"
        ))?
        .execute(params![id, class.as_str(), code, message, next_at, refund as i64, now_ms()])?;
    expect_one(n, id, "mark_retry")
}

/// `pending → skipped` with the reason (route skip, channel not configured).
pub fn mark_skipped(conn: &Connection, id: DeliveryId, reason: &str) -> Result<()> {
    let n = conn
        .prepare_cached(&format!(
            "UPDATE deliveries SET state = {SKIPPED}, skip_reason = ?2, updated_at = ?3
             WHERE id = ?1 AND state = {PENDING}"
        ))?
        .execute(params![id, reason, now_ms()])?;
    expect_one(n, id, "mark_skipped")
}

/// Defers a pending recipient (send window) without counting an attempt.
pub fn defer(conn: &Connection, id: DeliveryId, until: Millis) -> Result<()> {
    conn.prepare_cached(&format!(
        "UPDATE deliveries SET next_attempt_at = ?2 WHERE id = ?1 AND state = {PENDING}"
    ))?
    .execute(params![id, until])?;
    Ok(())
}

/// Everything still pending in a cancelled push ends `cancelled`.
pub fn cancel_pending(conn: &Connection, push: PushId) -> Result<u64> {
    Ok(conn
        .prepare_cached(&format!(
            "UPDATE deliveries SET state = {CANCELLED}, updated_at = ?2 WHERE push_id = ?1 AND state = {PENDING}"
        ))?
        .execute(params![push, now_ms()])? as u64)
}

/// After a crash: rows left in `sending` may or may not have reached the
/// platform. They are never resent automatically; they end failed with class
/// `interrupted`, so a retry audience can pick them up deliberately.
pub fn interrupt_sending(conn: &Connection) -> Result<u64> {
    let now = now_ms();
    Ok(conn
        .prepare_cached(&format!(
            "UPDATE deliveries SET state = {FAILED}, error_class = 'interrupted', error_code = 'interrupted',
                error_message = 'pushd stopped while this send was in flight; it may or may not have arrived, so it is not resent automatically',
                failed_at = ?1, updated_at = ?1
             WHERE state = {SENDING}"
        ))?
        .execute([now])? as u64)
}
