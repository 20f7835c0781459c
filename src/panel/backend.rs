//! The panel's one door into the daemon: the commands. Every number and
//! every action of the panel goes through `commands::execute` with a typed
//! `Request` (decoded from the typed reply), exactly as the socket's do, so
//! a page shows what `pushd report` / `failures` / `export` print, and a
//! panel action is authorized and audited like a socket command (as
//! `panel:<session> (role)`). The sign-in state is the one thing the panel
//! stores itself (`store::panel`).

use crate::commands::{self, Actor, Handles, Reply, panel as panel_cmd};
use crate::model::now_ms;
use crate::protocol::{
    AudienceFromPushArgs, AudienceListArgs, AudiencePreviewArgs, AudienceRetryArgs,
    AudienceShowArgs, AuditListArgs, ChannelListArgs, PanelLoginData, PushFailuresArgs,
    PushListArgs, PushListData, PushPickWinnerArgs, PushRecipientsArgs, PushRef, Request, Response,
    StatusArgs, TemplateListArgs,
};
use crate::store::audit;
use crate::store::panel as store;
use bytes::Bytes;
use futures::Stream;
use serde::de::DeserializeOwned;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

pub use crate::protocol::{
    AudienceListData, AudienceShowData, AuditData, ChannelListData, ExportData, FailuresData,
    PreviewData, PreviewSample, PushCreateArgs, PushCreateData, PushShowData, PushSummary,
    RecipientsData, RetryAudienceData, StatusData, TemplateListData,
};
pub use crate::store::panel::{Role, Session};

/// A command's refusal or failure, with the socket's error code.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct BackendError {
    /// `not_found`, `invalid_args`, `conflict`, `forbidden`, `unavailable`, `internal`.
    pub code: String,
    pub message: String,
}

impl BackendError {
    fn internal(message: impl Into<String>) -> BackendError {
        BackendError {
            code: "internal".into(),
            message: message.into(),
        }
    }
}

impl From<crate::store::StoreError> for BackendError {
    fn from(e: crate::store::StoreError) -> Self {
        let code = if e.is_storage_fault() {
            "unavailable"
        } else {
            "internal"
        };
        BackendError {
            code: code.into(),
            message: e.to_string(),
        }
    }
}

pub type Result<T> = std::result::Result<T, BackendError>;

/// Recipients per page of a CSV download (the command's largest page).
const CSV_PAGE: u32 = 1000;
/// Audiences per page of the Audiences page.
pub const LIST_PAGE: u32 = 50;
/// Templates per page of the Templates page (each rendered several times).
pub const TEMPLATE_PAGE: u32 = 10;

/// What the panel reads of the configuration.
#[derive(Debug, Clone)]
pub struct Settings {
    pub enabled: bool,
    pub session_ttl: Duration,
    pub allow_remote: bool,
}

/// Cheap to clone: the commands' handles and the daemon's shutdown signal.
#[derive(Clone)]
pub struct Backend {
    h: Arc<Handles>,
    shutdown: CancellationToken,
}

impl Backend {
    pub fn new(h: Arc<Handles>, shutdown: CancellationToken) -> Backend {
        Backend { h, shutdown }
    }

    pub fn settings(&self) -> Settings {
        let cfg = self.h.config.get();
        Settings {
            enabled: cfg.panel.enabled && cfg.http.enabled,
            session_ttl: cfg.panel.session_ttl,
            allow_remote: cfg.panel.allow_remote,
        }
    }

    /// Fires when the daemon shuts down (live streams end then).
    pub fn shutdown(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    pub fn http_addr(&self) -> Option<SocketAddr> {
        self.h.process.http_addr.get().copied()
    }

    fn actor(session: Option<&Session>) -> Actor {
        match session {
            Some(s) => Actor::panel(label(s), s.role == Role::Admin),
            // Reads: no session is named, nothing is changed.
            None => Actor::panel("panel", false),
        }
    }

    async fn reply(&self, session: Option<&Session>, req: Request) -> Reply {
        commands::execute(&self.h, &Self::actor(session), req).await
    }

    async fn call<T: DeserializeOwned>(
        &self,
        session: Option<&Session>,
        req: Request,
    ) -> Result<T> {
        match self.reply(session, req).await {
            Reply::One(r) => decode(r),
            Reply::Stream(_) => Err(BackendError::internal(
                "a streamed reply where one was expected",
            )),
        }
    }

    // ---- reads -----------------------------------------------------------

    /// Every push, newest first (`push.list`).
    pub async fn pushes(&self) -> Result<Vec<PushSummary>> {
        let args = PushListArgs {
            status: None,
            limit: Some(200),
        };
        let data: PushListData = self.call(None, Request::PushList(args)).await?;
        Ok(data.pushes)
    }

    /// Progress and the report (`push.show`, whose report is `push.report`'s).
    pub async fn push(&self, push: &str) -> Result<PushShowData> {
        let args = PushRef { push: push.into() };
        self.call(None, Request::PushShow(args)).await
    }

    /// Sent Fail by class and code (`push.failures`).
    pub async fn failures(&self, push: &str) -> Result<FailuresData> {
        let args = PushFailuresArgs {
            push: push.into(),
            samples: Some(5),
        };
        self.call(None, Request::PushFailures(args)).await
    }

    /// The detailed report as CSV chunks (`push.export`, as `pushd export`
    /// writes it). An unknown push fails before any byte is produced; a
    /// failure mid-way ends the stream with an error, never a short file
    /// that looks complete.
    pub async fn export(
        &self,
        push: &str,
    ) -> Result<impl Stream<Item = std::result::Result<Bytes, BackendError>> + Send + 'static> {
        let args = PushRef { push: push.into() };
        let rx = match self.reply(None, Request::PushExport(args)).await {
            Reply::Stream(rx) => rx,
            Reply::One(r) => {
                decode::<serde_json::Value>(r)?;
                return Err(BackendError::internal("export did not stream"));
            }
        };
        Ok(futures::stream::unfold(Some(rx), |rx| async move {
            let mut rx = rx?;
            let resp = rx.recv().await;
            let Some(resp) = resp else {
                let e = BackendError::internal("the export ended early; see the daemon log");
                return Some((Err(e), None));
            };
            let more = resp.more;
            match decode::<ExportData>(resp) {
                Ok(chunk) if more => Some((Ok(Bytes::from(chunk.csv)), Some(rx))),
                Ok(chunk) => Some((Ok(Bytes::from(chunk.csv)), None)),
                Err(e) => Some((Err(e), None)),
            }
        }))
    }

