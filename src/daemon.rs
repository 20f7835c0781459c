//! Wires the daemon together and runs it: opens the store, binds the socket
//! and the HTTP listener, builds the handles every layer is given, starts the
//! tasks (scheduler, receipts, transports, file watcher, signals), and shuts
//! down in order (stop accepting, finish in-flight work, commit, remove the
//! socket). Nothing here is reached from below: the lower layers get narrow
//! handles, the transports get the commands.

use crate::alerts::Alerts;
use crate::channel::{self, ChannelContext, Channels};
use crate::commands::{self, Handles, ProcessInfo, ReloadLog};
use crate::config::{Config, LiveConfig};
use crate::control::server;
use crate::dispatch::{self, Dispatcher};
use crate::links::Links;
use crate::metrics::Metrics;
use crate::model::{ChannelEvent, now_ms};
use crate::receipts::Receipts;
use crate::script::{self, Generation, ScriptLimits, Scripts};
use crate::store::{Store, audit, members};
use crate::{http, panel, store};
use anyhow::Context;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// Room for simulator receipts waiting to be applied.
const EVENT_QUEUE: usize = 65_536;

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
        Err(e) => return vec![e.to_string()],
    };
    let channels = match Channels::build(&config, ctx) {
        Ok(c) => c,
        Err(e) => return vec![format!("{}: {e}", config.path.display())],
    };
    let env = commands::reload::script_env(&config, &channels);
    let limits = ScriptLimits::from_config(&config);
    match Generation::load(0, &config.scripts.dir, &limits, &env) {
        Ok(_) => Vec::new(),
        Err(errors) => errors.iter().map(|e| e.to_string()).collect(),
    }
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

/// Builds every handle from the config and the open store.
async fn build_handles(
    config: Config,
    store: Store,
    sink: mpsc::Sender<ChannelEvent>,
    shutdown: &CancellationToken,
) -> anyhow::Result<Handles> {
    let ctx = ChannelContext {
        http: channel::http_client().map_err(anyhow::Error::msg)?,
        send_timeout: config.dispatch.send_timeout,
        receipts: sink,
    };
    let channels = Arc::new(Channels::build(&config, ctx)?);
    let last = store.read_blocking(store::scripts::last_number)?;
    let scripts = Arc::new(Scripts::new(last + 1));
    let config = Arc::new(LiveConfig::new(config));
    let metrics = Arc::new(Metrics::default());
    let alerts = Arc::new(Alerts::default());
    let links = Arc::new(
        Links::open(&store, config.clone())
            .await
            .context("cannot set up tracked links")?,
    );
    let dispatcher = Arc::new(Dispatcher::new(dispatch::Deps {
        store: store.clone(),
        channels: channels.clone(),
        scripts: scripts.clone(),
        config: config.clone(),
        metrics: metrics.clone(),
        links: links.clone(),
        alerts: alerts.clone(),
        shutdown: shutdown.clone(),
    }));
    Ok(Handles {
        store,
        config,
        channels,
        scripts,
        dispatcher,
        links,
        metrics,
        alerts,
        reloads: Arc::new(ReloadLog::default()),
        process: Arc::new(ProcessInfo {
            started: Instant::now(),
            started_at_ms: now_ms(),
            http_addr: OnceLock::new(),
        }),
    })
}

