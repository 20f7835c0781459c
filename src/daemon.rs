//! Wires the daemon together: config, store, control socket, signals, and the
//! shutdown sequence (stop accepting, finish in-flight work, commit, remove
//! the socket).

use crate::channel::{self, ChannelContext, ChannelRef};
use crate::config::Config;
use crate::control::protocol::{ReloadData, ReloadStatus};
use crate::control::server;
use crate::dispatch::{self, Dispatcher};
use crate::metrics::Metrics;
use crate::model::{Millis, PushId, fmt_ms, now_ms};
use crate::receipts::{self, ChannelEvent, ReceiptSink};
use crate::script::{self, ChannelInfo, Generation, PushStart, ScriptEnv, ScriptLimits};
use crate::store::{Store, audit, members, pushes};
use anyhow::Context;
use arc_swap::{ArcSwap, ArcSwapOption};
use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

pub type ChannelSet = BTreeMap<String, ChannelRef>;

/// Shared state of a running daemon.
pub struct Daemon {
    config: ArcSwap<Config>,
    config_loaded_at: AtomicI64,
    pub store: Store,
    pub started: Instant,
    pub started_at_ms: Millis,
    last_config_reload: Mutex<Option<ReloadStatus>>,
    last_script_reload: Mutex<Option<ReloadStatus>>,
    /// Conditions the operator must act on, keyed by source (shown in `status`).
    alerts: Mutex<BTreeMap<String, String>>,
    pub shutdown: CancellationToken,
    channels: ArcSwap<ChannelSet>,
    channel_ctx: ChannelContext,
    generation: ArcSwapOption<Generation>,
    /// Generations kept alive by the pushes that started with them.
    pinned: Mutex<HashMap<PushId, Arc<Generation>>>,
    next_generation: AtomicI64,
    reload_lock: tokio::sync::Mutex<()>,
    pub dispatcher: Dispatcher,
    pub metrics: Metrics,
    http_addr: OnceLock<SocketAddr>,
}

impl Daemon {
    /// Builds the daemon's state; fails when a channel cannot be built.
    pub fn new(config: Config, store: Store, receipts: ReceiptSink) -> anyhow::Result<Daemon> {
        let channel_ctx = ChannelContext {
            http: channel::http_client().map_err(anyhow::Error::msg)?,
            send_timeout: config.dispatch.send_timeout,
            receipts,
        };
        let channels = build_channels(&config, &channel_ctx)?;
        let last_gen: i64 = store.read_blocking(|c| {
            Ok(c.query_row(
                "SELECT coalesce(max(id), 0) FROM script_generations",
                [],
                |r| r.get(0),
            )?)
        })?;
        Ok(Daemon {
            dispatcher: Dispatcher::new(
                config.dispatch.rate_per_minute,
                config.dispatch.concurrency,
            ),
            config: ArcSwap::from_pointee(config),
            config_loaded_at: AtomicI64::new(now_ms()),
            store,
            started: Instant::now(),
            started_at_ms: now_ms(),
            last_config_reload: Mutex::new(None),
            last_script_reload: Mutex::new(None),
            alerts: Mutex::new(BTreeMap::new()),
            shutdown: CancellationToken::new(),
            channels: ArcSwap::from_pointee(channels),
            channel_ctx,
            generation: ArcSwapOption::empty(),
            pinned: Mutex::new(HashMap::new()),
            next_generation: AtomicI64::new(last_gen + 1),
            reload_lock: tokio::sync::Mutex::new(()),
            metrics: Metrics::default(),
            http_addr: OnceLock::new(),
        })
    }

    pub fn channel(&self, name: &str) -> Option<ChannelRef> {
        self.channels.load().get(name).cloned()
    }

    pub fn channels(&self) -> Arc<ChannelSet> {
        self.channels.load_full()
    }

    /// The live script generation.
    pub fn generation(&self) -> Option<Arc<Generation>> {
        self.generation.load_full()
    }

