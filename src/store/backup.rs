//! Online backup: a consistent copy of the live database, taken with
//! SQLite's backup API while pushes run.
//!
//! The copy is read on a connection of its own inside one read
//! transaction, so it is one snapshot (the moment the backup started) even
//! though the writer keeps committing: in WAL mode a reader never blocks
//! the writer, and the writer never restarts the backup (SQLite restarts a
//! backup only when its source changes between steps as seen by the
//! source connection, and an open read transaction sees no change). Pages
//! are copied [`PAGES_PER_STEP`] at a time with a short pause between
//! steps, so the copy does not take the disk from the writer for long. The
//! copy goes to `FILE.partial-PID` beside `FILE`, is checked
//! (`quick_check`), synced and renamed into place: `FILE` is complete or
//! absent, never half written.

use super::{Store, StoreError, open, schema};
use rusqlite::backup::{Backup, StepResult};
use rusqlite::{Connection, OpenFlags};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Pages copied per step (4 MB at SQLite's default 4 KiB pages).
const PAGES_PER_STEP: i32 = 1024;
/// The pause between steps: the writer's I/O goes first.
const PAUSE: Duration = Duration::from_millis(5);

/// What a backup wrote.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct BackupReport {
    pub path: String,
    pub bytes: u64,
    pub pages: i64,
    pub schema_version: i64,
    pub elapsed_ms: u64,
}

impl Store {
    /// Writes a consistent copy of the database to `dest` (an absolute
    /// path; replaced only with `overwrite`). Runs off the async runtime.
    pub async fn backup(&self, dest: PathBuf, overwrite: bool) -> Result<BackupReport, StoreError> {
        let source = self.path().to_path_buf();
        tokio::task::spawn_blocking(move || backup(&source, &dest, overwrite))
            .await
            .map_err(|e| StoreError::Io(format!("backup task failed: {e}")))?
    }
}

