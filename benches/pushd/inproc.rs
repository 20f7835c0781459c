//! In-process measurements: the bare SQLite floor every store figure is
//! compared with, and audience resolution through the library's store.

use pushd::store::{Store, deliveries, pushes, schema};
use rusqlite::{Connection, OpenFlags, params};
use std::path::Path;
use std::time::{Duration, Instant};

/// One member as the bench writes it (CSV for pushd, rows for the baseline).
pub struct MemberRow {
    pub channel: String,
    pub user: String,
    pub name: String,
    pub locale: String,
    pub tags: Vec<String>,
}

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

/// A fresh database with pushd's schema, filled with `rows` by plain batched
/// prepared inserts (members + member_tags). Returns the insert time.
pub fn bare_insert_members(db: &Path, rows: &[MemberRow]) -> Duration {
    let _ = std::fs::remove_file(db);
    let mut conn = open_bare(db);
    schema::migrate(&mut conn).expect("schema");
    let now = 1_700_000_000_000i64;
    let t = Instant::now();
    let mut id = 0i64;
    for chunk in rows.chunks(BATCH) {
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
            for r in chunk {
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
    }
    t.elapsed()
}

pub struct Resolution {
    pub rows: u64,
    pub pushd: Duration,
    pub bare: Duration,
    /// The push pushd resolved.
    pub push: i64,
}

/// Every member → one delivery row: first a bare `INSERT … SELECT` on a
/// plain connection (then removed), then pushd's resolution steps through
/// its store writer (clear, insert from the audience SQL, counters, mark
/// resolved), exactly as the push runner performs them.
pub fn resolution(db: &Path) -> Resolution {
    let bare = {
        let conn = open_bare(db);
        let t = Instant::now();
        conn.execute_batch(
            "BEGIN;
             INSERT INTO deliveries (push_id, member_id, state)
                SELECT 999999, m.id, 0 FROM members m WHERE m.channel IN ('sim') ORDER BY m.id;
             COMMIT;",
        )
        .expect("bare insert-select");
        let took = t.elapsed();
        conn.execute_batch("DELETE FROM deliveries WHERE push_id = 999999;")
            .expect("cleanup");
        took
    };
    let store = Store::open(db).expect("open store");
    let new = pushes::NewPush {
        name: "resolution".into(),
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
    // As the runner does: the audience frozen in chunks, one writer job each.
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
    let took = t.elapsed();
    store.close();
    Resolution {
        rows,
        pushd: took,
        bare,
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
