//! Deliveries: one row per (push, member), moved through the state machine
//! `pending → sending → sent | failed | skipped` (+ `cancelled`). Every
//! transition is guarded by the state it leaves, so a delivery can never be
//! sent twice by accident, whatever order things happen in.
//!
//! `sending` is stored two ways. A *fresh* delivery (never attempted, not
//! deferred) is claimed with the rest of its group by one row in `claims`,
//! committed before any request of the group leaves: while that claim
//! lives, the fresh row is `sending` ([`STATE_SQL`]). Everything else
//! (retries, deferred recipients) is marked `sending` (state 1) row by row.
//! Outcomes accept either, so the common first attempt costs one row write.

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

/// A group of fresh deliveries claimed for sending (a row of `claims`).
pub type ClaimId = i64;

/// Fresh: pending, never attempted, not deferred — claimed by range, not marked.
macro_rules! fresh {
    () => {
        "d.state = 0 AND d.attempts = 0 AND d.next_attempt_at IS NULL"
    };
}

/// Inside a live claim of its push.
macro_rules! claimed {
    () => {
        "EXISTS (SELECT 1 FROM claims c WHERE c.push_id = d.push_id AND d.id BETWEEN c.first_id AND c.last_id)"
    };
}

/// A delivery's state as the state machine sees it, over `deliveries d`: a
/// fresh row inside a live claim is `sending` (1), anything else its column.
pub const STATE_SQL: &str = concat!(
    "(CASE WHEN ",
    fresh!(),
    " AND ",
    claimed!(),
    " THEN 1 ELSE d.state END)"
);

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

/// Members per chunk of an SQL audience ([`resolve_chunk`]): a few
/// milliseconds of the writer, so the claims of the sends under way never
/// wait long behind one.
pub const RESOLVE_CHUNK: u32 = 4096;

/// One chunk of a resolution in chunks ([`resolve_chunk`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Chunk {
    /// Delivery rows inserted.
    pub rows: u64,
    /// The audience is frozen whole (this chunk was its last).
    pub done: bool,
}

/// Freezes the next `limit` members of an audience given as SQL (see
/// [`insert_from_sql`]) after the push's `resolved_through` member, in id
/// order, with their counters, and moves `resolved_through` on — all in the
/// caller's transaction, so a crash between chunks resumes exactly after
/// the last committed one. A chunk of fewer than `limit` members is the
/// last: the push is marked resolved. Nothing is frozen for a push that is
/// no longer running or paused (cancelled meanwhile).
pub fn resolve_chunk(
    conn: &Connection,
    push: PushId,
    filter_sql: &str,
    args: &[rusqlite::types::Value],
    limit: u32,
) -> Result<Chunk> {
    let (status, after): (String, Option<MemberId>) = conn
        .prepare_cached("SELECT status, resolved_through FROM pushes WHERE id = ?1")?
        .query_row([push], |r| Ok((r.get(0)?, r.get(1)?)))?;
    if !matches!(status.as_str(), "running" | "paused") {
        return Ok(Chunk {
            rows: 0,
            done: true,
        });
    }
    let after_param = args.len() + 1;
    let sql = format!(
        "INSERT INTO deliveries (push_id, member_id, state, skip_reason)
         SELECT {push}, m.id,
                CASE WHEN m.subscribed THEN {PENDING} ELSE {SKIPPED} END,
                CASE WHEN m.subscribed THEN NULL ELSE 'unsubscribed' END
         FROM members m NOT INDEXED WHERE ({filter_sql}) AND m.id > ?{after_param}
         ORDER BY m.id LIMIT {limit}"
    );
    let mut params: Vec<&dyn rusqlite::ToSql> =
        args.iter().map(|a| a as &dyn rusqlite::ToSql).collect();
    let after = after.unwrap_or(0);
    params.push(&after);
    let rows = conn.prepare_cached(&sql)?.execute(params.as_slice())? as i64;
    let done = rows < limit as i64;
    if rows > 0 {
        // One statement inserts consecutive rowids.
        let last = conn.last_insert_rowid();
        let first = last - rows + 1;
        let skipped: i64 = conn
            .prepare_cached(&format!(
                "SELECT count(*) FROM deliveries INDEXED BY deliveries_skipped
                 WHERE push_id = ?1 AND state = {SKIPPED} AND id BETWEEN ?2 AND ?3"
            ))?
            .query_row(params![push, first, last], |r| r.get(0))?;
        let mut add = conn.prepare_cached(
            "INSERT INTO push_counts (push_id, state, rd, ia, n) VALUES (?1, ?2, 0, 0, ?3)
             ON CONFLICT (push_id, state, rd, ia) DO UPDATE SET n = n + excluded.n",
        )?;
        for (state, n) in [(PENDING, rows - skipped), (SKIPPED, skipped)] {
            if n > 0 {
                add.execute(params![push, state, n])?;
            }
        }
        conn.prepare_cached(
            "UPDATE pushes SET resolved_through = (SELECT member_id FROM deliveries WHERE id = ?2)
             WHERE id = ?1",
        )?
        .execute(params![push, last])?;
    }
    if done {
        conn.prepare_cached("UPDATE pushes SET resolved = 1 WHERE id = ?1")?
            .execute([push])?;
    }
    Ok(Chunk {
        rows: rows as u64,
        done,
    })
}

