//! panel.login and panel.logout_all: the web panel's sign-in links, issued
//! only to admins (authorization and the audit record are `execute`'s, like
//! every state change; the link itself never reaches the audit trail).

use super::{Actor, CommandError, CommandResult, ProcessInfo};
use crate::config::LiveConfig;
use crate::model::{fmt_ms, now_ms};
use crate::protocol::{PanelLoginArgs, PanelLoginData, PanelLogoutAllData};
use crate::store::Store;
use crate::store::panel::{self, Role};
use crate::util::duration;
use std::time::Duration;

/// A link nobody opened within this long is void (`--ttl` overrides).
pub const DEFAULT_LINK_TTL: Duration = Duration::from_secs(15 * 60);
const MAX_LINK_TTL: Duration = Duration::from_secs(7 * 86400);

pub async fn login(
    store: &Store,
    config: &LiveConfig,
    process: &ProcessInfo,
    actor: &Actor,
    a: PanelLoginArgs,
) -> CommandResult<PanelLoginData> {
    let ttl = match a.ttl.as_deref() {
        None => DEFAULT_LINK_TTL,
        Some(t) => duration::parse(t).map_err(|e| CommandError::Invalid(format!("--ttl: {e}")))?,
    };
    if ttl < Duration::from_secs(1) || ttl > MAX_LINK_TTL {
        return Err(CommandError::Invalid(format!(
            "--ttl {}: a login link must live between 1s and 7d",
            duration::format(ttl)
        )));
    }
    let role = if a.viewer { Role::Viewer } else { Role::Admin };
    issue_login(store, config, process, role, ttl, actor.uid).await
}

/// Creates a one-time login link (also used by `serve` on a terminal).
pub async fn issue_login(
    store: &Store,
    config: &LiveConfig,
    process: &ProcessInfo,
    role: Role,
    ttl: Duration,
    created_by: Option<u32>,
) -> CommandResult<PanelLoginData> {
    let cfg = config.get();
    if !cfg.panel.enabled {
        return Err(CommandError::Unavailable(
            "the panel is off ([panel] enabled = false in the config)".into(),
        ));
    }
    let Some(addr) = process.http_addr.get() else {
        return Err(CommandError::Unavailable(
            "the HTTP listener is off ([http] enabled = false), so there is no panel to log in to"
                .into(),
        ));
    };
    let host = if addr.ip().is_unspecified() {
        format!("localhost:{}", addr.port())
    } else {
        addr.to_string()
    };
    let token = hex::encode(panel::random_bytes(32));
    let now = now_ms();
    let expires_at = now + ttl.as_millis() as i64;
    let t = token.clone();
    store
        .write(move |c| panel::create_login(c, &t, role, created_by, now, expires_at))
        .await?;
    Ok(PanelLoginData {
        url: format!("http://{host}/login/{token}"),
        role: role.to_string(),
        expires_at: fmt_ms(expires_at),
    })
}

pub async fn logout_all(store: &Store) -> CommandResult<PanelLogoutAllData> {
    let now = now_ms();
    let sessions_ended = store.write(move |c| panel::end_all(c, now)).await?;
    Ok(PanelLogoutAllData { sessions_ended })
}