    /// Template names of the live scripts (for Push again).
    pub async fn templates(&self) -> Result<Vec<String>> {
        let status = self.status().await?;
        Ok(status.scripts.map(|s| s.templates).unwrap_or_default())
    }

    /// An audience's size now and a few messages as `template` renders
    /// them (`audience.preview`: nothing is sent or written).
    pub async fn audience_preview(
        &self,
        name: &str,
        template: Option<&str>,
        samples: u32,
    ) -> Result<PreviewData> {
        let args = AudiencePreviewArgs {
            name: name.into(),
            limit: Some(samples),
            template: template.map(String::from),
        };
        self.call(None, Request::AudiencePreview(args)).await
    }

    /// A page of a push's recipients (`push.recipients`, as `pushd recipients`).
    pub async fn recipients(&self, args: PushRecipientsArgs) -> Result<RecipientsData> {
        self.call(None, Request::PushRecipients(args)).await
    }

    /// Every recipient the filter selects as CSV, page after page: the bytes
    /// `pushd recipients … --format csv` prints (the same `csv()` over the
    /// same pages). A bad filter or push fails before any byte is produced;
    /// a failure mid-way ends the stream with an error, never a short file.
    pub async fn recipients_csv(
        &self,
        mut args: PushRecipientsArgs,
    ) -> Result<impl Stream<Item = std::result::Result<Bytes, BackendError>> + Send + 'static> {
        args.limit = Some(CSV_PAGE);
        args.after = None;
        let first = self.recipients(args.clone()).await?;
        let backend = self.clone();
        let start = Some((Some(first), args, true));
        Ok(futures::stream::unfold(start, move |state| {
            let backend = backend.clone();
            async move {
                let (page, mut args, header) = state?;
                let page = match page {
                    Some(p) => p,
                    None => match backend.recipients(args.clone()).await {
                        Ok(p) => p,
                        Err(e) => return Some((Err(e), None)),
                    },
                };
                let chunk = Bytes::from(commands::recipients::csv(&page.recipients, header));
                let rest = page.next.map(|next| {
                    args.after = Some(next);
                    (None, args, false)
                });
                Some((Ok(chunk), rest))
            }
        }))
    }

    /// A page of audiences by name (`audience.list`).
    pub async fn audiences(&self, after: Option<String>) -> Result<AudienceListData> {
        let args = AudienceListArgs {
            after,
            limit: Some(LIST_PAGE),
        };
        self.call(None, Request::AudienceList(args)).await
    }

    /// One audience with its exact size and sample members (`audience.show`).
    pub async fn audience(&self, name: &str) -> Result<AudienceShowData> {
        let args = AudienceShowArgs {
            name: name.into(),
            limit: Some(10),
        };
        self.call(None, Request::AudienceShow(args)).await
    }

    /// A page of templates rendered for sample members (`template.list`).
    pub async fn template_page(&self, after: Option<String>) -> Result<TemplateListData> {
        let args = TemplateListArgs {
            after,
            limit: Some(TEMPLATE_PAGE),
        };
        self.call(None, Request::TemplateList(args)).await
    }

    /// The daemon at a glance (`status`): the Scripts page's generation
    /// and last reload attempt.
    pub async fn status(&self) -> Result<StatusData> {
        self.call(None, Request::Status(StatusArgs {})).await
    }

    /// The channels with rates, last error and webhook URL (`channel.list`).
    pub async fn channels(&self) -> Result<ChannelListData> {
        self.call(None, Request::ChannelList(ChannelListArgs {}))
            .await
    }

    /// A page of the audit trail (`audit.list`).
    pub async fn audit(&self, args: AuditListArgs) -> Result<AuditData> {
        self.call(None, Request::AuditList(args)).await
    }

    // ---- actions (authorized and audited as the session) -----------------

    /// The recipients a filter selects, saved as an audience with lineage.
    pub async fn audience_from_push(
        &self,
        who: &Session,
        args: AudienceFromPushArgs,
    ) -> Result<RetryAudienceData> {
        self.call(Some(who), Request::AudienceFromPush(args)).await
    }

    pub async fn create_retry_audience(
        &self,
        who: &Session,
        push: &str,
        name: &str,
        only: Option<&str>,
    ) -> Result<RetryAudienceData> {
        let args = AudienceRetryArgs {
            push: push.into(),
            name: name.into(),
            only: only.map(String::from),
        };
        self.call(Some(who), Request::AudienceRetry(args)).await
    }

    pub async fn create_push(&self, who: &Session, args: PushCreateArgs) -> Result<PushCreateData> {
        self.call(Some(who), Request::PushCreate(args)).await
    }

    pub async fn pause(&self, who: &Session, push: &str) -> Result<PushShowData> {
        let args = PushRef { push: push.into() };
        self.call(Some(who), Request::PushPause(args)).await
    }

    pub async fn pick_winner(
        &self,
        who: &Session,
        push: &str,
        variant: &str,
    ) -> Result<PushShowData> {
        let args = PushPickWinnerArgs {
            push: push.into(),
            variant: variant.into(),
        };
        self.call(Some(who), Request::PushPickWinner(args)).await
    }

    pub async fn resume(&self, who: &Session, push: &str) -> Result<PushShowData> {
        let args = PushRef { push: push.into() };
        self.call(Some(who), Request::PushResume(args)).await
    }

    pub async fn cancel(&self, who: &Session, push: &str) -> Result<PushShowData> {
        let args = PushRef { push: push.into() };
        self.call(Some(who), Request::PushCancel(args)).await
    }

    // ---- sign-in state -----------------------------------------------------

    /// The key that signs cookies and CSRF tokens (made once, kept).
    pub async fn signing_key(&self) -> Result<Vec<u8>> {
        let now = now_ms();
        Ok(self
            .h
            .store
            .write(move |c| store::signing_key(c, now))
            .await?)
    }

    /// Uses a one-time login link: a new session, or `None` when the link
    /// is unknown, used or expired. The session's start is audited.
    pub async fn redeem_login(&self, token: &str) -> Result<Option<Session>> {
        let now = now_ms();
        let ttl = self.settings().session_ttl.as_millis() as i64;
        let token = token.to_string();
        let id = hex::encode(store::random_bytes(8));
        let session = self
            .h
            .store
            .write(move |c| {
                let Some(role) = store::redeem_login(c, &token, now)? else {
                    return Ok(None);
                };
                let s = Session {
                    id,
                    role,
                    expires_at: now + ttl,
                };
                store::create_session(c, &s, now)?;
                Ok(Some(s))
            })
            .await?;
        if let Some(s) = &session {
            audit::log_by(
                &self.h.store,
                None,
                Some(&label(s)),
                "panel.session",
                None,
                true,
                None,
            )
            .await;
        }
        Ok(session)
    }

    pub async fn session(&self, id: &str) -> Result<Option<Session>> {
        let (id, now) = (id.to_string(), now_ms());
        Ok(self
            .h
            .store
            .read(move |c| store::session(c, &id, now))
            .await?)
    }

    pub async fn end_session(&self, who: &Session) -> Result<()> {
        let (id, now) = (who.id.clone(), now_ms());
        self.h
            .store
            .write(move |c| store::end_session(c, &id, now))
            .await?;
        audit::log_by(
            &self.h.store,
            None,
            Some(&label(who)),
            "panel.logout",
            None,
            true,
            None,
        )
        .await;
        Ok(())
    }

    /// The admin link `serve` prints when its output is a terminal.
    pub async fn startup_login(&self) -> Result<PanelLoginData> {
        let h = &self.h;
        let ttl = panel_cmd::DEFAULT_LINK_TTL;
        panel_cmd::issue_login(&h.store, &h.config, &h.process, Role::Admin, ttl, None)
            .await
            .map_err(|e| BackendError::internal(e.to_string()))
    }
}

/// How the audit trail names a session.
fn label(s: &Session) -> String {
    format!("panel:{} ({})", s.id, s.role)
}

fn decode<T: DeserializeOwned>(r: Response) -> Result<T> {
    if !r.ok {
        let e = r.error.unwrap_or(crate::protocol::ErrorBody {
            code: "internal".into(),
            message: "the command failed without saying why".into(),
        });
        return Err(BackendError {
            code: e.code,
            message: e.message,
        });
    }
    serde_json::from_value(r.data.unwrap_or(serde_json::Value::Null))
        .map_err(|e| BackendError::internal(format!("unexpected reply shape: {e}")))
}