fn backup(source: &Path, dest: &Path, overwrite: bool) -> Result<BackupReport, StoreError> {
    let started = Instant::now();
    check_destination(source, dest, overwrite)?;
    let tmp = open::sidecar(dest, &format!(".partial-{}", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    let copied = copy_snapshot(source, &tmp).and_then(|pages| {
        let bytes = finish(&tmp, dest)?;
        Ok((pages, bytes))
    });
    let (pages, bytes) = match copied {
        Ok(v) => v,
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
    };
    Ok(BackupReport {
        path: dest.display().to_string(),
        bytes,
        pages,
        schema_version: schema::VERSION,
        elapsed_ms: started.elapsed().as_millis() as u64,
    })
}

/// Refuses a destination that is relative, in a missing folder, the live
/// database (or one of its files), or an existing file without `overwrite`.
fn check_destination(source: &Path, dest: &Path, overwrite: bool) -> Result<(), StoreError> {
    if !dest.is_absolute() {
        return Err(StoreError::Invalid(format!(
            "backup path {} is not absolute (the CLI makes it absolute; over the socket, send an absolute path)",
            dest.display()
        )));
    }
    let folder = dest.parent().unwrap_or(Path::new("/"));
    if !folder.is_dir() {
        return Err(StoreError::Invalid(format!(
            "cannot back up to {}: folder {} does not exist",
            dest.display(),
            folder.display()
        )));
    }
    let live = std::fs::canonicalize(source).unwrap_or_else(|_| source.to_path_buf());
    let target = std::fs::canonicalize(folder)
        .map(|f| f.join(dest.file_name().unwrap_or_default()))
        .unwrap_or_else(|_| dest.to_path_buf());
    let live_files = ["", "-wal", "-shm"].map(|s| open::sidecar(&live, s));
    if live_files.contains(&target) {
        return Err(StoreError::Invalid(format!(
            "{} is the live database (or one of its files); back up to another file",
            dest.display()
        )));
    }
    if dest.exists() && !overwrite {
        return Err(StoreError::Invalid(format!(
            "{} already exists; choose another name, or pass --force to replace it",
            dest.display()
        )));
    }
    Ok(())
}

/// Copies one snapshot of `source` into a new database at `tmp`; returns
/// the pages copied.
fn copy_snapshot(source: &Path, tmp: &Path) -> Result<i64, StoreError> {
    let src = Connection::open_with_flags(
        source,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    src.busy_timeout(Duration::from_secs(10))?;
    // The snapshot: every step reads inside this one read transaction.
    src.execute_batch("BEGIN")?;
    src.query_row("SELECT count(*) FROM sqlite_schema", [], |_| Ok(()))?;
    let mut dst = Connection::open(tmp).map_err(|e| {
        StoreError::Io(format!(
            "cannot create the backup file {}: {e}",
            tmp.display()
        ))
    })?;
    let pages = {
        let backup = Backup::new(&src, &mut dst)?;
        loop {
            match backup.step(PAGES_PER_STEP)? {
                StepResult::Done => break,
                // More to copy; or the destination was busy (nobody else
                // should have it open): let the writer have the disk a moment.
                _ => std::thread::sleep(PAUSE),
            }
        }
        backup.progress().pagecount as i64
    };
    src.execute_batch("COMMIT")?;
    // One self-contained file: no -wal to carry along with it.
    dst.pragma_update(None, "journal_mode", "DELETE")?;
    let check: String = dst.query_row("PRAGMA quick_check", [], |r| r.get(0))?;
    if check != "ok" {
        return Err(StoreError::Io(format!(
            "the backup copy failed its check ({check}) and was deleted; try again, and if it fails again the live database itself may be damaged (see docs/OPERATIONS.md)"
        )));
    }
    dst.close().map_err(|(_, e)| StoreError::from(e))?;
    Ok(pages)
}

/// Syncs the copy, renames it into place and syncs the folder; returns its size.
fn finish(tmp: &Path, dest: &Path) -> Result<u64, StoreError> {
    let io = |what: &str, e: std::io::Error| {
        StoreError::Io(format!("backup: cannot {what} {}: {e}", dest.display()))
    };
    let file = std::fs::File::open(tmp).map_err(|e| io("reopen the copy of", e))?;
    file.sync_all().map_err(|e| io("sync", e))?;
    let bytes = file.metadata().map_err(|e| io("stat", e))?.len();
    drop(file);
    std::fs::rename(tmp, dest).map_err(|e| io("rename the copy to", e))?;
    if let Some(folder) = dest.parent()
        && let Ok(dir) = std::fs::File::open(folder)
    {
        let _ = dir.sync_all();
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_backup_is_a_complete_copy_and_bad_destinations_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("live.db")).unwrap();
        store
            .write(|c| {
                c.execute_batch(
                    "INSERT INTO members (channel, channel_user_id, created_at, updated_at)
                     VALUES ('sim', 'a', 0, 0), ('sim', 'b', 0, 0)",
                )?;
                Ok(())
            })
            .await
            .unwrap();
        let dest = dir.path().join("copy.db");
        let report = store.backup(dest.clone(), false).await.unwrap();
        assert_eq!(report.schema_version, schema::VERSION);
        assert_eq!(report.bytes, std::fs::metadata(&dest).unwrap().len());
        let copy = Connection::open(&dest).unwrap();
        let n: i64 = copy
            .query_row("SELECT count(*) FROM members", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 2);
        let leftovers: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().contains(".partial"))
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
        // Refused: existing file, relative path, missing folder, the live file.
        let refusals = [
            (dest.clone(), "already exists"),
            (PathBuf::from("rel.db"), "not absolute"),
            (dir.path().join("no/such/x.db"), "does not exist"),
            (dir.path().join("live.db"), "live database"),
            (dir.path().join("live.db-wal"), "live database"),
        ];
        for (path, why) in refusals {
            let overwrite = why != "already exists";
            let e = store.backup(path, overwrite).await.unwrap_err();
            assert!(e.to_string().contains(why), "{why}: {e}");
        }
        // --force replaces.
        assert!(store.backup(dest, true).await.is_ok());
        store.close();
    }
}