    pub fn pinned_generation(&self, number: i64) -> Option<Arc<Generation>> {
        if let Some(g) = self.generation().filter(|g| g.number == number) {
            return Some(g);
        }
        self.pinned
            .lock()
            .ok()?
            .values()
            .find(|g| g.number == number)
            .cloned()
    }

    pub fn pin_generation(&self, push: PushId, g: Arc<Generation>) {
        if let Ok(mut p) = self.pinned.lock() {
            p.insert(push, g);
        }
    }

    pub fn unpin_generation(&self, push: PushId) {
        if let Ok(mut p) = self.pinned.lock() {
            p.remove(&push);
        }
    }

    pub fn http_addr(&self) -> Option<SocketAddr> {
        self.http_addr.get().copied()
    }

    /// The live configuration (a snapshot; reloads swap it atomically).
    pub fn config(&self) -> Arc<Config> {
        self.config.load_full()
    }

    pub fn config_loaded_at(&self) -> Millis {
        self.config_loaded_at.load(Ordering::Relaxed)
    }

    pub fn last_config_reload(&self) -> Option<ReloadStatus> {
        self.last_config_reload.lock().ok().and_then(|r| r.clone())
    }

    pub fn last_script_reload(&self) -> Option<ReloadStatus> {
        self.last_script_reload.lock().ok().and_then(|r| r.clone())
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
        self.audit_by(uid, None, action, target, ok, detail).await
    }