/// Where a resolution in chunks stands: `Some(member)` once it has begun.
pub fn resolved_through(conn: &Connection, push: PushId) -> Result<Option<MemberId>> {
    Ok(conn
        .prepare_cached("SELECT resolved_through FROM pushes WHERE id = ?1")?
        .query_row([push], |r| r.get(0))?)
}

/// Starts a resolution over: no rows, no counters, nothing resolved.
pub fn restart_resolution(conn: &Connection, push: PushId) -> Result<()> {
    clear(conn, push)?;
    conn.execute("DELETE FROM push_counts WHERE push_id = ?1", [push])?;
    conn.prepare_cached("UPDATE pushes SET resolved_through = NULL WHERE id = ?1")?
        .execute([push])?;
    Ok(())
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
/// skipped ones (partial index) and all of them (push index).
pub fn count_resolved(conn: &Connection, push: PushId) -> Result<()> {
    conn.execute("DELETE FROM push_counts WHERE push_id = ?1", [push])?;
    let count = |sql: &str| -> Result<i64> {
        Ok(conn.prepare_cached(sql)?.query_row([push], |r| r.get(0))?)
    };
    let skipped = count(&format!(
        "SELECT count(*) FROM deliveries INDEXED BY deliveries_skipped WHERE push_id = ?1 AND state = {SKIPPED}"
    ))?;
    let total =
        count("SELECT count(*) FROM deliveries INDEXED BY deliveries_push WHERE push_id = ?1")?;
    let mut insert = conn.prepare_cached(
        "INSERT INTO push_counts (push_id, state, rd, ia, n) VALUES (?1, ?2, 0, 0, ?3)",
    )?;
    for (state, n) in [(PENDING, total - skipped), (SKIPPED, skipped)] {
        if n > 0 {
            insert.execute(params![push, state, n])?;
        }
    }
    Ok(())
}

/// The next pending recipients after `after` (by delivery id), with members:
/// all of them (through the push index), or with `waiting` only those given
/// a time to wait for (retries, deferrals: their own small index).
/// `skip_claimed` leaves out fresh rows inside a live claim (they are
/// `sending`); a walk that knows its push has no claims saves the check.
pub fn pending_page(
    conn: &Connection,
    push: PushId,
    after: DeliveryId,
    limit: u32,
    waiting: bool,
    skip_claimed: bool,
) -> Result<Vec<Pending>> {
    let unclaimed = if skip_claimed {
        concat!(" AND NOT (", fresh!(), " AND ", claimed!(), ")")
    } else {
        ""
    };
    let (index, only) = if waiting {
        ("deliveries_waiting", " AND d.next_attempt_at IS NOT NULL")
    } else {
        ("deliveries_push", "")
    };
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT d.id, d.attempts, d.next_attempt_at, {MEMBER_COLUMNS}
         FROM deliveries d INDEXED BY {index} JOIN members m ON m.id = d.member_id
         WHERE d.push_id = ?1 AND d.state = {PENDING}{only} AND d.id > ?2{unclaimed}
         ORDER BY d.id LIMIT {limit}"
    ))?;
    // (The limit is spelled out: SQLite re-prepares a statement whenever a
    // bound LIMIT is bound again, which was a parse and plan per page.)
    let rows = stmt.query_map(params![push, after], |r| {
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

/// A successful send to record: the provider's message id, when it was
/// sent, and when its request was claimed or marked (its `sending` time).
#[derive(Debug, Clone)]
pub struct SentRow<'a> {
    pub id: DeliveryId,
    pub provider_id: &'a str,
    pub at: Millis,
    pub sending_at: Millis,
}

/// Spreads ids over a hash table; they are distinct integers, so one
/// multiply is all the mixing needed (SipHash was a visible cost per row).
#[derive(Default, Clone, Copy)]
struct IdHash(u64);

impl std::hash::Hasher for IdHash {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0 ^ *b as u64).wrapping_mul(0x0000_0100_0000_01B3);
        }
    }
    fn write_i64(&mut self, n: i64) {
        self.0 = (n as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

type IdMap<V> = HashMap<DeliveryId, V, std::hash::BuildHasherDefault<IdHash>>;

thread_local! {
    /// The batch [`mark_sent_many`] is writing, by delivery: (provider
    /// message id, sent time, sending time). Its UPDATE reads them through
    /// the SQL functions `pushd_sent_pid(id)`, `pushd_sent_at(id)` and
    /// `pushd_sending_at(id)` (see [`register_functions`]), which SQLite
    /// calls on this same thread while the statement runs.
    static SENT_BATCH: RefCell<IdMap<(String, Millis, Millis)>> = RefCell::new(IdMap::default());
}

/// Registers the SQL functions [`mark_sent_many`] uses, on a connection
/// that will run it. (Handing each row's values over as JSON cost more than
/// the row's own update: every `->>` re-parsed the row's JSON.) They are
/// plain C callbacks: through rusqlite's closure wrapper (a boxed closure
/// behind `catch_unwind`, an owned copy of every id) the three calls cost
/// a tenth of the row's whole update.
pub fn register_functions(conn: &Connection) -> rusqlite::Result<()> {
    use rusqlite::ffi;
    type Callback =
        unsafe extern "C" fn(*mut ffi::sqlite3_context, c_int, *mut *mut ffi::sqlite3_value);
    let functions: [(&std::ffi::CStr, Callback); 3] = [
        (c"pushd_sent_pid", sent_pid),
        (c"pushd_sent_at", batch_time::<false>),
        (c"pushd_sending_at", batch_time::<true>),
    ];
    for (name, f) in functions {
        // SAFETY: the handle is this open connection's; the name is a
        // NUL-terminated literal; the callbacks take one argument (checked
        // by SQLite against nArg = 1) and touch nothing but SENT_BATCH.
        let rc = unsafe {
            ffi::sqlite3_create_function_v2(
                conn.handle(),
                name.as_ptr(),
                1,
                ffi::SQLITE_UTF8 | ffi::SQLITE_DIRECTONLY,
                std::ptr::null_mut(),
                Some(f),
                None,
                None,
                None,
            )
        };
        if rc != ffi::SQLITE_OK {
            return Err(rusqlite::Error::SqliteFailure(
                ffi::Error::new(rc),
                Some(format!("cannot register {}", name.to_string_lossy())),
            ));
        }
    }
    Ok(())
}

use std::ffi::c_int;

/// The batch entry of the delivery id in `argv[0]`, if any.
///
/// # Safety
/// `argv` holds the one argument SQLite passes (the functions take one).
unsafe fn with_sent<R>(
    argv: *mut *mut rusqlite::ffi::sqlite3_value,
    f: impl Fn(Option<&(String, Millis, Millis)>) -> R,
) -> R {
    // SAFETY: argv[0] is a valid value for the duration of the call.
    let id = unsafe { rusqlite::ffi::sqlite3_value_int64(*argv) };
    // Never borrowed mutably while a statement runs (see `mark_sent_many`);
    // a missing thread-local (thread teardown) reads as "no entry".
    SENT_BATCH
        .try_with(|b| match b.try_borrow() {
            Ok(b) => f(b.get(&id)),
            Err(_) => f(None),
        })
        .unwrap_or_else(|_| f(None))
}

unsafe extern "C" fn sent_pid(
    ctx: *mut rusqlite::ffi::sqlite3_context,
    _argc: c_int,
    argv: *mut *mut rusqlite::ffi::sqlite3_value,
) {
    use rusqlite::ffi;
    // SAFETY: SQLite's context and arguments for this call; the text is
    // copied by SQLite (SQLITE_TRANSIENT) before the borrow ends.
    unsafe {
        with_sent(argv, |e| match e {
            Some((pid, ..)) if pid.len() <= c_int::MAX as usize => ffi::sqlite3_result_text(
                ctx,
                pid.as_ptr().cast(),
                pid.len() as c_int,
                ffi::SQLITE_TRANSIENT(),
            ),
            _ => ffi::sqlite3_result_null(ctx),
        })
    }
}

/// `pushd_sending_at` (SENDING) or `pushd_sent_at`: one of the batch's times.
unsafe extern "C" fn batch_time<const SENDING: bool>(
    ctx: *mut rusqlite::ffi::sqlite3_context,
    _argc: c_int,
    argv: *mut *mut rusqlite::ffi::sqlite3_value,
) {
    use rusqlite::ffi;
    // SAFETY: SQLite's context and arguments for this call.
    unsafe {
        with_sent(argv, |e| match e {
            Some((_, at, sending)) => {
                ffi::sqlite3_result_int64(ctx, if SENDING { *sending } else { *at })
            }
            None => ffi::sqlite3_result_null(ctx),
        })
    }
}

/// `sending → sent` for many deliveries of one push and channel in one
/// statement, with the provider's message ids; a claimed fresh row (still
/// pending in its column) moves straight to sent and has its attempt,
/// channel and sending time recorded here. Returns the deliveries that were
/// `sending` and are now `sent`. The connection needs [`register_functions`].
///
/// The counters' trigger leaves this move to us (schema migrations 2 and
/// 3): one counter update for the batch instead of two statements per row.
/// A row that is pending or sending never carries a receipt (every receipt
/// update requires `sent`), so all moved rows leave cell (push, 0, 0, 0) for
/// (push, sent, 0, 0), and their number is the UPDATE's change count: the
/// statement needs no RETURNING (which buffers every row it returns).
pub fn mark_sent_many(
    conn: &Connection,
    push: PushId,
    channel: &str,
    rows: &[SentRow<'_>],
) -> Result<HashSet<DeliveryId>> {
    let ids = encode(&rows.iter().map(|r| r.id).collect::<Vec<_>>())?;
    SENT_BATCH.with_borrow_mut(|b| {
        b.clear();
        b.extend(
            rows.iter()
                .map(|r| (r.id, (r.provider_id.to_string(), r.at, r.sending_at))),
        );
    });
    let moved = sent_update(conn, &ids, channel, rows);
    SENT_BATCH.with_borrow_mut(HashMap::clear);
    let moved = moved?;
    let n = moved.len() as i64;
    if n > 0 {
        // Pending and sending share counter cell 0.
        conn.prepare_cached(
            "UPDATE push_counts SET n = n - ?2 WHERE push_id = ?1 AND state = 0 AND rd = 0 AND ia = 0",
        )?
        .execute(params![push, n])?;
        conn.prepare_cached(&format!(
            "INSERT INTO push_counts (push_id, state, rd, ia, n) VALUES (?1, {SENT}, 0, 0, ?2)
             ON CONFLICT (push_id, state, rd, ia) DO UPDATE SET n = n + excluded.n"
        ))?
        .execute(params![push, n])?;
    }
    Ok(moved)
}

/// [`mark_sent_many`]'s UPDATE over `SENT_BATCH`: the rows it moved.
fn sent_update(
    conn: &Connection,
    ids: &str,
    channel: &str,
    rows: &[SentRow<'_>],
) -> Result<HashSet<DeliveryId>> {
    let changed = conn
        .prepare_cached(
            "UPDATE deliveries SET state = 2, attempts = attempts + (state = 0), channel = ?2,
                sending_at = coalesce(sending_at, pushd_sending_at(id)),
                provider_message_id = pushd_sent_pid(id),
                sent_at = pushd_sent_at(id), updated_at = pushd_sent_at(id)
             WHERE id IN (SELECT value FROM json_each(?1)) AND state <= 1",
        )?
        .execute(params![ids, channel])?;
    if changed == rows.len() {
        return Ok(rows.iter().map(|r| r.id).collect());
    }
    // Some were not pending or sending (nothing in pushd does that; an
    // operator's hand edit might): name the ones that now carry this send.
    let mut stmt = conn.prepare_cached(
        "SELECT id FROM deliveries WHERE id IN (SELECT value FROM json_each(?1))
           AND state = 2 AND provider_message_id = pushd_sent_pid(id) AND sent_at = pushd_sent_at(id)",
    )?;
    let moved: HashSet<DeliveryId> = stmt
        .query_map([ids], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    if moved.len() != changed {
        return Err(StoreError::Invalid(format!(
            "recording {} sends changed {changed} rows but {} carry them",
            rows.len(),
            moved.len()
        )));
    }
    Ok(moved)
}

/// Where and when an attempt went out. Recorded with its outcome, because a
/// claimed first attempt was not marked row by row.
#[derive(Debug, Clone)]
pub struct Attempt {
    pub channel: String,
    pub sending_at: Millis,
}

/// `sending → failed` (permanent error, or attempts exhausted).
pub fn mark_failed(
    conn: &Connection,
    id: DeliveryId,
    attempt: &Attempt,
    class: ErrorClass,
    code: &str,
    message: &str,
    at: Millis,
) -> Result<()> {
    let n = conn
        .prepare_cached(&format!(
            "UPDATE deliveries SET state = {FAILED}, attempts = attempts + (state = {PENDING}),
                channel = ?6, sending_at = coalesce(sending_at, ?7),
                error_class = ?2, error_code = ?3, error_message = ?4, failed_at = ?5, updated_at = ?5
             WHERE id = ?1 AND state <= {SENDING}"
        ))?
        .execute(params![
            id,
            class.as_str(),
            code,
            message,
            at,
            attempt.channel,
            attempt.sending_at
        ])?;
    expect_one(n, id, "mark_failed")
}

/// `sending → pending` to be tried again at `next_at` (transient error), or
/// without counting the attempt (`refund`: the push paused before it could
/// really be tried, e.g. bad credentials). Either way the row is no longer
/// fresh (it has a time to wait for), so its next attempt is marked.
#[allow(clippy::too_many_arguments)]
pub fn mark_retry(
    conn: &Connection,
    id: DeliveryId,
    attempt: &Attempt,
    class: ErrorClass,
    code: &str,
    message: &str,
    next_at: Millis,
    refund: bool,
) -> Result<()> {
    let n = conn
        .prepare_cached(&format!(
            "UPDATE deliveries SET state = {PENDING}, attempts = attempts + (state = {PENDING}) - ?6,
                channel = ?8, sending_at = coalesce(sending_at, ?9),
                error_class = ?2, error_code = ?3, error_message = ?4,
                next_attempt_at = ?5, updated_at = ?7
             WHERE id = ?1 AND state <= {SENDING}"
        ))?
        .execute(params![
            id,
            class.as_str(),
            code,
            message,
            next_at,
            refund as i64,
            now_ms(),
            attempt.channel,
            attempt.sending_at
        ])?;
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

/// Everything still pending in a cancelled push ends `cancelled`, but for
/// claimed rows: they are `sending`, and end as the platform answers.
pub fn cancel_pending(conn: &Connection, push: PushId) -> Result<u64> {
    Ok(conn
        .prepare_cached(&format!(
            concat!(
                "UPDATE deliveries AS d SET state = {CANCELLED}, updated_at = ?2
                 WHERE d.push_id = ?1 AND d.state = {PENDING} AND NOT (",
                fresh!(),
                " AND ",
                claimed!(),
                ")"
            ),
            CANCELLED = CANCELLED,
            PENDING = PENDING
        ))?
        .execute(params![push, now_ms()])? as u64)
}

const INTERRUPTED: &str = "error_class = 'interrupted', error_code = 'interrupted',
    error_message = 'pushd stopped while this send was in flight; it may or may not have arrived, so it is not resent automatically'";

/// After a crash: rows left `sending` (marked, or fresh inside a claim) may
/// or may not have reached the platform. They are never resent
/// automatically; they end failed with class `interrupted`, so a retry
/// audience can pick them up deliberately. The claims go with them.
pub fn interrupt_sending(conn: &Connection) -> Result<u64> {
    let now = now_ms();
    let marked = conn
        .prepare_cached(&format!(
            "UPDATE deliveries SET state = {FAILED}, {INTERRUPTED}, failed_at = ?1, updated_at = ?1
             WHERE state = {SENDING}"
        ))?
        .execute([now])?;
    let claims: Vec<(PushId, DeliveryId, DeliveryId, Millis)> = conn
        .prepare_cached("SELECT push_id, first_id, last_id, at FROM claims")?
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?
        .collect::<rusqlite::Result<_>>()?;
    let mut claimed = 0;
    let mut stmt = conn.prepare_cached(&format!(
        concat!(
            "UPDATE deliveries AS d SET state = {FAILED}, attempts = 1, sending_at = ?4, {INTERRUPTED},
                failed_at = ?5, updated_at = ?5
             WHERE d.push_id = ?1 AND d.id BETWEEN ?2 AND ?3 AND ",
            fresh!()
        ),
        FAILED = FAILED,
        INTERRUPTED = INTERRUPTED
    ))?;
    for (push, first, last, at) in claims {
        claimed += stmt.execute(params![push, first, last, at, now])?;
    }
    conn.prepare_cached("DELETE FROM claims")?.execute([])?;
    Ok((marked + claimed) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{pushes, schema};

    /// A push named `name`, started.
    fn started_push(c: &Connection, name: &str) -> PushId {
        let p = pushes::create(
            c,
            &pushes::NewPush {
                name: name.into(),
                origin: "cli".into(),
                audience: "a".into(),
                template: "t".into(),
                ..Default::default()
            },
        )
        .unwrap()
        .id;
        pushes::mark_started(c, p, None, None).unwrap();
        p
    }

    /// A running push with five pending deliveries, ids 1..=5.
    fn running_push() -> (tempfile::TempDir, Connection, PushId) {
        let dir = tempfile::tempdir().unwrap();
        let mut c = Connection::open(dir.path().join("d.db")).unwrap();
        schema::migrate(&mut c).unwrap();
        register_functions(&c).unwrap();
        let p = started_push(&c, "p");
        for m in 1..=5 {
            c.execute(
                "INSERT INTO members (id, channel, channel_user_id, created_at, updated_at)
                 VALUES (?1, 'sim', 'u' || ?1, 0, 0)",
                [m],
            )
            .unwrap();
            c.execute(
                "INSERT INTO deliveries (id, push_id, member_id, state) VALUES (?1, ?2, ?1, 0)",
                params![m, p],
            )
            .unwrap();
        }
        count_resolved(&c, p).unwrap();
        (dir, c, p)
    }

    fn states(c: &Connection) -> Vec<i64> {
        c.prepare(&format!(
            "SELECT {STATE_SQL} FROM deliveries d ORDER BY d.id"
        ))
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<rusqlite::Result<_>>()
        .unwrap()
    }

    #[test]
    fn claimed_fresh_rows_are_sending_and_outcomes_settle_them() {
        let (_dir, c, p) = running_push();
        // Row 3 waits for a retry: inside the range, but not fresh, so not claimed.
        let attempt = Attempt {
            channel: "sim".into(),
            sending_at: 9,
        };
        mark_retry(
            &c,
            3,
            &attempt,
            ErrorClass::Transient,
            "503",
            "busy",
            50,
            false,
        )
        .unwrap();
        let claim = claim(&c, p, 1, 4, 10).unwrap().expect("running push");
        assert_eq!(states(&c), vec![1, 1, 0, 1, 0]);
        assert!(has_claims(&c, p).unwrap());
        // The walk steps over claimed rows only when told to.
        let page = |skip| -> Vec<DeliveryId> {
            pending_page(&c, p, 0, 10, false, skip)
                .unwrap()
                .iter()
                .map(|p| p.delivery_id)
                .collect()
        };
        assert_eq!(page(true), vec![3, 5]);
        assert_eq!(page(false), vec![1, 2, 3, 4, 5]);
        // A later pass reads only the recipients with a time to wait for.
        let waiting: Vec<DeliveryId> = pending_page(&c, p, 0, 10, true, true)
            .unwrap()
            .iter()
            .map(|p| p.delivery_id)
            .collect();
        assert_eq!(waiting, vec![3]);
        // A cancel leaves claimed rows to their outcome.
        assert_eq!(cancel_pending(&c, p).unwrap(), 2);
        assert_eq!(states(&c), vec![1, 1, 5, 1, 5]);
        let sent = mark_sent_many(
            &c,
            p,
            "sim",
            &[SentRow {
                id: 1,
                provider_id: "pm-1",
                at: 12,
                sending_at: 10,
            }],
        )
        .unwrap();
        assert!(sent.contains(&1));
        mark_failed(&c, 2, &attempt, ErrorClass::Blocked, "b", "blocked", 13).unwrap();
        let row = |id: i64| -> (i64, i64, Option<String>, Option<i64>) {
            c.query_row(
                "SELECT state, attempts, channel, sending_at FROM deliveries WHERE id = ?1",
                [id],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
            )
            .unwrap()
        };
        assert_eq!(row(1), (2, 1, Some("sim".into()), Some(10)));
        assert_eq!(row(2), (3, 1, Some("sim".into()), Some(9)));
        // A crash now: row 4 is still in flight under the claim.
        assert_eq!(interrupt_sending(&c).unwrap(), 1);
        assert_eq!(states(&c), vec![2, 3, 5, 3, 5]);
        let (class, attempts, sending_at): (String, i64, i64) = c
            .query_row(
                "SELECT error_class, attempts, sending_at FROM deliveries WHERE id = 4",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .unwrap();
        assert_eq!(
            (class.as_str(), attempts, sending_at),
            ("interrupted", 1, 10)
        );
        assert!(!has_claims(&c, p).unwrap());
        release_claims(&c, &[claim]).unwrap();
        // The counters kept up with every move.
        let counts = pushes::counts(&c, p).unwrap();
        assert_eq!(
            (counts.sent, counts.failed, counts.cancelled, counts.pending),
            (1, 2, 2, 0)
        );
    }

    #[test]
    fn a_push_that_is_not_running_cannot_be_claimed() {
        let (_dir, c, p) = running_push();
        pushes::set_status(&c, p, pushes::PushStatus::Paused, Some("operator")).unwrap();
        assert_eq!(claim(&c, p, 1, 5, 1).unwrap(), None);
        assert!(!has_claims(&c, p).unwrap());
        assert_eq!(states(&c), vec![0; 5]);
    }

    /// Members 1..=n on two channels, every third one unsubscribed, and two
    /// started pushes over them.
    fn members_and_two_pushes(n: i64) -> (tempfile::TempDir, Connection, PushId, PushId) {
        let dir = tempfile::tempdir().unwrap();
        let mut c = Connection::open(dir.path().join("d.db")).unwrap();
        schema::migrate(&mut c).unwrap();
        register_functions(&c).unwrap();
        for m in 1..=n {
            c.execute(
                "INSERT INTO members (id, channel, channel_user_id, subscribed, created_at, updated_at)
                 VALUES (?1, CASE WHEN ?1 % 4 = 0 THEN 'wa' ELSE 'sim' END, 'u' || ?1, ?1 % 3 <> 0, 0, 0)",
                [m],
            )
            .unwrap();
        }
        let (a, b) = (started_push(&c, "whole"), started_push(&c, "chunked"));
        (dir, c, a, b)
    }

    fn frozen(c: &Connection, p: PushId) -> Vec<(i64, i64, Option<String>)> {
        c.prepare("SELECT member_id, state, skip_reason FROM deliveries WHERE push_id = ?1 ORDER BY member_id")
            .unwrap()
            .query_map([p], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap()
    }

    /// The counters as a recount of the rows.
    fn recount(c: &Connection, p: PushId) -> Vec<(i64, i64)> {
        c.prepare(
            "SELECT CASE WHEN state <= 1 THEN 0 ELSE state END s, count(*) FROM deliveries
             WHERE push_id = ?1 GROUP BY s ORDER BY s",
        )
        .unwrap()
        .query_map([p], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .collect::<rusqlite::Result<_>>()
        .unwrap()
    }

    fn counters(c: &Connection, p: PushId) -> Vec<(i64, i64)> {
        c.prepare(
            "SELECT state, sum(n) FROM push_counts WHERE push_id = ?1 AND n > 0 GROUP BY state ORDER BY state",
        )
        .unwrap()
        .query_map([p], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .collect::<rusqlite::Result<_>>()
        .unwrap()
    }

    fn resolved(c: &Connection, p: PushId) -> (bool, Option<MemberId>) {
        c.query_row(
            "SELECT resolved, resolved_through FROM pushes WHERE id = ?1",
            [p],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap()
    }

    #[test]
    fn chunks_freeze_what_one_statement_does_and_resume_after_a_crash() {
        let (dir, c, whole, chunked) = members_and_two_pushes(23);
        let args = [rusqlite::types::Value::Text("sim".into())];
        insert_from_sql(&c, whole, "m.channel = ?1", &args).unwrap();
        count_resolved(&c, whole).unwrap();
        // 23 members, 18 on "sim": chunks of 4, 4, 4, 4, 2.
        let mut c = c;
        let mut sizes = vec![];
        loop {
            let chunk = resolve_chunk(&c, chunked, "m.channel = ?1", &args, 4).unwrap();
            sizes.push(chunk.rows);
            if sizes.len() == 2 {
                // A crash between chunks: the next connection carries on
                // from what was committed.
                assert_eq!(resolved(&c, chunked), (false, Some(10)));
                drop(c);
                c = Connection::open(dir.path().join("d.db")).unwrap();
                register_functions(&c).unwrap();
            }
            if chunk.done {
                break;
            }
        }
        assert_eq!(sizes, vec![4, 4, 4, 4, 2]);
        assert_eq!(frozen(&c, chunked), frozen(&c, whole));
        assert_eq!(frozen(&c, chunked).len(), 18);
        assert_eq!(counters(&c, chunked), counters(&c, whole));
        assert_eq!(counters(&c, chunked), recount(&c, chunked));
        assert_eq!(resolved(&c, chunked), (true, Some(23)));
        // Once done, there is nothing more to freeze.
        assert_eq!(
            resolve_chunk(&c, chunked, "m.channel = ?1", &args, 4).unwrap(),
            Chunk {
                rows: 0,
                done: true
            }
        );
        assert_eq!(frozen(&c, chunked).len(), 18);
    }

    #[test]
    fn outcomes_between_chunks_keep_the_counters_exact() {
        let (_dir, c, _, p) = members_and_two_pushes(30);
        let first = resolve_chunk(&c, p, "1", &[], 8).unwrap();
        assert_eq!(
            first,
            Chunk {
                rows: 8,
                done: false
            }
        );
        // Sends of the first chunk end while the rest is frozen.
        let ids: Vec<DeliveryId> = pending_page(&c, p, 0, 100, false, false)
            .unwrap()
            .iter()
            .map(|r| r.delivery_id)
            .collect();
        let attempt = Attempt {
            channel: "sim".into(),
            sending_at: 5,
        };
        mark_failed(&c, ids[0], &attempt, ErrorClass::Rejected, "400", "bad", 6).unwrap();
        mark_skipped(&c, ids[1], "no channel").unwrap();
        assert_eq!(counters(&c, p), recount(&c, p));
        while !resolve_chunk(&c, p, "1", &[], 8).unwrap().done {}
        assert_eq!(frozen(&c, p).len(), 30);
        assert_eq!(counters(&c, p), recount(&c, p));
        let counts = pushes::counts(&c, p).unwrap();
        assert_eq!((counts.failed, counts.skipped, counts.total()), (1, 11, 30));
    }

    #[test]
    fn a_cancelled_push_freezes_no_more_chunks() {
        let (_dir, c, _, p) = members_and_two_pushes(30);
        resolve_chunk(&c, p, "1", &[], 8).unwrap();
        pushes::set_status(&c, p, pushes::PushStatus::Cancelled, None).unwrap();
        assert_eq!(
            resolve_chunk(&c, p, "1", &[], 8).unwrap(),
            Chunk {
                rows: 0,
                done: true
            }
        );
        assert_eq!(frozen(&c, p).len(), 8);
        assert_eq!(resolved(&c, p), (false, Some(8)));
    }
}
