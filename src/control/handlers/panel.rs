//! panel.login and panel.logout_all: the web panel's sign-in links, issued
//! only to admins over the socket (authorization and the audit record are
//! `handle`'s, like every state change).

use super::{CommandError, CommandResult, ok};
use crate::control::auth::Peer;
use crate::control::protocol::{PanelLoginArgs, PanelLoginData, PanelLogoutAllData};
use crate::daemon::Daemon;
use crate::model::{fmt_ms, now_ms};
use crate::store::panel::{self, Role};
use crate::util::duration;
use std::sync::Arc;
use std::time::Duration;

/// A link nobody opened within this long is void (`--ttl` overrides).
pub const DEFAULT_LINK_TTL: Duration = Duration::from_secs(15 * 60);
const MAX_LINK_TTL: Duration = Duration::from_secs(7 * 86400);

pub async fn login(d: &Arc<Daemon>, peer: &Peer, a: PanelLoginArgs) -> CommandResult {
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
    ok(issue_login(d, role, ttl, Some(peer.uid)).await?)
}

/// Creates a one-time login link (also used by `serve` on a terminal).
pub async fn issue_login(
    d: &Daemon,
    role: Role,
    ttl: Duration,
    created_by: Option<u32>,
) -> Result<PanelLoginData, CommandError> {
    let cfg = d.config();
    if !cfg.panel.enabled {
        return Err(CommandError::Unavailable(
            "the panel is off ([panel] enabled = false in the config)".into(),
        ));
    }
    let Some(addr) = d.http_addr() else {
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
    d.store
        .write(move |c| panel::create_login(c, &t, role, created_by, now, expires_at))
        .await?;
    Ok(PanelLoginData {
        url: format!("http://{host}/login/{token}"),
        role: role.to_string(),
        expires_at: fmt_ms(expires_at),
    })
}

pub async fn logout_all(d: &Arc<Daemon>) -> CommandResult {
    let now = now_ms();
    let sessions_ended = d.store.write(move |c| panel::end_all(c, now)).await?;
    ok(PanelLogoutAllData { sessions_ended })
}
