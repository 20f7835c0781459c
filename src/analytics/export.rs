//! The detailed report: one CSV row per recipient, streamed in chunks so a
//! million rows never sit in memory.

use crate::model::{DeliveryState, PushId, fmt_ms};
use crate::store::{Result, StoreError, deliveries};
use rusqlite::Connection;

pub const HEADER: &[&str] = &[
    "delivery_id",
    "member_id",
    "channel",
    "channel_user_id",
    "name",
    "state",
    "attempts",
    "error_class",
    "error_code",
    "error_message",
    "skip_reason",
    "provider_message_id",
    "sent_at",
    "delivered_at",
    "read_at",
    "interacted_at",
    "failed_at",
];

/// Bytes per chunk handed to `emit`.
const CHUNK: usize = 64 * 1024;

/// A buffer the CSV writer appends to and the streamer drains.
#[derive(Clone, Default)]
struct SharedBuf(std::rc::Rc<std::cell::RefCell<Vec<u8>>>);

impl std::io::Write for SharedBuf {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.borrow_mut().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl SharedBuf {
    fn len(&self) -> usize {
        self.0.borrow().len()
    }
    fn take(&self) -> String {
        let bytes = std::mem::take(&mut *self.0.borrow_mut());
        String::from_utf8_lossy(&bytes).into_owned()
    }
}

/// Writes the CSV in chunks; `emit` returns false to stop (client gone).
/// Returns the number of rows written.
pub fn stream(
    conn: &Connection,
    push: PushId,
    mut emit: impl FnMut(String) -> bool,
) -> Result<u64> {
    let buf = SharedBuf::default();
    let mut w = csv::WriterBuilder::new().from_writer(buf.clone());
    let csv_err = |e: csv::Error| StoreError::Sqlite(format!("csv: {e}"));
    w.write_record(HEADER).map_err(csv_err)?;
    // Walk the push's id range in rowid order rather than its (push, state)
    // index: through the index the rows come grouped by state, and putting
    // a million of them back in id order is an in-memory sort the size of
    // the export. A push's deliveries are inserted together, so its range
    // holds few rows of other pushes.
    let (first, last): (Option<i64>, Option<i64>) = conn
        .prepare_cached("SELECT min(id), max(id) FROM deliveries WHERE push_id = ?1")?
        .query_row([push], |r| Ok((r.get(0)?, r.get(1)?)))?;
    let mut stmt = conn.prepare(&format!(
        "SELECT d.id, d.member_id, coalesce(d.channel, m.channel), m.channel_user_id, m.name, {}, d.attempts,
                d.error_class, d.error_code, d.error_message, d.skip_reason, d.provider_message_id,
                d.sent_at, d.delivered_at, d.read_at, d.interacted_at, d.failed_at
         FROM deliveries d NOT INDEXED JOIN members m ON m.id = d.member_id
         WHERE d.id BETWEEN ?2 AND ?3 AND d.push_id = ?1 ORDER BY d.id",
        deliveries::STATE_SQL
    ))?;
    let mut rows = stmt.query(rusqlite::params![
        push,
        first.unwrap_or(0),
        last.unwrap_or(-1)
    ])?;
    let mut n = 0u64;
    let time = |v: Option<i64>| v.map(fmt_ms).unwrap_or_default();
    while let Some(r) = rows.next()? {
        let state: i64 = r.get(5)?;
        let opt = |i: usize| -> rusqlite::Result<String> {
            Ok(r.get::<_, Option<String>>(i)?.unwrap_or_default())
        };
        w.write_record([
            r.get::<_, i64>(0)?.to_string(),
            r.get::<_, i64>(1)?.to_string(),
            opt(2)?,
            opt(3)?,
            opt(4)?,
            DeliveryState::from_code(state)
                .map(|s| s.as_str().to_string())
                .unwrap_or_else(|| state.to_string()),
            r.get::<_, i64>(6)?.to_string(),
            opt(7)?,
            opt(8)?,
            opt(9)?,
            opt(10)?,
            opt(11)?,
            time(r.get(12)?),
            time(r.get(13)?),
            time(r.get(14)?),
            time(r.get(15)?),
            time(r.get(16)?),
        ])
        .map_err(csv_err)?;
        n += 1;
        if buf.len() >= CHUNK {
            w.flush().map_err(|e| StoreError::Io(e.to_string()))?;
            if !emit(buf.take()) {
                return Ok(n);
            }
        }
    }
    w.flush().map_err(|e| StoreError::Io(e.to_string()))?;
    let rest = buf.take();
    if !rest.is_empty() {
        emit(rest);
    }
    Ok(n)
}
