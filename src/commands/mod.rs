//! The commands: every operation the transports offer (the control socket
//! today, the web panel next), each one function taking the narrow handles
//! it needs and returning a typed reply. [`execute`] is the one `match` over
//! the request kinds; authorization and the audit record of state changes
//! happen there, once, whichever transport the request came through.

pub mod audience;
pub mod audit;
pub mod backup;
pub mod channel;
pub mod events;
pub mod members;
pub mod panel;
pub mod push;
pub mod recipients;
pub mod reload;
pub mod report;
pub mod status;
pub mod template;

use crate::alerts::Alerts;
use crate::channel::Channels;
use crate::config::LiveConfig;
use crate::dispatch::Dispatcher;
use crate::links::Links;
use crate::metrics::Metrics;
use crate::model::Millis;
use crate::protocol::{Request, Response};
use crate::script::Scripts;
use crate::store::{self, Store, StoreError};
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Instant;
use tokio::sync::mpsc;

pub use reload::ReloadLog;

/// The handles commands are given. Each command takes only the ones it
/// needs; transports hold this to call them.
pub struct Handles {
    pub store: Store,
    pub config: Arc<LiveConfig>,
    pub channels: Arc<Channels>,
    pub scripts: Arc<Scripts>,
    pub dispatcher: Arc<Dispatcher>,
    pub metrics: Arc<Metrics>,
    /// Tracked links (the HTTP listener's `/l/` route takes it from here).
    pub links: Arc<Links>,
    pub alerts: Arc<Alerts>,
    pub reloads: Arc<ReloadLog>,
    pub process: Arc<ProcessInfo>,
}

/// Facts about this daemon process, for `status`.
pub struct ProcessInfo {
    pub started: Instant,
    pub started_at_ms: Millis,
    /// The HTTP listener's bound address, once bound.
    pub http_addr: OnceLock<SocketAddr>,
}

/// Who asks, as the transport established it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    /// The socket peer's uid (recorded in the audit trail); None for the
    /// panel, whose sessions are named instead.
    pub uid: Option<u32>,
    /// May change state.
    pub admin: bool,
    /// A panel session, `panel:<session> (role)`, as the audit trail names it.
    pub session: Option<String>,
}

impl Actor {
    /// A control-socket peer.
    pub fn peer(uid: u32, admin: bool) -> Actor {
        Actor {
            uid: Some(uid),
            admin,
            session: None,
        }
    }

    /// A web panel session (`panel:<id> (role)`), or the panel's own reads.
    pub fn panel(session: impl Into<String>, admin: bool) -> Actor {
        Actor {
            uid: None,
            admin,
            session: Some(session.into()),
        }
    }

    /// How refusals and status reasons name the actor: `uid 1000`,
    /// `panel:3f2a… (admin)`.
    pub fn label(&self) -> String {
        match (&self.session, self.uid) {
            (Some(s), _) => s.clone(),
            (None, Some(uid)) => format!("uid {uid}"),
            (None, None) => "the daemon".into(),
        }
    }
}

/// A command's answer: one line, or a stream of lines (exports).
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
    pub fn code(&self) -> &'static str {
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

pub type CommandResult<T> = Result<T, CommandError>;

fn one(data: impl serde::Serialize) -> CommandResult<Reply> {
    Ok(Reply::One(Response::ok(data)))
}

/// Runs one request for `actor`: refuses a state change from a non-admin,
/// runs the command, and records every state change in the audit trail.
pub async fn execute(h: &Handles, actor: &Actor, req: Request) -> Reply {
    let mutates = req.mutates();
    if mutates && !actor.admin {
        let label = actor.label();
        tracing::warn!(actor = %label, cmd = req.cmd(), "refused state change from non-admin");
        let message = match &actor.session {
            Some(_) => format!("{} changes state; {label} may only read", req.cmd()),
            None => format!(
                "{} changes state; {label} is not in control.admins (read-only commands are allowed)",
                req.cmd()
            ),
        };
        return Reply::One(Response::err("forbidden", message));
    }
    let cmd = req.cmd();
    let target = req.target();
    let secret_reply = req.reply_is_secret();
    let has_secrets = req.reply_has_secrets();
    let result = run(h, actor, req).await;
    if mutates {
        let (ok, detail) = match &result {
            Ok(Reply::One(r)) if secret_reply => (r.ok, None),
            Ok(Reply::One(r)) => (r.ok, audit_detail(r, has_secrets)),
            Ok(Reply::Stream(_)) => (true, None),
            Err(e) => (false, Some(e.to_string())),
        };
        let session = actor.session.as_deref();
        store::audit::log_by(
            &h.store,
            actor.uid,
            session,
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

/// What the audit trail keeps of a reply: its data, or for a reply that may
/// show a secret to the admin who asked (a webhook verify token) only its
/// secret-free `summary`.
fn audit_detail(r: &Response, secret_reply: bool) -> Option<String> {
    let data = r.data.as_ref()?;
    if !secret_reply {
        return Some(data.to_string());
    }
    data.get("summary")
        .and_then(serde_json::Value::as_str)
        .map(str::to_string)
}

async fn run(h: &Handles, actor: &Actor, req: Request) -> CommandResult<Reply> {
    let (store, dispatcher, scripts) = (&h.store, &h.dispatcher, &h.scripts);
    match req {
        Request::Status(_) => one(status::status(h).await?),
        Request::Reload(_) => one(reload::all(h, actor.uid).await),
        Request::MembersImport(a) => members::import(store, a).await,
        Request::AuditList(a) => one(audit::list(store, a).await?),
        Request::PushCreate(a) => one(push::create(store, dispatcher, scripts, actor, a).await?),
        Request::PushList(a) => one(push::list(store, dispatcher, a).await?),
        Request::PushShow(a) => one(push::show(store, dispatcher, &a.push).await?),
        Request::PushPause(a) => one(push::pause(store, dispatcher, actor, &a.push).await?),
        Request::PushResume(a) => one(push::resume(store, dispatcher, &a.push).await?),
        Request::PushCancel(a) => one(push::cancel(store, dispatcher, &a.push).await?),
        Request::PushPickWinner(a) => one(push::pick_winner(store, dispatcher, actor, a).await?),
        Request::PushReport(a) => one(report::report(store, &a.push).await?),
        Request::PushFailures(a) => one(report::failures(store, a).await?),
        Request::PushExport(a) => Ok(Reply::Stream(report::export(store, &a.push).await?)),
        Request::AudiencePreview(a) => one(audience::preview(store, scripts, a).await?),
        Request::AudienceRetry(a) => one(audience::retry(store, scripts, actor, a).await?),
        Request::EventsList(a) => one(events::list(store, a).await?),
        Request::PushRecipients(a) => one(recipients::list(store, a).await?),
        Request::AudienceFromPush(a) => one(recipients::from_push(store, scripts, actor, a).await?),
        Request::PanelLogin(a) => one(panel::login(store, &h.config, &h.process, actor, a).await?),
        Request::PanelLogoutAll(_) => one(panel::logout_all(store).await?),
        Request::ChannelTest(a) => channel::test(&h.channels, a).await,
        Request::ChannelWebhook(a) => channel::webhook(&h.channels, &h.config, &h.process, a).await,
        Request::StoreBackup(a) => one(backup::backup(store, a).await?),
        Request::AudienceList(a) => one(audience::list(store, scripts, a).await?),
        Request::AudienceShow(a) => one(audience::show(store, scripts, a).await?),
        Request::TemplateList(a) => one(template::list(store, scripts, &h.config, a).await?),
        Request::ChannelList(_) => one(channel::list(h)),
    }
}
