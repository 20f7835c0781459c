//! The checks made before the daemon writes a byte to its database: the
//! folder and the files can be written, the schema is not from a newer
//! pushd, and the file is not corrupt (`PRAGMA quick_check`, within a time
//! budget). Each runs on a read-only connection, so a database refused here
//! is left exactly as it was found (byte for byte), and each refusal names
//! the file and what to do.

use super::{StoreError, schema};
use rusqlite::{Connection, OpenFlags};
use std::path::Path;
use std::time::{Duration, Instant};

/// How long `quick_check` may run at start. It reads every page (0.8 s
/// for a 90 MB file here, warm), so a database past about a GB is only
/// partly checked: the log says so, and the daemon starts anyway — refusing
/// to start on a healthy database because it is large would be worse.
pub const QUICK_CHECK_BUDGET: Duration = Duration::from_secs(10);

/// What the start-up quick check found (a corrupt file is an error instead).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Checked {
    /// No database yet: nothing to check.
    New,
    /// `quick_check` answered ok.
    Ok,
    /// The budget ran out before `quick_check` finished (nothing wrong found so far).
    Partly,
}

/// Everything that must hold before the database is opened for writing.
pub fn preflight(path: &Path, budget: Duration) -> Result<Checked, StoreError> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    check_dir_writable(dir, path)?;
    if !path.exists() {
        return Ok(Checked::New);
    }
    for file in [
        path.to_path_buf(),
        sidecar(path, "-wal"),
        sidecar(path, "-shm"),
    ] {
        check_file_writable(&file)?;
    }
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| classify(path, e))?;
    conn.busy_timeout(Duration::from_secs(10))
        .map_err(|e| classify(path, e))?;
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(|e| classify(path, e))?;
    if version > schema::VERSION {
        return Err(StoreError::Refused(format!(
            "database {} has schema version {version}, newer than this pushd understands ({}): it was written by a newer pushd. Run that version (or newer), or restore a backup made by this one; the file was not changed",
            path.display(),
            schema::VERSION
        )));
    }
    quick_check(conn, path, budget)
}

/// `path` + `suffix` (SQLite's `-wal` and `-shm` files).
pub fn sidecar(path: &Path, suffix: &str) -> std::path::PathBuf {
    let mut s = path.as_os_str().to_os_string();
    s.push(suffix);
    s.into()
}

/// Runs `PRAGMA quick_check` until it ends or `budget` runs out.
fn quick_check(mut conn: Connection, path: &Path, budget: Duration) -> Result<Checked, StoreError> {
    let deadline = Instant::now() + budget;
    // Asked every 10,000 VM steps (well under a millisecond): returning true
    // interrupts the check.
    conn.progress_handler(10_000, Some(move || Instant::now() >= deadline))
        .map_err(|e| classify(path, e))?;
    let rows: rusqlite::Result<Vec<String>> = conn
        .prepare("PRAGMA quick_check(20)")
        .and_then(|mut s| s.query_map([], |r| r.get(0))?.collect());
    match rows {
        Ok(rows) if rows.len() == 1 && rows[0] == "ok" => Ok(Checked::Ok),
        Ok(rows) => Err(corrupt(path, &rows.join("; "))),
        Err(e) if e.sqlite_error_code() == Some(rusqlite::ErrorCode::OperationInterrupted) => {
            Ok(Checked::Partly)
        }
        Err(e) => Err(classify(path, e)),
    }
}

/// The refusal for a corrupt file, with the way back.
pub fn corrupt(path: &Path, detail: &str) -> StoreError {
    let p = path.display();
    StoreError::Refused(format!(
        "database {p} is corrupt ({detail}); pushd will not run on it. Restore the latest copy made with `pushd backup FILE`: stop pushd, delete {p}-wal and {p}-shm, copy the backup to {p}, start pushd. (To salvage what is still readable instead: `sqlite3 {p} .recover | sqlite3 recovered.db`.)"
    ))
}