/// `pushd serve`: runs until SIGTERM/SIGINT.
pub async fn serve(config: Config) -> anyhow::Result<()> {
    if let Some(offset) = crate::model::clock_offset_ms() {
        tracing::warn!(
            offset_ms = offset,
            "PUSHD_TEST_CLOCK_OFFSET_MS is set: this daemon's clock is moved (tests only; unset it in production)"
        );
    }
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
            http::bind(&config.http.listen)
                .await
                .with_context(|| format!("cannot listen on http.listen {}", config.http.listen))?,
        )
    } else {
        None
    };
    let shutdown = CancellationToken::new();
    let (sink, events_rx) = mpsc::channel::<ChannelEvent>(EVENT_QUEUE);
    let h = match build_handles(config, store.clone(), sink, &shutdown).await {
        Ok(h) => Arc::new(h),
        Err(e) => {
            let _ = std::fs::remove_file(&socket_path);
            return Err(e);
        }
    };
    if let Some(addr) = http_listener.as_ref().and_then(http::local_addr) {
        let _ = h.process.http_addr.set(addr);
    }
    let cfg = h.config.get();
    tracing::info!(
        socket = %socket_path.display(),
        database = %cfg.database_path.display(),
        http = ?h.process.http_addr.get(),
        version = env!("CARGO_PKG_VERSION"),
        "pushd started"
    );
    if cfg.daemon.max_database_mb.is_some() {
        store
            .set_size_limit(cfg.daemon.max_database_mb)
            .await
            .context("cannot apply daemon.max_database_mb")?;
    }
    audit::log(&store, None, "daemon.start", None, true, None).await;
    seed_simulator_members(&store, &cfg).await;
    commands::reload::scripts(&h, None).await;

    // Watch before answering on the socket: a change made right after the
    // daemon is ready must not be missed.
    let watch_rx = script::watch::spawn(
        vec![cfg.scripts.dir.clone(), cfg.path.clone()],
        cfg.scripts.debounce,
    );
    // Signals before the socket answers: a SIGTERM sent as soon as `status`
    // answers must drain and exit 0, not meet the default action.
    spawn_signal_handlers(h.clone(), shutdown.clone())?;
    store.spawn_watchdog(shutdown.clone());
    let receipts = Arc::new(Receipts::start(
        store.clone(),
        h.config.clone(),
        h.metrics.clone(),
    ));
    let control = tokio::spawn(server::run(listener, h.clone(), shutdown.clone()));
    let dispatcher = tokio::spawn(dispatch::run(h.dispatcher.clone()));
    let drain = {
        let (receipts, shutdown) = (receipts.clone(), shutdown.clone());
        tokio::spawn(async move { receipts.drain(events_rx, shutdown).await })
    };
    let panel = panel::Backend::new(h.clone(), shutdown.clone());
    let http = http_listener.map(|l| {
        let services = http::Services {
            receipts: receipts.clone(),
            links: h.links.clone(),
            store: store.clone(),
            metrics: h.metrics.clone(),
            panel: panel.clone(),
        };
        tokio::spawn(http::run(l, services, cfg.http.clone(), shutdown.clone()))
    });
    panel::announce(panel).await;
    tokio::spawn(watch_files(h.clone(), watch_rx, shutdown.clone()));
    tokio::spawn(prune_events(
        store.clone(),
        h.config.clone(),
        shutdown.clone(),
    ));
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Ready]);

    shutdown.cancelled().await;
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Stopping]);
    tracing::info!("shutting down: finishing in-flight work");
    let _ = control.await;
    let _ = dispatcher.await;
    if let Some(h) = http {
        let _ = h.await;
    }
    let _ = drain.await;
    audit::log(&store, None, "daemon.stop", None, true, None).await;
    store.close();
    if let Err(e) = std::fs::remove_file(&socket_path) {
        tracing::warn!(error = %e, "cannot remove the control socket");
    }
    tracing::info!("pushd stopped");
    Ok(())
}

/// A fresh install gets synthetic members for each simulator channel, so the
/// example push has someone to send to.
async fn seed_simulator_members(store: &Store, cfg: &Config) {
    let count = store.read(members::count).await.unwrap_or(1);
    if count > 0 {
        return;
    }
    for (name, c) in &cfg.channels {
        let n = c.seed_members.unwrap_or(0);
        if c.kind != crate::model::Platform::Simulator || n == 0 {
            continue;
        }
        let rows = channel::simulator::seed_members(name, n, now_ms());
        match store.write(move |c| members::upsert_rows(c, &rows)).await {
            Ok((ins, _)) => {
                tracing::info!(channel = %name, members = ins, "seeded simulator members")
            }
            Err(e) => tracing::error!(error = %e, "cannot seed simulator members"),
        }
    }
}

/// Reloads scripts / config when their files change.
async fn watch_files(
    h: Arc<Handles>,
    mut rx: mpsc::Receiver<script::watch::Changed>,
    shutdown: CancellationToken,
) {
    loop {
        let changed = tokio::select! {
            c = rx.recv() => match c { Some(c) => c, None => return },
            _ = shutdown.cancelled() => return,
        };
        match changed {
            script::watch::Changed::Scripts => {
                tracing::info!("scripts changed on disk: reloading");
                commands::reload::scripts(&h, None).await;
            }
            script::watch::Changed::Config => {
                tracing::info!("config changed on disk: reloading");
                let before = h.config.get();
                commands::reload::config(&h, None).await;
                let after = h.config.get();
                if before.scripts != after.scripts
                    || before.channels != after.channels
                    || before.links != after.links
                {
                    commands::reload::scripts(&h, None).await;
                }
            }
        }
    }
}

/// Deletes raw inbound events past `receipts.event_retention`, hourly.
async fn prune_events(store: Store, config: Arc<LiveConfig>, shutdown: CancellationToken) {
    loop {
        let keep = config.get().receipts.event_retention.as_millis() as i64;
        let cutoff = now_ms() - keep;
        match store.write(move |c| store::events::prune(c, cutoff)).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(events = n, "pruned old inbound events"),
            Err(e) => tracing::warn!(error = %e, "cannot prune old events"),
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_secs(3600)) => {}
        }
    }
}

fn spawn_signal_handlers(h: Arc<Handles>, shutdown: CancellationToken) -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).context("cannot install SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("cannot install SIGINT handler")?;
    let mut hup = signal(SignalKind::hangup()).context("cannot install SIGHUP handler")?;
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = term.recv() => { tracing::info!("SIGTERM received"); shutdown.cancel(); break; }
                _ = int.recv() => { tracing::info!("SIGINT received"); shutdown.cancel(); break; }
                _ = hup.recv() => {
                    tracing::info!("SIGHUP received: reloading");
                    let _ = sd_notify::notify(&[sd_notify::NotifyState::Reloading]);
                    commands::reload::all(&h, None).await;
                    let _ = sd_notify::notify(&[sd_notify::NotifyState::Ready]);
                }
            }
        }
    });
    Ok(())
}
