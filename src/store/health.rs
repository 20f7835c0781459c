//! The store's own health: whether the database accepts writes. A write that
//! fails for a reason the operator fixes on the machine (disk full, read-only
//! file, I/O error) flags a *storage fault*; while it is flagged, senders hold
//! their work (`Store::wait_writable`) and `status`, `/healthz` and the
//! panel show the alert. A watchdog retries a tiny write every half second
//! and clears the fault once one succeeds.
//!
//! SQLite says only "disk I/O error" for most of these, so the alert adds
//! what the files say: a file that no longer opens for writing (made
//! immutable, permissions), a read-only file system, no free space.

use super::{Store, StoreError, open};
use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// How often a faulted store is probed.
const PROBE_EVERY: Duration = Duration::from_millis(500);

#[derive(Default)]
pub(super) struct Health {
    /// The error that flagged the fault; None while writes succeed.
    fault: Mutex<Option<String>>,
    recovered: Notify,
}

impl Store {
    /// Flags a storage fault (logged once, when it starts).
    pub fn mark_fault(&self, e: &StoreError) {
        let mut fault = self
            .inner
            .health
            .fault
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let text = match diagnose(&self.inner.path) {
            Some(cause) => format!("{e} ({cause})"),
            None => e.to_string(),
        };
        if fault.is_none() {
            tracing::error!(error = %text, "storage fault: all pushes are held until the database accepts writes again");
        }
        *fault = Some(text);
    }

    fn clear_fault(&self) {
        let was = self
            .inner
            .health
            .fault
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if was.is_some() {
            tracing::info!("storage recovered: resuming sends");
        }
        self.inner.health.recovered.notify_waiters();
    }

    /// True while the database refuses writes.
    pub fn faulted(&self) -> bool {
        self.inner
            .health
            .fault
            .lock()
            .map(|f| f.is_some())
            .unwrap_or(true)
    }

    /// The operator-facing alert while faulted.
    pub fn fault_alert(&self) -> Option<String> {
        let fault = self.inner.health.fault.lock().ok()?.clone()?;
        Some(format!(
            "storage fault: {fault}; sends are held (nothing is lost) until the database accepts writes again — free disk space or fix permissions"
        ))
    }

    /// Resolves once the store accepts writes again (at once if it does).
    pub async fn wait_writable(&self) {
        loop {
            let notified = self.inner.health.recovered.notified();
            if !self.faulted() {
                return;
            }
            tokio::select! {
                _ = notified => {}
                _ = tokio::time::sleep(PROBE_EVERY) => {}
            }
        }
    }

    /// Resolves when the store recovers or after one probe interval,
    /// whichever comes first (for loops that also watch other signals).
    pub async fn recovered_or_tick(&self) {
        tokio::select! {
            _ = self.inner.health.recovered.notified() => {}
            _ = tokio::time::sleep(PROBE_EVERY) => {}
        }
    }

    /// Checks that the database answers a read: `/healthz`.
    pub async fn ping(&self) -> Result<(), StoreError> {
        self.read(|c| Ok(c.query_row("SELECT 1", [], |_| Ok(()))?))
            .await
    }

    /// Probes a faulted store with a tiny write until one succeeds, then
    /// clears the fault (resuming held sends). Runs until `shutdown`.
    pub fn spawn_watchdog(&self, shutdown: CancellationToken) {
        let store = self.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(PROBE_EVERY) => {}
                }
                if !store.faulted() {
                    continue;
                }
                let probe = store
                    .inner
                    .writer
                    .run(|c| {
                        c.execute_batch(
                            "CREATE TABLE IF NOT EXISTS storage_probe (x INTEGER); INSERT INTO storage_probe VALUES (1); DELETE FROM storage_probe;",
                        )?;
                        Ok(())
                    })
                    .await;
                match probe {
                    Ok(()) => store.clear_fault(),
                    Err(e) => store.mark_fault(&e),
                }
            }
        });
    }
}

/// Why the database's files may refuse writes, as far as the file system
/// tells: the first file that no longer opens for writing, a read-only file
/// system, or one without free space. None when nothing looks wrong.
fn diagnose(db: &Path) -> Option<String> {
    for file in [db.to_path_buf(), open::sidecar(db, "-wal")] {
        match std::fs::OpenOptions::new().write(true).open(&file) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Some(format!("{} does not open for writing: {e}", file.display()));
            }
            _ => {}
        }
    }
    let dir = db.parent().filter(|d| !d.as_os_str().is_empty())?;
    let c_dir = std::ffi::CString::new(dir.as_os_str().as_encoded_bytes()).ok()?;
    // SAFETY: statvfs(3) fills the zeroed struct we own from a valid C string.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statvfs(c_dir.as_ptr(), &mut st) } != 0 {
        return None;
    }
    if st.f_flag & libc::ST_RDONLY != 0 {
        return Some(format!(
            "the file system holding {} is mounted read-only",
            dir.display()
        ));
    }
    if st.f_bavail == 0 {
        return Some(format!(
            "the file system holding {} has no free space",
            dir.display()
        ));
    }
    None
}
