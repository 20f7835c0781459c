//! Wires the daemon together: config, store, control socket, signals, and the
//! shutdown sequence (stop accepting, finish in-flight work, commit, remove
//! the socket).

use crate::config::Config;
use crate::control::protocol::{ReloadData, ReloadStatus};
use crate::control::server;
use crate::model::{Millis, fmt_ms, now_ms};
use crate::store::{Store, audit};
use anyhow::Context;
use arc_swap::ArcSwap;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;
use tokio_util::sync::CancellationToken;

/// Shared state of a running daemon.
pub struct Daemon {
    config: ArcSwap<Config>,
    config_loaded_at: AtomicI64,
    pub store: Store,
    pub started: Instant,
    pub started_at_ms: Millis,
    last_reload: Mutex<Option<ReloadStatus>>,
    /// Conditions the operator must act on, keyed by source (shown in `status`).
    alerts: Mutex<BTreeMap<String, String>>,
    pub shutdown: CancellationToken,
}

impl Daemon {
    pub fn new(config: Config, store: Store) -> Daemon {
        Daemon {
            config: ArcSwap::from_pointee(config),
            config_loaded_at: AtomicI64::new(now_ms()),
            store,
            started: Instant::now(),
            started_at_ms: now_ms(),
            last_reload: Mutex::new(None),
            alerts: Mutex::new(BTreeMap::new()),
            shutdown: CancellationToken::new(),
        }
    }

    /// The live configuration (a snapshot; reloads swap it atomically).
    pub fn config(&self) -> Arc<Config> {
        self.config.load_full()
    }

    pub fn config_loaded_at(&self) -> Millis {
        self.config_loaded_at.load(Ordering::Relaxed)
    }

    pub fn last_reload(&self) -> Option<ReloadStatus> {
        self.last_reload.lock().ok().and_then(|r| r.clone())
    }

    fn set_last_reload(&self, status: &ReloadStatus) {
        if let Ok(mut r) = self.last_reload.lock() {
            *r = Some(status.clone());
        }
    }

    pub fn alerts(&self) -> Vec<String> {
        self.alerts
            .lock()
            .map(|a| a.values().cloned().collect())
            .unwrap_or_default()
    }

    pub fn set_alert(&self, key: &str, message: Option<String>) {
        if let Ok(mut a) = self.alerts.lock() {
            match message {
                Some(m) => {
                    a.insert(key.to_string(), m);
                }
                None => {
                    a.remove(key);
                }
            }
        }
    }

    /// Appends to the audit trail. A failure to record is logged, not fatal:
    /// the action itself already happened.
    pub async fn audit(
        &self,
        uid: Option<u32>,
        action: &str,
        target: Option<&str>,
        ok: bool,
        detail: Option<String>,
    ) {
        let (action, target) = (action.to_string(), target.map(String::from));
        let detail = detail.map(|d| truncate(&d, 2000));
        let r = self
            .store
            .write(move |c| {
                audit::record(c, uid, &action, target.as_deref(), ok, detail.as_deref())
            })
            .await;
        if let Err(e) = r {
            tracing::error!(error = %e, "cannot write the audit trail");
        }
    }

