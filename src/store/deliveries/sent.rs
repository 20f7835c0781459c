//! `sending → sent` for a batch of deliveries in one statement, its values
//! handed to SQLite through plain C SQL functions.

use super::{SENT, encode};
use crate::model::{DeliveryId, Millis, PushId};
use crate::store::{Result, StoreError};
use rusqlite::{Connection, params};
use std::cell::RefCell;
use std::collections::{HashMap, HashSet};

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