    /// [`Daemon::audit`] naming who acted when it was not a socket peer
    /// (the panel: `panel:<session> (role)`).
    pub async fn audit_by(
        &self,
        uid: Option<u32>,
        actor: Option<&str>,
        action: &str,
        target: Option<&str>,
        ok: bool,
        detail: Option<String>,
    ) {
        let (action, target) = (action.to_string(), target.map(String::from));
        let actor = actor.map(String::from);
        let detail = detail.map(|d| truncate(&d, 2000));
        let r = self
            .store
            .write(move |c| {
                audit::record_by(
                    c,
                    uid,
                    actor.as_deref(),
                    &action,
                    target.as_deref(),
                    ok,
                    detail.as_deref(),
                )
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
                let channels_changed = current.channels != new.channels;
                if channels_changed {
                    match build_channels(&new, &self.channel_ctx) {
                        Ok(set) => self.channels.store(Arc::new(set)),
                        Err(e) => {
                            status.ok = false;
                            status.errors = vec![format!("{e:#}")];
                            self.metrics.record_reload(false);
                            self.audit(
                                uid,
                                "reload.config",
                                Some(&current.path.display().to_string()),
                                false,
                                Some(format!("{e:#}")),
                            )
                            .await;
                            self.set_reload(&self.last_config_reload, &status);
                            return status;
                        }
                    }
                }
                self.dispatcher
                    .apply_config(new.dispatch.rate_per_minute, new.dispatch.concurrency);
                if current.daemon.max_database_mb != new.daemon.max_database_mb
                    && let Err(e) = self.store.set_size_limit(new.daemon.max_database_mb).await
                {
                    tracing::warn!(error = %e, "cannot apply daemon.max_database_mb");
                }
                let mut applied = (*current).clone();
                applied.dispatch = new.dispatch;
                applied.daemon.max_database_mb = new.daemon.max_database_mb;
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
                self.metrics.record_reload(true);
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
                self.metrics.record_reload(false);
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
        self.set_reload(&self.last_config_reload, &status);
        status
    }

    fn set_reload(&self, slot: &Mutex<Option<ReloadStatus>>, status: &ReloadStatus) {
        if let Ok(mut r) = slot.lock() {
            *r = Some(status.clone());
        }
    }

    /// Config first (it may move the scripts dir or change channels), then scripts.
    pub async fn reload_all(self: &Arc<Self>, uid: Option<u32>) -> ReloadData {
        let config = self.reload_config(uid).await;
        let scripts = self.reload_scripts(uid).await;
        ReloadData { config, scripts }
    }

    fn script_env(&self) -> ScriptEnv {
        script_env(&self.config(), self.channels())
    }

    /// Builds a new script generation and swaps it in only if it validates.
    /// A failing generation never goes live; every attempt is audited.
    pub async fn reload_scripts(self: &Arc<Self>, uid: Option<u32>) -> ReloadStatus {
        let _serial = self.reload_lock.lock().await;
        let cfg = self.config();
        let number = self.next_generation.fetch_add(1, Ordering::SeqCst);
        let env = self.script_env();
        let limits = ScriptLimits::from_config(&cfg);
        let dir = cfg.scripts.dir.clone();
        let loaded =
            tokio::task::spawn_blocking(move || Generation::load(number, &dir, &limits, &env))
                .await
                .unwrap_or_else(|e| {
                    Err(vec![script::ScriptError {
                        location: None,
                        function: None,
                        message: format!("script loader crashed: {e}"),
                    }])
                });
        let mut status = ReloadStatus {
            at: fmt_ms(now_ms()),
            what: "scripts".into(),
            attempt: Some(number),
            ..Default::default()
        };
        let dir_text = cfg.scripts.dir.display().to_string();
        match loaded {
            Ok(generation) => {
                status.ok = true;
                let (hash, files) = (generation.hash.clone(), generation.files.clone());
                let files_json = serde_json::to_string(&files).unwrap_or_default();
                let h = hash.clone();
                let r = self
                    .store
                    .write(move |c| {
                        c.execute(
                            "INSERT INTO script_generations (id, hash, loaded_at, ok, files) VALUES (?1, ?2, ?3, 1, ?4)",
                            rusqlite::params![number, h, now_ms(), files_json],
                        )?;
                        Ok(())
                    })
                    .await;
                if let Err(e) = r {
                    tracing::warn!(error = %e, "cannot record the script generation");
                }
                self.generation.store(Some(generation.clone()));
                tracing::info!(generation = number, hash = %&hash[..hash.len().min(12)], files = files.len(), "scripts loaded");
                self.metrics.record_reload(true);
                self.audit(
                    uid,
                    "reload.scripts",
                    Some(&dir_text),
                    true,
                    Some(format!("generation {number}, hash {hash}")),
                )
                .await;
                self.create_script_pushes(&generation).await;
                self.dispatcher.wake();
            }
            Err(errors) => {
                status.errors = errors.iter().map(|e| e.to_string()).collect();
                for e in &status.errors {
                    tracing::error!(error = %e, "script reload rejected; the previous generation keeps serving");
                }
                let joined = status.errors.join("\n");
                let j = joined.clone();
                let _ = self
                    .store
                    .write(move |c| {
                        c.execute(
                            "INSERT INTO script_generations (id, hash, loaded_at, ok, files, error) VALUES (?1, '', ?2, 0, '[]', ?3)",
                            rusqlite::params![number, now_ms(), j],
                        )?;
                        Ok(())
                    })
                    .await;
                self.metrics.record_reload(false);
                self.audit(uid, "reload.scripts", Some(&dir_text), false, Some(joined))
                    .await;
            }
        }
        self.set_reload(&self.last_script_reload, &status);
        status
    }

    /// A push defined in a script is created once, keyed by name: reloads
    /// and restarts never create (or send) it again.
    async fn create_script_pushes(&self, g: &Generation) {
        for def in &g.pushes {
            let new = pushes::NewPush {
                name: def.name.clone(),
                origin: "script".into(),
                audience: def.audience.clone(),
                template: def.template.clone(),
                start_at: match def.start_at {
                    PushStart::Now => now_ms(),
                    PushStart::At(t) => t,
                },
                rate_per_minute: def.rate_per_minute,
                batch_size: def.batch.as_ref().map(|b| b.size),
                batch_every_ms: def.batch.as_ref().map(|b| b.every.as_millis() as i64),
                window_from: def
                    .send_window
                    .as_ref()
                    .map(|w| w.from.format("%H:%M").to_string()),
                window_to: def
                    .send_window
                    .as_ref()
                    .map(|w| w.to.format("%H:%M").to_string()),
                retry_of: None,
                created_by: None,
            };
            let name = def.name.clone();
            let created = self
                .store
                .write(move |c| {
                    if pushes::exists(c, &new.name)? {
                        return Ok(None);
                    }
                    pushes::create(c, &new).map(Some)
                })
                .await;
            match created {
                Ok(Some(p)) => {
                    tracing::info!(push = p.id, name = %name, "push created from scripts");
                    self.audit(
                        None,
                        "push.create",
                        Some(&name),
                        true,
                        Some(format!("from scripts, generation {}", g.number)),
                    )
                    .await;
                }
                Ok(None) => {}
                Err(e) => {
                    tracing::error!(name = %name, error = %e, "cannot create push from scripts")
                }
            }
        }
    }
}

/// What scripts see of the configuration: channels (kind, service window),
/// the default locale, and each channel's message validator.
pub fn script_env(cfg: &Config, set: Arc<ChannelSet>) -> ScriptEnv {
    let channels: BTreeMap<String, ChannelInfo> = cfg
        .channels
        .iter()
        .map(|(name, c)| {
            (
                name.clone(),
                ChannelInfo {
                    platform: c.kind,
                    service_window: c.service_window.unwrap_or(Duration::from_secs(24 * 3600)),
                },
            )
        })
        .collect();
    ScriptEnv {
        channels,
        default_locale: cfg.scripts.default_locale.clone(),
        validate: Arc::new(move |channel: &str, outbound: &crate::model::Outbound| {
            match set.get(channel) {
                Some(c) => c.validate(outbound),
                None => Ok(()),
            }
        }),
    }
}

/// `pushd check`: validates config and scripts offline; returns every problem.
pub fn check(config_path: Option<&Path>) -> Vec<String> {
    let config = match load_config(config_path) {
        Ok(c) => c,
        Err(e) => return vec![format!("{e:#}")],
    };
    let (tx, _rx) = mpsc::channel(1);
    let ctx = match channel::http_client() {
        Ok(http) => ChannelContext {
            http,
            send_timeout: config.dispatch.send_timeout,
            receipts: tx,
        },
        Err(e) => return vec![e],
    };
    let set = match build_channels(&config, &ctx) {
        Ok(s) => Arc::new(s),
        Err(e) => return vec![format!("{}: {e:#}", config.path.display())],
    };
    let env = script_env(&config, set);
    let limits = ScriptLimits::from_config(&config);
    match Generation::load(0, &config.scripts.dir, &limits, &env) {
        Ok(_) => Vec::new(),
        Err(errors) => errors.iter().map(|e| e.to_string()).collect(),
    }
}

/// Builds every configured channel instance.
pub fn build_channels(config: &Config, ctx: &ChannelContext) -> anyhow::Result<ChannelSet> {
    let mut set = ChannelSet::new();
    for (name, cfg) in &config.channels {
        let ch =
            channel::build(name, cfg, ctx).map_err(|e| anyhow::anyhow!("channels.{name}: {e}"))?;
        set.insert(name.clone(), ch);
    }
    Ok(set)
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
    let http_listener = if config.http.enabled {
        Some(
            receipts::server::bind(&config.http.listen)
                .await
                .with_context(|| format!("cannot listen on http.listen {}", config.http.listen))?,
        )
    } else {
        None
    };
    let (sink, events_rx) = mpsc::channel::<ChannelEvent>(65_536);
    let daemon = match Daemon::new(config, store.clone(), sink) {
        Ok(d) => Arc::new(d),
        Err(e) => {
            let _ = std::fs::remove_file(&socket_path);
            return Err(e);
        }
    };
    if let Some(l) = &http_listener
        && let Some(addr) = receipts::server::local_addr(l)
    {
        let _ = daemon.http_addr.set(addr);
    }
    let cfg = daemon.config();
    tracing::info!(
        socket = %socket_path.display(),
        database = %cfg.database_path.display(),
        http = ?daemon.http_addr(),
        version = env!("CARGO_PKG_VERSION"),
        "pushd started"
    );
    if cfg.daemon.max_database_mb.is_some() {
        daemon
            .store
            .set_size_limit(cfg.daemon.max_database_mb)
            .await
            .context("cannot apply daemon.max_database_mb")?;
    }
    daemon.audit(None, "daemon.start", None, true, None).await;
    seed_simulator_members(&daemon).await;
    daemon.reload_scripts(None).await;

    // Watch before answering on the socket: a change made right after the
    // daemon is ready must not be missed.
    let watch_rx = script::watch::spawn(
        vec![cfg.scripts.dir.clone(), cfg.path.clone()],
        cfg.scripts.debounce,
    );
    let shutdown = daemon.shutdown.clone();
    let control = tokio::spawn(server::run(listener, daemon.clone(), shutdown.clone()));
    let dispatcher = tokio::spawn(dispatch::run(daemon.clone()));
    let applier = tokio::spawn(receipts::run_applier(daemon.clone(), events_rx));
    let http = http_listener.map(|l| tokio::spawn(receipts::server::run(l, daemon.clone())));
    crate::panel::announce(crate::panel::Backend::new(daemon.clone())).await;
    tokio::spawn(watch_files(daemon.clone(), watch_rx));
    tokio::spawn(prune_events(daemon.clone()));
    spawn_signal_handlers(daemon.clone())?;
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Ready]);