    /// Re-reads config.toml. An invalid file keeps the running config.
    pub async fn reload_config(&self, uid: Option<u32>) -> ReloadStatus {
        let current = self.config();
        let mut status = ReloadStatus {
            at: fmt_ms(now_ms()),
            what: "config".into(),
            ..Default::default()
        };
        match Config::load(&current.path) {
            Ok(new) => {
                status.ok = true;
                status.restart_required = current
                    .restart_required(&new)
                    .into_iter()
                    .map(String::from)
                    .collect();
                let changed = current.changed_sections(&new);
                if !status.restart_required.is_empty() {
                    tracing::warn!(settings = ?status.restart_required, "config changed settings that need a restart; they keep their running values");
                }
                let mut applied = (*current).clone();
                applied.dispatch = new.dispatch;
                applied.scripts = new.scripts;
                applied.receipts = new.receipts;
                applied.channels = new.channels;
                applied.control.admins = new.control.admins;
                applied.control.owner_is_admin = new.control.owner_is_admin;
                applied.control.max_line_bytes = new.control.max_line_bytes;
                applied.control.idle_timeout = new.control.idle_timeout;
                self.config.store(Arc::new(applied));
                self.config_loaded_at.store(now_ms(), Ordering::Relaxed);
                tracing::info!(changed = ?changed, "config reloaded");
                self.audit(
                    uid,
                    "reload.config",
                    Some(&current.path.display().to_string()),
                    true,
                    Some(format!(
                        "changed: [{}]; restart required: [{}]",
                        changed.join(", "),
                        status.restart_required.join(", ")
                    )),
                )
                .await;
            }
            Err(e) => {
                tracing::error!(error = %e, "config reload rejected; the running config stays");
                status.errors = vec![e.to_string()];
                self.audit(
                    uid,
                    "reload.config",
                    Some(&current.path.display().to_string()),
                    false,
                    Some(e.to_string()),
                )
                .await;
            }
        }
        self.set_last_reload(&status);
        status
    }

    pub async fn reload_all(&self) -> ReloadData {
        let config = self.reload_config(None).await;
        ReloadData {
            scripts: ReloadStatus {
                at: config.at.clone(),
                what: "scripts".into(),
                ok: true,
                ..Default::default()
            },
            config,
        }
    }
}

fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

/// Finds the config: the explicit path (must exist), else `./config.toml`,
/// else the built-in defaults.
pub fn load_config(explicit: Option<&Path>) -> anyhow::Result<Config> {
    match explicit {
        Some(p) => Ok(Config::load(p)?),
        None => {
            let p = PathBuf::from("config.toml");
            if p.exists() {
                Ok(Config::load(&p)?)
            } else {
                tracing::info!("no ./config.toml: running on the built-in defaults");
                Ok(Config::default_at(&p))
            }
        }
    }
}

/// `pushd serve`: runs until SIGTERM/SIGINT.
pub async fn serve(config: Config) -> anyhow::Result<()> {
    let store = Store::open(&config.database_path).with_context(|| {
        format!(
            "cannot open the database {}",
            config.database_path.display()
        )
    })?;
    let mode = config.control.mode_bits().map_err(anyhow::Error::msg)?;
    let listener = server::bind(&config.socket_path, mode, config.control.group.as_deref()).await?;
    let socket_path = config.socket_path.clone();
    tracing::info!(
        socket = %socket_path.display(),
        database = %config.database_path.display(),
        version = env!("CARGO_PKG_VERSION"),
        "pushd started"
    );
    let daemon = Arc::new(Daemon::new(config, store.clone()));
    daemon.audit(None, "daemon.start", None, true, None).await;

    let shutdown = daemon.shutdown.clone();
    let control = tokio::spawn(server::run(listener, daemon.clone(), shutdown.clone()));
    spawn_signal_handlers(daemon.clone())?;
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Ready]);

    shutdown.cancelled().await;
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Stopping]);
    tracing::info!("shutting down: finishing in-flight work");
    let _ = control.await;
    daemon.audit(None, "daemon.stop", None, true, None).await;
    store.close();
    if let Err(e) = std::fs::remove_file(&socket_path) {
        tracing::warn!(error = %e, "cannot remove the control socket");
    }
    tracing::info!("pushd stopped");
    Ok(())
}

fn spawn_signal_handlers(daemon: Arc<Daemon>) -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).context("cannot install SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("cannot install SIGINT handler")?;
    let mut hup = signal(SignalKind::hangup()).context("cannot install SIGHUP handler")?;
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = term.recv() => { tracing::info!("SIGTERM received"); daemon.shutdown.cancel(); break; }
                _ = int.recv() => { tracing::info!("SIGINT received"); daemon.shutdown.cancel(); break; }
                _ = hup.recv() => {
                    tracing::info!("SIGHUP received: reloading");
                    let _ = sd_notify::notify(&[sd_notify::NotifyState::Reloading]);
                    daemon.reload_all().await;
                    let _ = sd_notify::notify(&[sd_notify::NotifyState::Ready]);
                }
            }
        }
    });
    Ok(())
}
