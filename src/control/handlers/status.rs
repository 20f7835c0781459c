use super::{CommandResult, ok};
use crate::control::auth::Peer;
use crate::control::protocol::{ChannelStatus, ScriptStatus, StatusData};
use crate::daemon::Daemon;
use crate::dispatch::progress;
use crate::model::fmt_ms;
use crate::store::{members, pushes};
use std::sync::Arc;

pub async fn status(daemon: &Arc<Daemon>) -> CommandResult {
    let config = daemon.config();
    let (member_count, active) = daemon
        .store
        .read(|c| {
            let n = members::count(c)?;
            let mut active = Vec::new();
            for p in pushes::active(c)? {
                let counts = pushes::counts(c, p.id)?;
                active.push((p, counts));
            }
            Ok((n, active))
        })
        .await?;
    let scripts = daemon.generation().map(|g| ScriptStatus {
        generation: g.number,
        hash: g.hash.clone(),
        loaded_at: fmt_ms(g.loaded_at),
        files: g.files.clone(),
        audiences: g.audiences.keys().cloned().collect(),
        templates: g.templates.keys().cloned().collect(),
        pushes: g.pushes.iter().map(|p| p.name.clone()).collect(),
    });
    let channels = daemon.channels();
    let data = StatusData {
        version: env!("CARGO_PKG_VERSION").to_string(),
        pid: std::process::id(),
        started_at: fmt_ms(daemon.started_at_ms),
        uptime_secs: daemon.started.elapsed().as_secs(),
        config_path: config.path.display().to_string(),
        config_loaded_at: fmt_ms(daemon.config_loaded_at()),
        database_path: config.database_path.display().to_string(),
        socket_path: config.socket_path.display().to_string(),
        http_listen: daemon.http_addr().map(|a| a.to_string()),
        members: member_count,
        rate_per_minute: daemon.dispatcher.global_rate_per_minute(),
        channels: config
            .channels
            .iter()
            .map(|(name, c)| ChannelStatus {
                name: name.clone(),
                kind: c.kind.to_string(),
                rate_per_second: c.rate_per_second.or_else(|| {
                    channels
                        .get(name)
                        .and_then(|ch| ch.default_rate_per_second())
                }),
            })
            .collect(),
        scripts,
        last_config_reload: daemon.last_config_reload(),
        last_script_reload: daemon.last_script_reload(),
        pushes: active
            .iter()
            .map(|(p, c)| progress::summary(daemon, p, c, None))
            .collect(),
        alerts: daemon.alerts(),
    };
    ok(data)
}

pub async fn reload(daemon: &Arc<Daemon>, peer: &Peer) -> CommandResult {
    ok(daemon.reload_all(Some(peer.uid)).await)
}
