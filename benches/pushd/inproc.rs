//! In-process measurements: the bare SQLite floor every store figure is
//! compared with, and audience resolution through the library's store
//! beside a bare connection given the same plan, statements and cache.

use crate::fixtures::MemberRow;
use crate::stats::{Paired, a_first};
use pushd::store::{Store, deliveries, pushes, schema};
use rusqlite::{Connection, OpenFlags, params};
use std::path::Path;
use std::time::{Duration, Instant};

/// Rows per transaction in the bare baselines.
const BATCH: usize = 10_000;

fn open_bare(db: &Path) -> Connection {
    let conn = Connection::open(db).expect("open bare db");
    conn.pragma_update(None, "journal_mode", "WAL")
        .expect("wal");
    conn.pragma_update(None, "synchronous", "NORMAL")
        .expect("synchronous");
    conn
}

/// A plain connection set up as pushd's writer is (`store::configure`):
/// the writer's page cache (`store::WRITER_CACHE_KIB`), temp store in memory, synchronous NORMAL. It never
/// checkpoints inside a timed run (pushd moves that work to a thread of
/// its own; the floor leaves it out): [`bare_clear`] checkpoints between
/// runs, untimed.
pub fn open_like_writer(db: &Path) -> Connection {
    let conn = open_bare(db);
    conn.pragma_update(None, "temp_store", "MEMORY")
        .expect("temp_store");
    conn.pragma_update(None, "cache_size", -pushd::store::WRITER_CACHE_KIB)
        .expect("cache_size");
    conn.pragma_update(None, "wal_autocheckpoint", 0)
        .expect("wal_autocheckpoint");
    checkpoint(&conn);
    conn
}

fn checkpoint(conn: &Connection) {
    conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
        .expect("checkpoint");
}

/// A fresh database with pushd's schema, filled with `rows` by plain batched
/// prepared inserts (members + member_tags). Returns the time spent in the
/// transactions: each batch of rows is generated before its transaction
/// begins (memory stays flat at any size, and generating rows is not
/// SQLite's work).
pub fn bare_insert_members(db: &Path, rows: impl Iterator<Item = MemberRow>) -> Duration {
    let _ = std::fs::remove_file(db);
    let mut conn = open_bare(db);
    schema::migrate(&mut conn).expect("schema");
    let now = 1_700_000_000_000i64;
    let mut took = Duration::ZERO;
    let mut id = 0i64;
    let mut rows = rows.peekable();
    let mut batch = Vec::with_capacity(BATCH);
    while rows.peek().is_some() {
        batch.clear();
        batch.extend(rows.by_ref().take(BATCH));
        let t = Instant::now();
        let tx = conn.transaction().expect("begin");
        {
            let mut ins = tx
                .prepare_cached(
                    "INSERT INTO members (id, channel, channel_user_id, name, locale, tags, created_at, updated_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7)",
                )
                .expect("prepare");
            let mut tag = tx
                .prepare_cached("INSERT INTO member_tags (tag, member_id) VALUES (?1, ?2)")
                .expect("prepare");
            for r in &batch {
                id += 1;
                ins.execute(params![
                    id,
                    r.channel,
                    r.user,
                    r.name,
                    r.locale,
                    r.tags.join(";"),
                    now
                ])
                .expect("insert member");
                for tg in &r.tags {
                    tag.execute(params![tg, id]).expect("insert tag");
                }
            }
        }
        tx.commit().expect("commit");
        took += t.elapsed();
    }
    took
}

pub struct Resolution {
    pub rows: u64,
    /// pushd and the bare chunked statement, alternated.
    pub runs: Paired,
    /// One bare INSERT … SELECT of the whole audience (same plan), once.
    pub whole: Duration,
    /// The push pushd resolved last (its rows are kept).
    pub push: i64,
}

/// The statement pushd freezes a chunk with (`deliveries::resolve_chunk`):
/// members in id order, NOT INDEXED, after the last one frozen.
fn chunk_sql(push: i64, limit: Option<u32>) -> String {
    let limit = limit.map(|l| format!("LIMIT {l}")).unwrap_or_default();
    format!(
        "INSERT INTO deliveries (push_id, member_id, state, skip_reason)
         SELECT {push}, m.id,
                CASE WHEN m.subscribed THEN 0 ELSE 4 END,
                CASE WHEN m.subscribed THEN NULL ELSE 'unsubscribed' END
         FROM members m NOT INDEXED WHERE (m.channel IN ('sim')) AND m.id > ?1
         ORDER BY m.id {limit}"
    )
}

/// The push id the bare runs write under (removed after each run).
const BARE_PUSH: i64 = 999_999;

