//! The SQLite store: WAL, versioned schema, one writer thread that groups
//! writes into transactions, and a small pool of read-only connections so
//! reads never wait on the writer.

pub mod audiences;
pub mod audit;
mod backup;
mod checkpoint;
pub mod deliveries;
pub mod events;
pub mod export;
pub mod failures;
mod health;
pub mod links;
pub mod members;
pub mod open;
pub mod panel;
pub mod policy;
pub mod pushes;
pub mod receipts;
pub mod recipients;
pub mod recorder;
pub mod schema;
pub mod scripts;
pub mod variants;
mod writer;

use rusqlite::{Connection, OpenFlags};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

pub use backup::BackupReport;
use checkpoint::Checkpointer;
pub use writer::Writer;

#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    #[error("database is full (disk or quota): {0}")]
    Full(String),
    #[error("database is read-only: {0}")]
    ReadOnly(String),
    #[error("database I/O error: {0}")]
    Io(String),
    #[error("database error: {0}")]
    Sqlite(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Invalid(String),
    #[error("the store is shutting down")]
    Closed,
    /// The database must not be opened as it is (corrupt, newer schema,
    /// unwritable at start); the message says why and what to do.
    #[error("{0}")]
    Refused(String),
}

impl StoreError {
    /// Errors the operator fixes on the machine (space, permissions), after
    /// which pausing work and retrying is the right response.
    pub fn is_storage_fault(&self) -> bool {
        matches!(
            self,
            StoreError::Full(_) | StoreError::ReadOnly(_) | StoreError::Io(_)
        )
    }
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        use rusqlite::ffi::ErrorCode;
        let text = e.to_string();
        match e.sqlite_error_code() {
            Some(ErrorCode::DiskFull) => StoreError::Full(text),
            Some(ErrorCode::ReadOnly) | Some(ErrorCode::CannotOpen) => StoreError::ReadOnly(text),
            Some(ErrorCode::SystemIoFailure) => {
                // SQLite reports ENOSPC during WAL growth as an I/O error.
                if text.to_ascii_lowercase().contains("full") {
                    StoreError::Full(text)
                } else {
                    StoreError::Io(text)
                }
            }
            _ => StoreError::Sqlite(text),
        }
    }
}

pub type Result<T> = std::result::Result<T, StoreError>;

impl rusqlite::ToSql for crate::model::SqlValue {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        use crate::model::SqlValue;
        use rusqlite::types::{ToSqlOutput, ValueRef};
        Ok(ToSqlOutput::Borrowed(match self {
            SqlValue::Integer(i) => ValueRef::Integer(*i),
            SqlValue::Real(r) => ValueRef::Real(*r),
            SqlValue::Text(t) => ValueRef::Text(t.as_bytes()),
        }))
    }
}

/// Handle to the database; cheap to clone.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    path: PathBuf,
    readers: Mutex<Vec<Connection>>,
    writer: Writer,
    checkpointer: Checkpointer,
    health: health::Health,
}

/// Page cache of the writer's connection, in KiB. 8 MB: with 16 MB the
/// c=256 WhatsApp push peaked at 60–66 MB, with 8 MB at 52–58 MB, and
/// resolution, import and core overhead were as fast or faster (the WAL's
/// pages are in the OS cache anyway); see docs/PERFORMANCE.md. The bench's
/// bare baselines use the same size.
pub const WRITER_CACHE_KIB: i64 = 8_000;
/// Page cache of each read connection, in KiB. A reader's cache starts
/// empty whenever the writer has committed since its last read (always, on
/// a busy daemon), so it only helps within one read: a long one (an export)
/// would grow a writer-sized cache and keep that memory. 4 MB holds any
/// query's B-tree interior pages.
const READER_CACHE_KIB: i64 = 4_000;

fn configure(conn: &Connection, cache_kib: i64) -> rusqlite::Result<()> {
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    conn.pragma_update(None, "foreign_keys", false)?;
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    conn.pragma_update(None, "temp_store", "MEMORY")?;
    conn.pragma_update(None, "cache_size", -cache_kib)?;
    conn.set_prepared_statement_cache_capacity(64);
    Ok(())
}

