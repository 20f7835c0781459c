//! `status`: the daemon at a glance — process, config, database, channels,
//! scripts, reloads, active pushes with progress, and alerts.

use super::{CommandResult, Handles};
use crate::dispatch::progress;
use crate::model::fmt_ms;
use crate::protocol::{ChannelStatus, PolicyStatus, ScriptStatus, StatusData};
use crate::store::{members, pushes};

/// Status reports on every part of the daemon, so it reads every handle.
pub async fn status(h: &Handles) -> CommandResult<StatusData> {
    let config = h.config.get();
    let (member_count, active) = h
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
    let scripts = h.scripts.live().map(|g| ScriptStatus {
        generation: g.number,
        hash: g.hash.clone(),
        loaded_at: fmt_ms(g.loaded_at),
        files: g.files.clone(),
        audiences: g.audiences.keys().cloned().collect(),
        templates: g.templates.keys().cloned().collect(),
        pushes: g.pushes.iter().map(|p| p.name.clone()).collect(),
    });
    let channels = h.channels.all();
    let mut alerts: Vec<String> = h.store.fault_alert().into_iter().collect();
    if h.scripts.live().is_none()
        && let Some(last) = h.reloads.scripts().filter(|r| !r.ok)
    {
        alerts.push(super::reload::nothing_live(&last));
    }
    alerts.extend(h.alerts.list());
    Ok(StatusData {
        version: env!("CARGO_PKG_VERSION").to_string(),
        pid: std::process::id(),
        started_at: fmt_ms(h.process.started_at_ms),
        uptime_secs: h.process.started.elapsed().as_secs(),
        config_path: config.path.display().to_string(),
        config_loaded_at: fmt_ms(h.config.loaded_at()),
        database_path: config.database_path.display().to_string(),
        socket_path: config.socket_path.display().to_string(),
        http_listen: h.process.http_addr.get().map(|a| a.to_string()),
        members: member_count,
        rate_per_minute: h.dispatcher.global_rate_per_minute(),
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
        last_config_reload: h.reloads.config(),
        last_script_reload: h.reloads.scripts(),
        pushes: active
            .iter()
            .map(|(p, c)| progress::summary(p, c, &h.dispatcher.live(p.id), None))
            .collect(),
        alerts,
        policy: PolicyStatus {
            max_per_day: config.policy.max_per_member.day,
            max_per_week: config.policy.max_per_member.week,
            quiet_hours: config.policy.quiet_hours.map(|q| q.to_string()),
            default_timezone: config.policy.default_timezone.name().to_string(),
        },
    })
}
