//! WAL checkpoints off the writer's thread. SQLite's own checkpoint runs
//! inside the commit that crosses `wal_autocheckpoint` and copies every WAL
//! frame not yet in the database file: tens of milliseconds in which no
//! claim commits and sends bunch up behind it. A thread of its own copies
//! the frames every [`INTERVAL`] with a PASSIVE checkpoint (it never waits
//! for the writer or the readers), so the writer's checkpoint, still there
//! to restart the WAL, finds almost everything already copied.

use super::{Result, StoreError};
use rusqlite::Connection;
use std::path::Path;
use std::sync::Mutex;
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Duration;

/// How often the frames committed meanwhile are copied back.
const INTERVAL: Duration = Duration::from_millis(250);

pub struct Checkpointer {
    stop: Mutex<Option<mpsc::Sender<()>>>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl Checkpointer {
    pub(super) fn start(path: &Path) -> Result<Checkpointer> {
        let conn = Connection::open(path)
            .map_err(|e| StoreError::Io(format!("cannot open {}: {e}", path.display())))?;
        conn.busy_timeout(Duration::from_secs(10))?;
        // It copies frames; it caches nothing.
        conn.pragma_update(None, "cache_size", 16)?;
        let (stop, stopped) = mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("pushd-checkpoint".into())
            .spawn(move || {
                while let Err(mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(INTERVAL) {
                    if let Err(e) = checkpoint(&conn) {
                        // A full disk or a busy database: the writer's own
                        // checkpoint and storage-fault handling cover it.
                        tracing::debug!(error = %e, "background checkpoint");
                    }
                }
            })
            .map_err(|e| StoreError::Io(format!("cannot start checkpoint thread: {e}")))?;
        Ok(Checkpointer {
            stop: Mutex::new(Some(stop)),
            thread: Mutex::new(Some(thread)),
        })
    }

    /// Stops the thread (before the writer closes, whose connection then
    /// checkpoints the rest and removes the WAL).
    pub fn close(&self) {
        super::stop_and_join(&self.stop, &self.thread);
    }
}

/// One PASSIVE checkpoint: copies what it can without waiting for anyone.
fn checkpoint(conn: &Connection) -> rusqlite::Result<()> {
    conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))
}

#[cfg(test)]
mod tests {
    use crate::store::Store;
    use std::time::{Duration, Instant};

    #[test]
    fn committed_frames_reach_the_database_file_without_the_writer() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.db");
        let store = Store::open(&path).unwrap();
        let size = || std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        let before = size();
        // ~4 MB of frames: far below the writer's own checkpoint (10,000 pages).
        store
            .write_blocking(|c| {
                c.execute_batch(
                    "CREATE TABLE filler (x TEXT);
                     WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 2000)
                     INSERT INTO filler SELECT printf('%.2000c', 'x') FROM n;",
                )?;
                Ok(())
            })
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        while size() < before + 4_000_000 {
            assert!(
                Instant::now() < deadline,
                "database file still {} bytes (was {before})",
                size()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        store.close();
    }
}
