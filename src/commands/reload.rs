//! `reload`: config.toml, then the scripts. A config that does not validate
//! keeps the running one; a script generation that does not validate never
//! goes live. Every attempt, good or bad, is in the audit trail. The file
//! watcher and SIGHUP call the same functions as the socket.

use super::Handles;
use crate::channel::{BuildError, Channels};
use crate::config::Config;
use crate::model::{fmt_ms, now_ms};
use crate::protocol::{ReloadData, ReloadStatus};
use crate::script::{
    Generation, Loaded, PushDef, PushStart, ScriptEnv, ScriptLimits, Scripts, TemplateDef,
};
use crate::store::{Store, audit, pushes, scripts as generations};
use std::sync::{Arc, Mutex};

/// The last reload of each kind, for `status`.
#[derive(Default)]
pub struct ReloadLog {
    config: Mutex<Option<ReloadStatus>>,
    scripts: Mutex<Option<ReloadStatus>>,
}

impl ReloadLog {
    pub fn config(&self) -> Option<ReloadStatus> {
        self.config.lock().ok().and_then(|r| r.clone())
    }

    pub fn scripts(&self) -> Option<ReloadStatus> {
        self.scripts.lock().ok().and_then(|r| r.clone())
    }

    fn set(slot: &Mutex<Option<ReloadStatus>>, status: &ReloadStatus) {
        if let Ok(mut r) = slot.lock() {
            *r = Some(status.clone());
        }
    }
}

/// Config first (it may move the scripts dir or change channels), then scripts.
pub async fn all(h: &Handles, uid: Option<u32>) -> ReloadData {
    let config = config(h, uid).await;
    let scripts = scripts(h, uid).await;
    ReloadData { config, scripts }
}

/// What scripts are loaded against: the configured channels (kind, service
/// window), the default locale, and each channel adapter's validator.
pub fn script_env(cfg: &Config, channels: &Channels) -> ScriptEnv {
    let set = channels.all();
    ScriptEnv::from_config(
        cfg,
        Arc::new(
            move |channel: &str, outbound: &crate::model::Outbound| match set.get(channel) {
                Some(c) => c.validate(outbound).map_err(|e| e.to_string()),
                None => Ok(()),
            },
        ),
    )
}

/// The settings a reload may change while running; the others (database,
/// socket, HTTP listener) keep their running values until a restart.
fn applied(current: &Config, new: Config) -> Config {
    let mut applied = current.clone();
    applied.dispatch = new.dispatch;
    applied.daemon.max_database_mb = new.daemon.max_database_mb;
    applied.scripts = new.scripts;
    applied.receipts = new.receipts;
    applied.links = new.links;
    applied.http.public_url = new.http.public_url;
    applied.channels = new.channels;
    applied.policy = new.policy;
    applied.control.admins = new.control.admins;
    applied.control.owner_is_admin = new.control.owner_is_admin;
    applied.control.max_line_bytes = new.control.max_line_bytes;
    applied.control.idle_timeout = new.control.idle_timeout;
    applied
}

/// Re-reads config.toml. An invalid file keeps the running config.
pub async fn config(h: &Handles, uid: Option<u32>) -> ReloadStatus {
    let current = h.config.get();
    let mut status = ReloadStatus {
        at: fmt_ms(now_ms()),
        what: "config".into(),
        ..Default::default()
    };
    let target = current.path.display().to_string();
    let outcome = match Config::load(&current.path) {
        Ok(new) => apply_config(h, &current, new, &mut status)
            .await
            .map_err(|e| e.to_string()),
        Err(e) => {
            tracing::error!(error = %e, "config reload rejected; the running config stays");
            Err(e.to_string())
        }
    };
    match outcome {
        Ok(detail) => {
            status.ok = true;
            h.metrics.record_reload(true);
            audit::log(
                &h.store,
                uid,
                "reload.config",
                Some(&target),
                true,
                Some(detail),
            )
            .await;
        }
        Err(error) => {
            status.ok = false;
            status.errors = vec![error.clone()];
            h.metrics.record_reload(false);
            audit::log(
                &h.store,
                uid,
                "reload.config",
                Some(&target),
                false,
                Some(error),
            )
            .await;
        }
    }
    ReloadLog::set(&h.reloads.config, &status);
    status
}

/// Puts a validated config in force; the audit detail, or why it was refused.
async fn apply_config(
    h: &Handles,
    current: &Config,
    new: Config,
    status: &mut ReloadStatus,
) -> Result<String, BuildError> {
    status.restart_required = current
        .restart_required(&new)
        .into_iter()
        .map(String::from)
        .collect();
    let changed = current.changed_sections(&new);
    if !status.restart_required.is_empty() {
        tracing::warn!(settings = ?status.restart_required, "config changed settings that need a restart; they keep their running values");
    }
    if current.channels != new.channels {
        h.channels.rebuild(&new)?;
    }
    h.dispatcher
        .apply_config(new.dispatch.rate_per_minute, new.dispatch.concurrency);
    if current.daemon.max_database_mb != new.daemon.max_database_mb
        && let Err(e) = h.store.set_size_limit(new.daemon.max_database_mb).await
    {
        tracing::warn!(error = %e, "cannot apply daemon.max_database_mb");
    }
    h.config.set(applied(current, new));
    tracing::info!(changed = ?changed, "config reloaded");
    Ok(format!(
        "changed: [{}]; restart required: [{}]",
        changed.join(", "),
        status.restart_required.join(", ")
    ))
}

