//! The detailed report: one CSV row per recipient, streamed in chunks so a
//! million rows never sit in memory.

use crate::model::{PushId, fmt_ms};
use crate::store::{Result, Store, StoreError, export};

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
    "clicked_at",
    "variant",
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
pub fn stream(store: &Store, push: PushId, mut emit: impl FnMut(String) -> bool) -> Result<u64> {
    let buf = SharedBuf::default();
    let mut w = csv::WriterBuilder::new().from_writer(buf.clone());
    let csv_err = |e: csv::Error| StoreError::Sqlite(format!("csv: {e}"));
    w.write_record(HEADER).map_err(csv_err)?;
    let time = |v: Option<i64>| v.map(fmt_ms).unwrap_or_default();
    let mut stopped = false;
    let n = store.read_blocking(|c| {
        export::for_each_row(c, push, |r| {
            w.write_record([
                r.delivery_id.to_string(),
                r.member_id.to_string(),
                r.channel,
                r.channel_user_id,
                r.name,
                r.state,
                r.attempts.to_string(),
                r.error_class,
                r.error_code,
                r.error_message,
                r.skip_reason,
                r.provider_message_id,
                time(r.sent_at),
                time(r.delivered_at),
                time(r.read_at),
                time(r.interacted_at),
                time(r.failed_at),
                time(r.clicked_at),
                r.variant,
            ])
            .map_err(csv_err)?;
            if buf.len() >= CHUNK {
                w.flush().map_err(|e| StoreError::Io(e.to_string()))?;
                if !emit(buf.take()) {
                    stopped = true;
                    return Ok(false);
                }
            }
            Ok(true)
        })
    })?;
    if stopped {
        return Ok(n);
    }
    w.flush().map_err(|e| StoreError::Io(e.to_string()))?;
    let rest = buf.take();
    if !rest.is_empty() {
        emit(rest);
    }
    Ok(n)
}