/// An error met while reading the database at start, in the operator's terms.
fn classify(path: &Path, e: rusqlite::Error) -> StoreError {
    use rusqlite::ErrorCode;
    match e.sqlite_error_code() {
        Some(ErrorCode::DatabaseCorrupt | ErrorCode::NotADatabase) => corrupt(path, &e.to_string()),
        Some(ErrorCode::ReadOnly | ErrorCode::CannotOpen | ErrorCode::PermissionDenied) => {
            StoreError::Refused(format!(
                "cannot open database {} ({e}): pushd must be able to read and write it and create files beside it; fix the permissions (chown/chmod) or point [daemon] data_dir / database elsewhere",
                path.display()
            ))
        }
        _ => StoreError::from(e),
    }
}

/// The folder must take new files: SQLite creates `-wal` and `-shm` there.
fn check_dir_writable(dir: &Path, db: &Path) -> Result<(), StoreError> {
    let probe = dir.join(format!(".pushd-write-check-{}", std::process::id()));
    let open = || {
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&probe)
    };
    let made = match open() {
        // Left by a crash of a process with this pid: it proves nothing.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            let _ = std::fs::remove_file(&probe);
            open()
        }
        other => other,
    };
    match made {
        Ok(_) => {
            let _ = std::fs::remove_file(&probe);
            Ok(())
        }
        Err(e) => Err(StoreError::ReadOnly(format!(
            "folder {} is not writable by this process ({}; uid {}): pushd keeps {} and its -wal and -shm files there. Fix the folder's owner or permissions, or remount it read-write",
            dir.display(),
            e,
            uid(),
            db.file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
        ))),
    }
}

/// An existing file must open for writing (without changing it).
fn check_file_writable(file: &Path) -> Result<(), StoreError> {
    match std::fs::OpenOptions::new().write(true).open(file) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(StoreError::ReadOnly(format!(
            "{} is read-only for this process ({}; uid {}): pushd must write it. Fix its owner or permissions (chown/chmod, chattr -i), or remount its file system read-write",
            file.display(),
            e,
            uid()
        ))),
    }
}

fn uid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn db_with(dir: &Path, sql: &str) -> std::path::PathBuf {
        let path = dir.join("t.db");
        let c = Connection::open(&path).unwrap();
        c.execute_batch(sql).unwrap();
        path
    }

    #[test]
    fn a_healthy_database_passes_and_a_new_one_is_new() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(
            preflight(&dir.path().join("none.db"), QUICK_CHECK_BUDGET).unwrap(),
            Checked::New
        );
        let path = db_with(dir.path(), "CREATE TABLE t (x); INSERT INTO t VALUES (1);");
        assert_eq!(preflight(&path, QUICK_CHECK_BUDGET).unwrap(), Checked::Ok);
    }

    /// With no time at all the check stops at once and says it was partial.
    #[test]
    fn the_check_stops_when_its_budget_runs_out() {
        let dir = tempfile::tempdir().unwrap();
        let path = db_with(
            dir.path(),
            "CREATE TABLE t (x TEXT); CREATE INDEX t_x ON t(x);
             WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 20000)
             INSERT INTO t SELECT hex(randomblob(40)) FROM n;",
        );
        assert_eq!(preflight(&path, Duration::ZERO).unwrap(), Checked::Partly);
        assert_eq!(preflight(&path, QUICK_CHECK_BUDGET).unwrap(), Checked::Ok);
    }

    #[test]
    fn a_newer_schema_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = db_with(
            dir.path(),
            &format!("PRAGMA user_version = {};", schema::VERSION + 1),
        );
        let e = preflight(&path, QUICK_CHECK_BUDGET)
            .unwrap_err()
            .to_string();
        assert!(e.contains("newer than this pushd"), "{e}");
    }

    #[test]
    fn a_file_that_is_not_a_database_is_called_corrupt() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("junk.db");
        std::fs::write(&path, vec![0x5a; 8192]).unwrap();
        let e = preflight(&path, QUICK_CHECK_BUDGET)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("is corrupt") && e.contains("pushd backup"),
            "{e}"
        );
    }
}