impl Store {
    /// Opens (creating if needed) the database, migrates it and starts the writer.
    pub fn open(path: &Path) -> Result<Store> {
        if let Some(dir) = path.parent()
            && !dir.as_os_str().is_empty()
        {
            std::fs::create_dir_all(dir).map_err(|e| {
                StoreError::Refused(format!(
                    "cannot create the data folder {} ({e}): create it, or fix the permissions of the folder above it",
                    dir.display()
                ))
            })?;
        }
        match open::preflight(path, open::QUICK_CHECK_BUDGET)? {
            open::Checked::Partly => tracing::warn!(
                database = %path.display(),
                budget_secs = open::QUICK_CHECK_BUDGET.as_secs(),
                "quick_check ran out of time on a large database: it was only partly checked (nothing wrong found so far)"
            ),
            open::Checked::Ok => tracing::debug!(database = %path.display(), "quick_check ok"),
            open::Checked::New => {}
        }
        let mut conn = Connection::open(path)
            .map_err(|e| StoreError::Io(format!("cannot open {}: {e}", path.display())))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        configure(&conn, WRITER_CACHE_KIB)?;
        // The frames are copied back by a thread of its own (`checkpoint`);
        // the writer's checkpoint, every 10,000 WAL pages (~40 MB) rather
        // than 1,000, copies what that left and restarts the WAL. (Rarer
        // checkpoints copy the hot index pages fewer times: +3-5 %
        // recipients/s in the core bench.)
        conn.pragma_update(None, "wal_autocheckpoint", 10_000)?;
        schema::migrate(&mut conn)?;
        // Only the writer runs the statements that need them.
        deliveries::register_functions(&conn)?;
        variants::register_functions(&conn)?;
        let writer = Writer::start(conn)?;
        let checkpointer = Checkpointer::start(path)?;
        Ok(Store {
            inner: Arc::new(Inner {
                path: path.to_path_buf(),
                readers: Mutex::new(Vec::new()),
                writer,
                checkpointer,
                health: Default::default(),
            }),
        })
    }

    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    pub fn writer(&self) -> &Writer {
        &self.inner.writer
    }

    /// Runs `f` inside the writer's current transaction; resolves once committed.
    pub async fn write<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T> + Send + 'static,
    {
        self.inner.writer.run(f).await
    }

    /// [`Store::write`] committed ahead of ordinary writes queued with it
    /// (see [`writer::Writer::run_first`]).
    pub async fn write_first<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T> + Send + 'static,
    {
        self.inner.writer.run_first(f).await
    }

    /// Blocking form of [`Store::write`], for threads outside the runtime.
    pub fn write_blocking<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T> + Send + 'static,
    {
        self.inner.writer.run_blocking(f)
    }

    fn take_reader(&self) -> Result<Connection> {
        if let Some(c) = self.inner.readers.lock().map_err(poisoned)?.pop() {
            return Ok(c);
        }
        let conn = Connection::open_with_flags(
            &self.inner.path,
            OpenFlags::SQLITE_OPEN_READ_ONLY
                | OpenFlags::SQLITE_OPEN_NO_MUTEX
                | OpenFlags::SQLITE_OPEN_URI,
        )?;
        configure(&conn, READER_CACHE_KIB)?;
        Ok(conn)
    }

    fn put_reader(&self, conn: Connection) {
        if let Ok(mut pool) = self.inner.readers.lock()
            && pool.len() < 8
        {
            pool.push(conn);
        }
    }

    /// Runs a read on a pooled read-only connection, on the calling thread.
    pub fn read_blocking<T>(&self, f: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
        let conn = self.take_reader()?;
        let out = f(&conn);
        self.put_reader(conn);
        out
    }

    /// Runs a read off the async runtime's worker threads.
    pub async fn read<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T> + Send + 'static,
    {
        let store = self.clone();
        tokio::task::spawn_blocking(move || store.read_blocking(f))
            .await
            .map_err(|e| StoreError::Sqlite(format!("read task failed: {e}")))?
    }

