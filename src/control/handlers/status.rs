use super::{CommandResult, ok};
use crate::control::protocol::{ChannelStatus, StatusData};
use crate::daemon::Daemon;
use crate::model::fmt_ms;
use crate::store::members;
use std::sync::Arc;

pub async fn status(daemon: &Arc<Daemon>) -> CommandResult {
    let config = daemon.config();
    let member_count = daemon.store.read(members::count).await?;
    let data = StatusData {
        version: env!("CARGO_PKG_VERSION").to_string(),
        pid: std::process::id(),
        started_at: fmt_ms(daemon.started_at_ms),
        uptime_secs: daemon.started.elapsed().as_secs(),
        config_path: config.path.display().to_string(),
        config_loaded_at: fmt_ms(daemon.config_loaded_at()),
        database_path: config.database_path.display().to_string(),
        socket_path: config.socket_path.display().to_string(),
        http_listen: config.http.enabled.then(|| config.http.listen.clone()),
        members: member_count,
        rate_per_minute: config.dispatch.rate_per_minute,
        channels: config
            .channels
            .iter()
            .map(|(name, c)| ChannelStatus {
                name: name.clone(),
                kind: c.kind.to_string(),
                rate_per_second: c.rate_per_second,
            })
            .collect(),
        last_reload: daemon.last_reload(),
        alerts: daemon.alerts(),
        ..Default::default()
    };
    ok(data)
}

pub async fn reload(daemon: &Arc<Daemon>) -> CommandResult {
    ok(daemon.reload_all().await)
}
