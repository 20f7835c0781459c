//! One `match` over the request kinds, one file per kind. Authorization and
//! the audit record for state changes happen here, once, for every command.

mod audience;
mod audit;
mod events;
mod members;
pub mod panel;
mod push;
mod report;
mod status;

use super::auth::{self, Peer};
use super::protocol::{Request, Response};
use crate::daemon::Daemon;
use crate::store::StoreError;
use std::sync::Arc;
use tokio::sync::mpsc;

/// A handler's answer: one line, or a stream of lines (exports).
pub enum Reply {
    One(Response),
    Stream(mpsc::Receiver<Response>),
}

impl From<Response> for Reply {
    fn from(r: Response) -> Reply {
        Reply::One(r)
    }
}

/// An operator-facing failure of a command.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Unavailable(String),
    #[error("{0}")]
    Internal(String),
}

impl CommandError {
    fn code(&self) -> &'static str {
        match self {
            CommandError::NotFound(_) => "not_found",
            CommandError::Invalid(_) => "invalid_args",
            CommandError::Conflict(_) => "conflict",
            CommandError::Unavailable(_) => "unavailable",
            CommandError::Internal(_) => "internal",
        }
    }
}

impl From<StoreError> for CommandError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound(m) => CommandError::NotFound(m),
            StoreError::Invalid(m) => CommandError::Invalid(m),
            e if e.is_storage_fault() => CommandError::Unavailable(e.to_string()),
            e => CommandError::Internal(e.to_string()),
        }
    }
}

pub type CommandResult = Result<Reply, CommandError>;

pub fn ok(data: impl serde::Serialize) -> CommandResult {
    Ok(Reply::One(Response::ok(data)))
}

/// Who is asking, as authorization and the audit trail see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    /// May run commands that change state.
    pub admin: bool,
    /// What the audit trail names besides the uid: `panel:<session> (role)`
    /// for the web panel, `None` for a socket peer (its uid says who).
    pub label: Option<String>,
}

impl Actor {
    /// A socket peer: admin by its kernel credentials.
    pub fn peer(peer: &Peer, control: &crate::config::ControlConfig) -> Actor {
        Actor {
            admin: auth::is_admin(peer, control),
            label: None,
        }
    }

    /// How refusals and status reasons name the actor.
    pub fn describe(&self, peer: &Peer) -> String {
        self.label
            .clone()
            .unwrap_or_else(|| format!("uid {}", peer.uid))
    }
}

pub async fn handle(daemon: &Arc<Daemon>, peer: &Peer, req: Request) -> Reply {
    let actor = Actor::peer(peer, &daemon.config().control);
    handle_as(daemon, peer, &actor, req).await
}

/// [`handle`] for a caller that is not (only) a socket peer: the web panel
/// passes the daemon's own uid as `peer` and its session as `actor`.
pub async fn handle_as(daemon: &Arc<Daemon>, peer: &Peer, actor: &Actor, req: Request) -> Reply {
    let mutates = req.mutates();
    if mutates && !actor.admin {
        tracing::warn!(
            uid = peer.uid,
            actor = actor.label.as_deref(),
            cmd = req.cmd(),
            "refused state change from non-admin peer"
        );
        let message = match &actor.label {
            Some(label) => format!("{} changes state; {label} may only read", req.cmd()),
            None => format!(
                "{} changes state; uid {} is not in control.admins (read-only commands are allowed)",
                req.cmd(),
                peer.uid
            ),
        };
        return Reply::One(Response::err("forbidden", message));
    }
    let cmd = req.cmd();
    let target = req.target();
    let secret_reply = req.reply_is_secret();
    let result = dispatch(daemon, peer, actor, req).await;
    if mutates {
        let (ok, detail) = match &result {
            Ok(Reply::One(r)) if secret_reply => (r.ok, None),
            Ok(Reply::One(r)) => (r.ok, r.data.as_ref().map(|d| d.to_string())),
            Ok(Reply::Stream(_)) => (true, None),
            Err(e) => (false, Some(e.to_string())),
        };
        daemon
            .audit_by(
                Some(peer.uid),
                actor.label.as_deref(),
                cmd,
                target.as_deref(),
                ok,
                detail,
            )
            .await;
    }
    match result {
        Ok(reply) => reply,
        Err(e) => Reply::One(Response::err(e.code(), e.to_string())),
    }
}

async fn dispatch(daemon: &Arc<Daemon>, peer: &Peer, actor: &Actor, req: Request) -> CommandResult {
    match req {
        Request::Status(_) => status::status(daemon).await,
        Request::Reload(_) => status::reload(daemon, peer).await,
        Request::MembersImport(a) => members::import(daemon, a).await,
        Request::AuditList(a) => audit::list(daemon, a).await,
        Request::PushCreate(a) => push::create(daemon, peer, a).await,
        Request::PushList(a) => push::list(daemon, a).await,
        Request::PushShow(a) => push::show(daemon, a).await,
        Request::PushPause(a) => push::pause(daemon, &actor.describe(peer), a).await,
        Request::PushResume(a) => push::resume(daemon, a).await,
        Request::PushCancel(a) => push::cancel(daemon, a).await,
        Request::PushReport(a) => report::report(daemon, a).await,
        Request::PushFailures(a) => report::failures(daemon, a).await,
        Request::PushExport(a) => report::export(daemon, a).await,
        Request::AudiencePreview(a) => audience::preview(daemon, a).await,
        Request::AudienceRetry(a) => audience::retry(daemon, peer, a).await,
        Request::EventsList(a) => events::list(daemon, a).await,
        Request::PanelLogin(a) => panel::login(daemon, peer, a).await,
        Request::PanelLogoutAll(_) => panel::logout_all(daemon).await,
    }
}