    shutdown.cancelled().await;
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Stopping]);
    tracing::info!("shutting down: finishing in-flight work");
    let _ = control.await;
    let _ = dispatcher.await;
    if let Some(h) = http {
        let _ = h.await;
    }
    let _ = applier.await;
    daemon.audit(None, "daemon.stop", None, true, None).await;
    store.close();
    if let Err(e) = std::fs::remove_file(&socket_path) {
        tracing::warn!(error = %e, "cannot remove the control socket");
    }
    tracing::info!("pushd stopped");
    Ok(())
}

/// A fresh install gets synthetic members for each simulator channel, so the
/// example push has someone to send to.
async fn seed_simulator_members(d: &Arc<Daemon>) {
    let count = d.store.read(members::count).await.unwrap_or(1);
    if count > 0 {
        return;
    }
    for (name, c) in &d.config().channels {
        let n = c.seed_members.unwrap_or(0);
        if c.kind != crate::model::Platform::Simulator || n == 0 {
            continue;
        }
        let rows = channel::simulator::seed_members(name, n, now_ms());
        match d.store.write(move |c| members::upsert_rows(c, &rows)).await {
            Ok((ins, _)) => {
                tracing::info!(channel = %name, members = ins, "seeded simulator members")
            }
            Err(e) => tracing::error!(error = %e, "cannot seed simulator members"),
        }
    }
}