    /// Runs `f` over every item in one write; if that write fails, once
    /// more per item in a write of its own, so one item's failure never
    /// costs the others theirs. One result per item, in order.
    pub async fn write_each<T, R>(
        &self,
        items: Vec<T>,
        f: fn(&Connection, &T) -> Result<R>,
    ) -> Vec<Result<R>>
    where
        T: Send + Sync + 'static,
        R: Send + 'static,
    {
        let items = Arc::new(items);
        let all = items.clone();
        let together = self
            .write(move |c| {
                all.iter()
                    .map(|item| f(c, item))
                    .collect::<Result<Vec<R>>>()
            })
            .await;
        match together {
            Ok(results) => results.into_iter().map(Ok).collect(),
            Err(e) if items.len() == 1 => vec![Err(e)],
            Err(_) => {
                let mut results = Vec::with_capacity(items.len());
                for i in 0..items.len() {
                    let items = items.clone();
                    results.push(self.write(move |c| f(c, &items[i])).await);
                }
                results
            }
        }
    }

    /// Caps the database size (`None` lifts the cap). Writes that would grow
    /// the file past it fail as `Full`.
    pub async fn set_size_limit(&self, mb: Option<u64>) -> Result<()> {
        self.write(move |c| {
            let page_size: i64 = c.query_row("PRAGMA page_size", [], |r| r.get(0))?;
            let pages = match mb {
                Some(mb) => ((mb as i64 * 1024 * 1024) / page_size.max(512)).max(1),
                None => 1_073_741_823, // SQLite's default maximum
            };
            c.query_row(&format!("PRAGMA max_page_count = {pages}"), [], |_| Ok(()))?;
            Ok(())
        })
        .await
    }

    /// Waits for queued writes to commit and stops the writer. The pooled
    /// readers close first, so the writer's connection is the last one:
    /// SQLite then copies the whole WAL into the database file and deletes
    /// it, and a stopped daemon leaves one self-contained file (which an
    /// operator may copy as it is).
    pub fn close(&self) {
        self.inner.checkpointer.close();
        if let Ok(mut readers) = self.inner.readers.lock() {
            readers.clear();
        }
        self.inner.writer.close();
    }
}

/// Stops a store thread that runs until its channel's sender is gone:
/// drops the sender, then waits for the thread to end.
fn stop_and_join<T>(
    sender: &Mutex<Option<T>>,
    thread: &Mutex<Option<std::thread::JoinHandle<()>>>,
) {
    if let Ok(mut tx) = sender.lock() {
        tx.take();
    }
    if let Ok(mut t) = thread.lock()
        && let Some(handle) = t.take()
    {
        let _ = handle.join();
    }
}

fn poisoned<T>(_: std::sync::PoisonError<T>) -> StoreError {
    StoreError::Sqlite("connection pool lock poisoned".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Readers get the small cache, the writer the large one (an export
    /// through a reader keeps at most 4 MB of pages).
    #[test]
    fn readers_keep_a_smaller_page_cache_than_the_writer() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("s.db")).unwrap();
        let cache = |c: &Connection| -> Result<i64> {
            Ok(c.query_row("PRAGMA cache_size", [], |r| r.get(0))?)
        };
        assert_eq!(store.read_blocking(cache).unwrap(), -READER_CACHE_KIB);
        assert_eq!(store.write_blocking(cache).unwrap(), -WRITER_CACHE_KIB);
        store.close();
    }

    fn insert(c: &Connection, n: &i64) -> Result<i64> {
        c.execute("INSERT INTO members (id, channel, channel_user_id, name, locale, tags, created_at, updated_at)
                   VALUES (?1, 'sim', ?1, '', 'en', '', 0, 0)", [n])?;
        if *n == 13 {
            // Fails after writing: its own write must be undone, nobody else's.
            return Err(StoreError::Invalid("unlucky".into()));
        }
        Ok(*n)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failing_item_fails_alone_and_the_rest_commit() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("b.db")).unwrap();
        let ok = store.write_each(vec![1i64, 2, 3], insert).await;
        assert_eq!(
            ok.into_iter().map(|r| r.unwrap()).collect::<Vec<_>>(),
            vec![1, 2, 3]
        );
        let mixed = store.write_each(vec![11i64, 12, 13, 14], insert).await;
        let flags: Vec<bool> = mixed.iter().map(|r| r.is_ok()).collect();
        assert_eq!(flags, vec![true, true, false, true]);
        let ids: Vec<i64> = store
            .read(|c| {
                Ok(c.prepare("SELECT id FROM members ORDER BY id")?
                    .query_map([], |r| r.get(0))?
                    .collect::<rusqlite::Result<_>>()?)
            })
            .await
            .unwrap();
        assert_eq!(ids, vec![1, 2, 3, 11, 12, 14]);
        store.close();
    }
}