/// Builds a new script generation and swaps it in only if it validates.
/// A failing generation never goes live; every attempt is audited.
pub async fn scripts(h: &Handles, uid: Option<u32>) -> ReloadStatus {
    let cfg = h.config.get();
    let env = script_env(&cfg, &h.channels);
    let limits = ScriptLimits::from_config(&cfg);
    let dir_text = cfg.scripts.dir.display().to_string();
    let status = h
        .scripts
        .load(cfg.scripts.dir.clone(), limits, env, |loaded| {
            record_load(&h.store, &h.scripts, uid, &dir_text, loaded)
        })
        .await;
    h.metrics.record_reload(status.ok);
    if status.ok {
        h.dispatcher.wake();
    } else if h.scripts.live().is_none() {
        tracing::error!("{}", nothing_live(&status));
    }
    ReloadLog::set(&h.reloads.scripts, &status);
    status
}

/// What `status` and the log say while no generation has ever loaded.
pub fn nothing_live(last: &ReloadStatus) -> String {
    format!(
        "no scripts are live: the last load failed ({} problem(s), see the last script reload); nothing can be rendered or sent until they load — fix them and save, or run `pushd reload`",
        last.errors.len()
    )
}

/// Records one load attempt (generation row, audit) and, when it validated,
/// makes it live and creates the pushes its scripts define.
async fn record_load(
    store: &Store,
    live: &Scripts,
    uid: Option<u32>,
    dir: &str,
    loaded: Loaded,
) -> ReloadStatus {
    let number = loaded.number;
    let mut status = ReloadStatus {
        at: fmt_ms(now_ms()),
        what: "scripts".into(),
        attempt: Some(number),
        ..Default::default()
    };
    match loaded.result {
        Ok(generation) => {
            status.ok = true;
            let (hash, files) = (generation.hash.clone(), generation.files.clone());
            let files_json = serde_json::to_string(&files).unwrap_or_default();
            let h = hash.clone();
            if let Err(e) = store
                .write(move |c| generations::record_ok(c, number, &h, &files_json))
                .await
            {
                tracing::warn!(error = %e, "cannot record the script generation");
            }
            live.make_live(generation.clone());
            tracing::info!(generation = number, hash = %&hash[..hash.len().min(12)], files = files.len(), "scripts loaded");
            audit::log(
                store,
                uid,
                "reload.scripts",
                Some(dir),
                true,
                Some(format!("generation {number}, hash {hash}")),
            )
            .await;
            create_script_pushes(store, &generation).await;
        }
        Err(errors) => {
            status.errors = errors.iter().map(|e| e.to_string()).collect();
            for e in &status.errors {
                tracing::error!(error = %e, "script reload rejected; the previous generation keeps serving");
            }
            let joined = status.errors.join("\n");
            let j = joined.clone();
            if let Err(e) = store
                .write(move |c| generations::record_failed(c, number, &j))
                .await
            {
                tracing::warn!(error = %e, "cannot record the failed script load");
            }
            audit::log(store, uid, "reload.scripts", Some(dir), false, Some(joined)).await;
        }
    }
    status
}

/// The push a script's `push "name" { … }` defines on its template.
fn new_push(def: &PushDef, template: Option<&TemplateDef>) -> pushes::NewPush {
    let hhmm = |t: chrono::NaiveTime| t.format("%H:%M").to_string();
    pushes::NewPush {
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
        window_from: def.send_window.as_ref().map(|w| hhmm(w.from)),
        window_to: def.send_window.as_ref().map(|w| hhmm(w.to)),
        policy: def.bypass_policy.then(|| pushes::BYPASS.to_string()),
        // (Checked at load: the same plan_for refuses the generation.)
        ab: template.and_then(|t| t.ab_plan(def.test, def.holdout).ok().flatten()),
        ..Default::default()
    }
}

/// A push defined in a script is created once, keyed by name: reloads
/// and restarts never create (or send) it again.
async fn create_script_pushes(store: &Store, g: &Generation) {
    for def in &g.pushes {
        let new = new_push(def, g.templates.get(&def.template));
        let name = def.name.clone();
        let created = store
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
                audit::log(
                    store,
                    None,
                    "push.create",
                    Some(&name),
                    true,
                    Some(format!("from scripts, generation {}", g.number)),
                )
                .await;
                if p.bypasses_policy() {
                    audit::log(
                        store,
                        None,
                        "push.policy_bypass",
                        Some(&name),
                        true,
                        Some(format!(
                            "policy = \"bypass\" at {}: [policy] frequency caps and quiet hours do not apply to this push",
                            def.location
                        )),
                    )
                    .await;
                }
            }
            Ok(None) => {}
            Err(e) => {
                tracing::error!(name = %name, error = %e, "cannot create push from scripts")
            }
        }
    }
}
