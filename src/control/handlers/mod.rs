//! One `match` over the request kinds, one file per kind. Authorization and
//! the audit record for state changes happen here, once, for every command.

mod audience;
mod audit;
mod events;
mod members;
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

pub async fn handle(daemon: &Arc<Daemon>, peer: &Peer, req: Request) -> Reply {
    let mutates = req.mutates();
    if mutates && !auth::is_admin(peer, &daemon.config().control) {
        tracing::warn!(
            uid = peer.uid,
            cmd = req.cmd(),
            "refused state change from non-admin peer"
        );
        return Reply::One(Response::err(
            "forbidden",
            format!(
                "{} changes state; uid {} is not in control.admins (read-only commands are allowed)",
                req.cmd(),
                peer.uid
            ),
        ));
    }
    let cmd = req.cmd();
    let target = req.target();
    let result = dispatch(daemon, peer, req).await;
    if mutates {
        let (ok, detail) = match &result {
            Ok(Reply::One(r)) => (r.ok, r.data.as_ref().map(|d| d.to_string())),
            Ok(Reply::Stream(_)) => (true, None),
            Err(e) => (false, Some(e.to_string())),
        };
        daemon
            .audit(Some(peer.uid), cmd, target.as_deref(), ok, detail)
            .await;
    }
    match result {
        Ok(reply) => reply,
        Err(e) => Reply::One(Response::err(e.code(), e.to_string())),
    }
}

async fn dispatch(daemon: &Arc<Daemon>, peer: &Peer, req: Request) -> CommandResult {
    match req {
        Request::Status(_) => status::status(daemon).await,
        Request::Reload(_) => status::reload(daemon, peer).await,
        Request::MembersImport(a) => members::import(daemon, a).await,
        Request::AuditList(a) => audit::list(daemon, a).await,
        Request::PushCreate(a) => push::create(daemon, peer, a).await,
        Request::PushList(a) => push::list(daemon, a).await,
        Request::PushShow(a) => push::show(daemon, a).await,
        Request::PushPause(a) => push::pause(daemon, peer, a).await,
        Request::PushResume(a) => push::resume(daemon, a).await,
        Request::PushCancel(a) => push::cancel(daemon, a).await,
        Request::PushReport(a) => report::report(daemon, a).await,
        Request::PushFailures(a) => report::failures(daemon, a).await,
        Request::PushExport(a) => report::export(daemon, a).await,
        Request::AudiencePreview(a) => audience::preview(daemon, a).await,
        Request::AudienceRetry(a) => audience::retry(daemon, peer, a).await,
        Request::EventsList(a) => events::list(daemon, a).await,
    }
}