/// One bare chunk: BEGIN, the chunk's INSERT … SELECT, COMMIT; returns
/// (rows, the last member frozen).
pub fn bare_chunk(conn: &Connection, after: i64, limit: u32) -> (u64, i64) {
    conn.execute_batch("BEGIN").expect("begin");
    let rows = conn
        .prepare_cached(&chunk_sql(BARE_PUSH, Some(limit)))
        .expect("prepare chunk")
        .execute([after])
        .expect("bare chunk") as u64;
    let last = if rows > 0 {
        conn.prepare_cached("SELECT member_id FROM deliveries WHERE id = ?1")
            .expect("prepare last member")
            .query_row([conn.last_insert_rowid()], |r| r.get(0))
            .expect("last member")
    } else {
        after
    };
    conn.execute_batch("COMMIT").expect("commit");
    (rows, last)
}

/// Removes the bare run's rows and empties the WAL (untimed).
pub fn bare_clear(conn: &Connection) {
    conn.execute("DELETE FROM deliveries WHERE push_id = ?1", [BARE_PUSH])
        .expect("cleanup");
    checkpoint(conn);
}

/// The whole audience frozen by the bare connection in chunks of
/// `RESOLVE_CHUNK` (as pushd does), then removed.
fn bare_chunked(conn: &Connection) -> (Duration, u64) {
    let t = Instant::now();
    let (mut rows, mut after) = (0, 0);
    loop {
        let (n, last) = bare_chunk(conn, after, deliveries::RESOLVE_CHUNK);
        rows += n;
        after = last;
        if n < deliveries::RESOLVE_CHUNK as u64 {
            break;
        }
    }
    let took = t.elapsed();
    bare_clear(conn);
    (took, rows)
}

/// pushd's resolution steps through its store writer (a new push; chunks
/// with their counters and `resolved_through`, one writer job each), exactly
/// as the push runner performs them.
fn pushd_resolve(store: &Store, run: usize) -> (Duration, u64, i64) {
    let new = pushes::NewPush {
        name: format!("resolution-{run}"),
        origin: "cli".into(),
        audience: "sim".into(),
        template: "hello".into(),
        ..Default::default()
    };
    let push = store
        .write_blocking(move |c| pushes::create(c, &new))
        .expect("create push")
        .id;
    store
        .write_blocking(move |c| pushes::mark_started(c, push, None, None))
        .expect("start push");
    let t = Instant::now();
    let mut rows = 0;
    loop {
        let args = vec![pushd::model::SqlValue::Text("sim".into())];
        let chunk = store
            .write_blocking(move |c| {
                deliveries::resolve_chunk(
                    c,
                    push,
                    "m.channel IN (?1)",
                    &args,
                    deliveries::RESOLVE_CHUNK,
                )
            })
            .expect("resolve chunk");
        rows += chunk.rows;
        if chunk.done {
            break;
        }
    }
    (t.elapsed(), rows, push)
}

/// Every member → one delivery row, `pairs` times each way in alternating
/// order: pushd (its store, its plan) and a bare connection with the same
/// plan, statement, chunking and page cache. The pushd rows of every run
/// but the last are removed (untimed) so each run starts from the same
/// database.
pub fn resolution(db: &Path, pairs: usize) -> Resolution {
    let bare = open_like_writer(db);
    let store = Store::open(db).expect("open store");
    let mut runs = Paired::default();
    let (mut rows, mut push) = (0, 0);
    for i in 0..pairs {
        let mut pushd_run = || {
            let (took, n, p) = pushd_resolve(&store, i);
            (rows, push) = (n, p);
            took
        };
        let (pushd_took, bare_took) = if a_first(i) {
            let b = bare_chunked(&bare);
            (pushd_run(), b)
        } else {
            let p = pushd_run();
            (p, bare_chunked(&bare))
        };
        assert_eq!(
            bare_took.1, rows,
            "bare and pushd froze different audiences"
        );
        runs.push(pushd_took, bare_took.0);
        if i + 1 < pairs {
            store
                .write_blocking(move |c| deliveries::restart_resolution(c, push))
                .expect("clear run");
        }
    }
    let whole = {
        let t = Instant::now();
        bare.execute_batch("BEGIN").expect("begin");
        bare.execute(&chunk_sql(BARE_PUSH, None), [0])
            .expect("bare whole");
        bare.execute_batch("COMMIT").expect("commit");
        let took = t.elapsed();
        bare_clear(&bare);
        took
    };
    store.close();
    Resolution {
        rows,
        runs,
        whole,
        push,
    }
}