/// Reloads scripts / config when their files change.
async fn watch_files(d: Arc<Daemon>, mut rx: mpsc::Receiver<script::watch::Changed>) {
    loop {
        let changed = tokio::select! {
            c = rx.recv() => match c { Some(c) => c, None => return },
            _ = d.shutdown.cancelled() => return,
        };
        match changed {
            script::watch::Changed::Scripts => {
                tracing::info!("scripts changed on disk: reloading");
                d.reload_scripts(None).await;
            }
            script::watch::Changed::Config => {
                tracing::info!("config changed on disk: reloading");
                let before = d.config();
                d.reload_config(None).await;
                let after = d.config();
                if before.scripts != after.scripts || before.channels != after.channels {
                    d.reload_scripts(None).await;
                }
            }
        }
    }
}

/// Deletes raw inbound events past `receipts.event_retention`, hourly.
async fn prune_events(d: Arc<Daemon>) {
    loop {
        let keep = d.config().receipts.event_retention.as_millis() as i64;
        let cutoff = now_ms() - keep;
        match d
            .store
            .write(move |c| crate::store::events::prune(c, cutoff))
            .await
        {
            Ok(0) => {}
            Ok(n) => tracing::info!(events = n, "pruned old inbound events"),
            Err(e) => tracing::warn!(error = %e, "cannot prune old events"),
        }
        tokio::select! {
            _ = d.shutdown.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_secs(3600)) => {}
        }
    }
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
                    daemon.reload_all(None).await;
                    let _ = sd_notify::notify(&[sd_notify::NotifyState::Ready]);
                }
            }
        }
    });
    Ok(())
}
