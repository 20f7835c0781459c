//! The store's own health: whether the database accepts writes. A write that
//! fails for a reason the operator fixes on the machine (disk full, read-only
//! file, I/O error) flags a *storage fault*; while it is flagged, senders hold
//! their work (`Store::wait_writable`) and `status`, `/healthz` and the
//! panel show the alert. A watchdog retries a tiny write every half second
//! and clears the fault once one succeeds.

use super::{Store, StoreError};
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
        if fault.is_none() {
            tracing::error!(error = %e, "storage fault: all pushes are held until the database accepts writes again");
        }
        *fault = Some(e.to_string());
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