/// The raw cost of recording one outcome per recipient: batched prepared
/// `UPDATE … WHERE id = ?` by primary key, no triggers.
pub fn bare_update_deliveries(db: &Path, push: i64) -> Duration {
    let mut conn = open_bare(db);
    conn.execute_batch(
        "DROP TRIGGER IF EXISTS deliveries_count_update; DROP TRIGGER IF EXISTS deliveries_count_delete;",
    )
    .expect("drop triggers");
    let ids: Vec<i64> = {
        let mut stmt = conn
            .prepare("SELECT id FROM deliveries WHERE push_id = ?1 ORDER BY id")
            .expect("prepare");
        stmt.query_map([push], |r| r.get(0))
            .expect("ids")
            .collect::<rusqlite::Result<_>>()
            .expect("ids")
    };
    let t = Instant::now();
    for chunk in ids.chunks(BATCH) {
        let tx = conn.transaction().expect("begin");
        {
            let mut up = tx
                .prepare_cached(
                    "UPDATE deliveries SET state = 2, provider_message_id = ?2, sent_at = ?3, updated_at = ?3 WHERE id = ?1",
                )
                .expect("prepare");
            for id in chunk {
                up.execute(params![id, format!("sim.{id}.1"), 1_700_000_000_000i64])
                    .expect("update");
            }
        }
        tx.commit().expect("commit");
    }
    t.elapsed()
}

fn open_ro(db: &Path) -> Connection {
    Connection::open_with_flags(db, OpenFlags::SQLITE_OPEN_READ_ONLY).expect("open read-only")
}

pub fn count(db: &Path, sql: &str) -> u64 {
    open_ro(db)
        .query_row(sql, [], |r| r.get::<_, i64>(0))
        .expect("count") as u64
}

/// (provider message id, recipient) of every delivery of `push`, in id order.
pub fn sent_messages(db: &Path, push: i64) -> Vec<(String, String)> {
    let conn = open_ro(db);
    let mut stmt = conn
        .prepare(
            "SELECT d.provider_message_id, m.channel_user_id FROM deliveries d
             JOIN members m ON m.id = d.member_id WHERE d.push_id = ?1 ORDER BY d.id",
        )
        .expect("prepare");
    stmt.query_map([push], |r| Ok((r.get(0)?, r.get(1)?)))
        .expect("query")
        .collect::<rusqlite::Result<_>>()
        .expect("read sent messages")
}

/// What a report would cost without maintained counters: one GROUP BY over
/// the push's deliveries (best of 3).
pub fn group_by_scan(db: &Path, push: i64) -> Duration {
    let conn = open_ro(db);
    (0..3)
        .map(|_| {
            let t = Instant::now();
            let mut stmt = conn
                .prepare(
                    "SELECT state, read_at IS NOT NULL, interacted_at IS NOT NULL, count(*)
                     FROM deliveries WHERE push_id = ?1 GROUP BY 1, 2, 3",
                )
                .expect("prepare");
            let n = stmt
                .query_map([push], |r| r.get::<_, i64>(3))
                .expect("query")
                .map(|r| r.expect("row"))
                .sum::<i64>();
            assert!(n > 0);
            t.elapsed()
        })
        .min()
        .unwrap_or_default()
}

/// The same join the export streams, written with the csv crate straight to
/// a file from a plain connection.
pub fn bare_export(db: &Path, push: i64, out: &Path) -> Duration {
    let conn = open_ro(db);
    let t = Instant::now();
    let mut w = csv::Writer::from_path(out).expect("create csv");
    let mut stmt = conn
        .prepare(
            "SELECT d.id, d.member_id, coalesce(d.channel, m.channel), m.channel_user_id, m.name, d.state, d.attempts,
                    d.error_class, d.error_code, d.error_message, d.skip_reason, d.provider_message_id,
                    d.sent_at, d.delivered_at, d.read_at, d.interacted_at, d.failed_at
             FROM deliveries d JOIN members m ON m.id = d.member_id
             WHERE d.push_id = ?1 ORDER BY d.id",
        )
        .expect("prepare");
    let mut rows = stmt.query([push]).expect("query");
    let mut fields: Vec<String> = Vec::with_capacity(17);
    while let Some(r) = rows.next().expect("row") {
        fields.clear();
        for i in 0..17 {
            let v: rusqlite::types::Value = r.get(i).expect("value");
            fields.push(match v {
                rusqlite::types::Value::Null => String::new(),
                rusqlite::types::Value::Integer(n) => n.to_string(),
                rusqlite::types::Value::Real(x) => x.to_string(),
                rusqlite::types::Value::Text(s) => s,
                rusqlite::types::Value::Blob(_) => String::new(),
            });
        }
        w.write_record(&fields).expect("write");
    }
    w.flush().expect("flush");
    t.elapsed()
}
