//! The control protocol, shared by the daemon and the CLI so it cannot drift:
//! one JSON object per line each way.
//!
//! Request: `{"cmd":"status"}` or `{"cmd":"push.create","args":{...}}`.
//! Reply: `{"ok":true,"data":{...}}` or `{"ok":false,"error":{"code":"...","message":"..."}}`.
//! A streamed reply (export) is several `{"ok":true,"data":…,"more":true}` lines
//! ended by one without `more`.

mod channel;

pub use crate::analytics::Report as ReportData;
use crate::import::ImportReport;
use crate::model::FailureGroup;
use crate::model::Routed;
use crate::model::{MemberId, Millis, PushId};
pub use crate::store::BackupReport as BackupData;
pub use channel::*;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Why a request line was refused before it reached a command.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{message}")]
pub struct ProtoError {
    pub code: &'static str,
    pub message: String,
}

impl ProtoError {
    pub fn new(code: &'static str, message: impl Into<String>) -> ProtoError {
        ProtoError {
            code,
            message: message.into(),
        }
    }
}

#[derive(Serialize, Deserialize)]
struct RawRequest {
    cmd: String,
    #[serde(default, skip_serializing_if = "Value::is_null")]
    args: Value,
}

macro_rules! requests {
    ($( $variant:ident($args:ty) = $name:literal, mutates: $m:literal; )*) => {
        /// Every command the daemon understands.
        #[derive(Debug, Clone, PartialEq)]
        pub enum Request { $( $variant($args), )* }

        /// The command names, for help and error messages.
        pub const COMMANDS: &[&str] = &[$($name),*];

        impl Request {
            pub fn cmd(&self) -> &'static str {
                match self { $( Request::$variant(_) => $name, )* }
            }

            /// Changes state, so only admins may run it, and it is audited.
            pub fn mutates(&self) -> bool {
                match self { $( Request::$variant(_) => $m, )* }
            }

            fn from_raw(raw: RawRequest) -> Result<Request, ProtoError> {
                let args = if raw.args.is_null() { Value::Object(Default::default()) } else { raw.args };
                match raw.cmd.as_str() {
                    $( $name => serde_json::from_value::<$args>(args)
                        .map(Request::$variant)
                        .map_err(|e| ProtoError::new("invalid_args", format!("{}: {e}", $name))), )*
                    other => Err(ProtoError::new(
                        "unknown_command",
                        format!("unknown command {other:?} (commands: {})", COMMANDS.join(", ")),
                    )),
                }
            }

            fn args_value(&self) -> Value {
                let v = match self { $( Request::$variant(a) => serde_json::to_value(a), )* };
                v.unwrap_or(Value::Null)
            }
        }
    };
}

requests! {
    Status(StatusArgs) = "status", mutates: false;
    Reload(ReloadArgs) = "reload", mutates: true;
    MembersImport(MembersImportArgs) = "members.import", mutates: true;
    AuditList(AuditListArgs) = "audit.list", mutates: false;
    PushCreate(PushCreateArgs) = "push.create", mutates: true;
    PushList(PushListArgs) = "push.list", mutates: false;
    PushShow(PushRef) = "push.show", mutates: false;
    PushPause(PushRef) = "push.pause", mutates: true;
    PushResume(PushRef) = "push.resume", mutates: true;
    PushCancel(PushRef) = "push.cancel", mutates: true;
    PushPickWinner(PushPickWinnerArgs) = "push.pick_winner", mutates: true;
    PushReport(PushRef) = "push.report", mutates: false;
    PushFailures(PushFailuresArgs) = "push.failures", mutates: false;
    PushExport(PushRef) = "push.export", mutates: false;
    AudiencePreview(AudiencePreviewArgs) = "audience.preview", mutates: false;
    AudienceRetry(AudienceRetryArgs) = "audience.retry", mutates: true;
    EventsList(EventsListArgs) = "events.list", mutates: false;
    PushRecipients(PushRecipientsArgs) = "push.recipients", mutates: false;
    AudienceFromPush(AudienceFromPushArgs) = "audience.from_push", mutates: true;
    PanelLogin(PanelLoginArgs) = "panel.login", mutates: true;
    PanelLogoutAll(PanelLogoutAllArgs) = "panel.logout_all", mutates: true;
    ChannelTest(ChannelTestArgs) = "channel.test", mutates: true;
    ChannelWebhook(ChannelWebhookArgs) = "channel.webhook", mutates: true;
    StoreBackup(StoreBackupArgs) = "store.backup", mutates: true;
    AudienceList(AudienceListArgs) = "audience.list", mutates: false;
    AudienceShow(AudienceShowArgs) = "audience.show", mutates: false;
    TemplateList(TemplateListArgs) = "template.list", mutates: false;
    ChannelList(ChannelListArgs) = "channel.list", mutates: false;
}

impl Request {
    /// Parses one request line (without the newline).
    pub fn parse(line: &[u8]) -> Result<Request, ProtoError> {
        let text = std::str::from_utf8(line)
            .map_err(|_| ProtoError::new("bad_request", "request is not valid UTF-8"))?;
        let raw: RawRequest = serde_json::from_str(text).map_err(|e| {
            ProtoError::new(
                "bad_request",
                format!("request is not a JSON object with a \"cmd\" ({e})"),
            )
        })?;
        Request::from_raw(raw)
    }

    /// The request as one line (with the newline).
    pub fn to_line(&self) -> String {
        let raw = RawRequest {
            cmd: self.cmd().to_string(),
            args: self.args_value(),
        };
        let mut s = serde_json::to_string(&raw).unwrap_or_else(|_| "{}".into());
        s.push('\n');
        s
    }

    /// What the audit trail names as the target of this request.
    pub fn target(&self) -> Option<String> {
        match self {
            Request::PushCreate(a) => a.name.clone().or_else(|| Some(a.audience.clone())),
            Request::PushShow(p)
            | Request::PushPause(p)
            | Request::PushResume(p)
            | Request::PushCancel(p)
            | Request::PushReport(p)
            | Request::PushExport(p) => Some(p.push.clone()),
            Request::PushFailures(a) => Some(a.push.clone()),
            Request::PushPickWinner(a) => Some(format!("{} -> {}", a.push, a.variant)),
            Request::AudienceRetry(a) => Some(format!("{} -> {}", a.push, a.name)),
            Request::AudienceFromPush(a) => Some(format!("{} -> {}", a.push, a.name)),
            Request::PushRecipients(a) => Some(a.push.clone()),
            Request::AudiencePreview(a) => Some(a.name.clone()),
            Request::MembersImport(a) => a.path.clone().or_else(|| Some("inline".into())),
            Request::PanelLogin(a) => Some(if a.viewer { "viewer" } else { "admin" }.into()),
            Request::ChannelTest(a) => Some(a.name.clone()),
            Request::ChannelWebhook(a) => Some(a.name.clone()),
            Request::StoreBackup(a) => Some(a.path.clone()),
            _ => None,
        }
    }

    /// The reply carries a credential (a login link): the audit trail
    /// records that it was issued, never the reply itself.
    pub fn reply_is_secret(&self) -> bool {
        matches!(self, Request::PanelLogin(_))
    }

    /// The reply may show a secret to the admin who asked (a webhook verify
    /// token): the audit trail keeps only the reply's secret-free `summary`.
    pub fn reply_has_secrets(&self) -> bool {
        matches!(self, Request::ChannelTest(_) | Request::ChannelWebhook(_))
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StatusArgs {}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReloadArgs {}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MembersImportArgs {
    /// A file the daemon reads (absolute path; the CLI resolves it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Or the rows themselves (CSV with header, or JSON lines), for small imports.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<String>,
    #[serde(default)]
    pub skip_invalid: bool,
}

/// `store.backup`: a consistent copy of the live database, written by the
/// daemon to `path`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreBackupArgs {
    /// Where the daemon writes the copy (absolute; the CLI resolves it).
    pub path: String,
    /// Replace `path` if it exists.
    #[serde(default)]
    pub force: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditListArgs {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
    /// Only this action (or its sub-actions: "push" matches "push.create").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<String>,
    /// Only this actor: a uid (`1000` or `uid 1000`), `daemon`, or a panel
    /// actor's name or its start (`panel` for every session).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor: Option<String>,
    /// Entries older than this id: the `next` of the previous page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub before: Option<i64>,
}

/// Names a push by id or unique name.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PushRef {
    pub push: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PushCreateArgs {
    pub audience: String,
    pub template: String,
    /// Unique name; generated when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// RFC 3339 time or "now" (default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_per_minute: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch_size: Option<u32>,
    /// Human duration, e.g. "1h".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch_every: Option<String>,
    /// "HH:MM" in each member's timezone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window_from: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window_to: Option<String>,
    /// "bypass": `[policy]` (frequency caps, quiet hours) does not apply,
    /// for transactional messages; audited as `push.policy_bypass`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<String>,
    /// A/B test share of a template with variants ("20%" or "0.2"): sent
    /// first; the winner goes to the rest after `test_wait`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test_share: Option<String>,
    /// Human duration, e.g. "2h".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test_wait: Option<String>,
    /// "read" (default), "interacted" or "clicked".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test_metric: Option<String>,
    /// "auto" (default) or "manual" (`push.pick_winner`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub winner: Option<String>,
    /// Share of the audience held out as a control group ("5%").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub holdout: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PushPickWinnerArgs {
    pub push: String,
    pub variant: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PushListArgs {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PushFailuresArgs {
    pub push: String,
    /// Sample recipients listed per error group.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub samples: Option<u32>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AudiencePreviewArgs {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
    /// Render with this template instead of the one a push names.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AudienceRetryArgs {
    pub push: String,
    pub name: String,
    /// "transient": only failures worth retrying as they are.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub only: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventsListArgs {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub push: Option<String>,
    /// Member id, or `channel:channel_user_id`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub member: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
}

/// Which recipients of a push: the filter fields `push.recipients` and
/// `audience.from_push` share.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecipientFilter<'a> {
    pub outcome: Option<&'a str>,
    pub channel: Option<&'a str>,
    pub locale: Option<&'a str>,
    pub error_class: Option<&'a str>,
    pub error_code: Option<&'a str>,
    pub variant: Option<&'a str>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PushRecipientsArgs {
    pub push: String,
    /// read_and_interacted, read_only, interacted_only, clicked,
    /// not_read_or_interacted, sent_fail, skipped, cancelled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub locale: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_class: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_code: Option<String>,
    /// Only recipients of this A/B variant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
    /// Page size (default 50, at most 1000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
    /// The `next` cursor of the previous page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AudienceFromPushArgs {
    pub push: String,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub locale: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_class: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_code: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
}

impl PushRecipientsArgs {
    pub fn filter(&self) -> RecipientFilter<'_> {
        RecipientFilter {
            outcome: self.outcome.as_deref(),
            channel: self.channel.as_deref(),
            locale: self.locale.as_deref(),
            error_class: self.error_class.as_deref(),
            error_code: self.error_code.as_deref(),
            variant: self.variant.as_deref(),
        }
    }
}

impl AudienceFromPushArgs {
    pub fn filter(&self) -> RecipientFilter<'_> {
        RecipientFilter {
            outcome: self.outcome.as_deref(),
            channel: self.channel.as_deref(),
            locale: self.locale.as_deref(),
            error_class: self.error_class.as_deref(),
            error_code: self.error_code.as_deref(),
            variant: self.variant.as_deref(),
        }
    }
}

/// One page of a push's recipients.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RecipientsData {
    pub push: String,
    /// Recipients matching the filter, when countable without a scan
    /// (outcome and error filters); None with a channel or locale filter.
    pub total: Option<u64>,
    pub recipients: Vec<RecipientInfo>,
    /// Cursor for the next page (`after`); None on the last page.
    pub next: Option<String>,
}

/// A recipient and what happened to its message, with times.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RecipientInfo {
    pub delivery_id: i64,
    pub member_id: i64,
    pub channel: String,
    pub channel_user_id: String,
    pub name: String,
    pub locale: String,
    /// The report slice (or skipped / cancelled); None while pending.
    pub outcome: Option<String>,
    pub state: String,
    pub attempts: u32,
    pub timeline: Timeline,
    pub error: Option<RecipientError>,
    pub skip_reason: Option<String>,
    /// The A/B variant it was (or will be) sent; absent without variants.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
}

/// The recipient's timeline (RFC 3339 times, absent when it did not happen).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Timeline {
    /// When the push froze its audience (the recipient was queued).
    pub queued: Option<String>,
    pub sent: Option<String>,
    pub delivered: Option<String>,
    pub read: Option<String>,
    pub interacted: Option<String>,
    /// What the interaction carried (reply text or button payload).
    pub interaction: Option<String>,
    pub failed: Option<String>,
}

/// Why a recipient failed, in the platform's words.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RecipientError {
    pub class: String,
    pub code: String,
    pub message: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PanelLoginArgs {
    /// A read-only session instead of an admin one.
    #[serde(default)]
    pub viewer: bool,
    /// How long the link stays usable, e.g. "15m" (default 15m, at most 7d).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PanelLogoutAllArgs {}

/// A page of audiences, by name: `after` is the `next` of the previous page.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AudienceListArgs {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<String>,
    /// Audiences per page (default 50, at most 200).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AudienceShowArgs {
    pub name: String,
    /// Sample members shown (default 10, at most 100).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
}

/// A page of templates, by name, each rendered for sample members.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TemplateListArgs {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<String>,
    /// Templates per page (default 10, at most 50).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChannelListArgs {}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub code: String,
    pub message: String,
}

/// One reply line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Response {
    pub ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorBody>,
    /// More lines follow for this request (streamed replies).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub more: bool,
}

impl Response {
    pub fn ok(data: impl Serialize) -> Response {
        Response {
            ok: true,
            data: Some(serde_json::to_value(data).unwrap_or(Value::Null)),
            error: None,
            more: false,
        }
    }

    pub fn chunk(data: impl Serialize) -> Response {
        Response {
            more: true,
            ..Response::ok(data)
        }
    }

    pub fn err(code: &str, message: impl Into<String>) -> Response {
        Response {
            ok: false,
            data: None,
            error: Some(ErrorBody {
                code: code.to_string(),
                message: message.into(),
            }),
            more: false,
        }
    }

    pub fn to_line(&self) -> String {
        let mut s = serde_json::to_string(self).unwrap_or_else(|_| {
            "{\"ok\":false,\"error\":{\"code\":\"internal\",\"message\":\"unserializable reply\"}}"
                .into()
        });
        s.push('\n');
        s
    }
}

// ---- reply payloads --------------------------------------------------------

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StatusData {
    pub version: String,
    pub pid: u32,
    pub started_at: String,
    pub uptime_secs: u64,
    pub config_path: String,
    pub config_loaded_at: String,
    pub database_path: String,
    pub socket_path: String,
    pub http_listen: Option<String>,
    pub members: u64,
    pub rate_per_minute: u32,
    pub channels: Vec<ChannelStatus>,
    pub scripts: Option<ScriptStatus>,
    pub last_config_reload: Option<ReloadStatus>,
    pub last_script_reload: Option<ReloadStatus>,
    pub pushes: Vec<PushSummary>,
    /// Problems the operator should act on (storage faults, paused pushes).
    pub alerts: Vec<String>,
    /// `[policy]` in force.
    #[serde(default)]
    pub policy: PolicyStatus,
}

/// The delivery policy in force (`[policy]`), as `status` shows it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PolicyStatus {
    /// Messages per member per calendar day, all pushes together.
    pub max_per_day: Option<u32>,
    pub max_per_week: Option<u32>,
    /// "21:00-08:00", in each member's timezone.
    pub quiet_hours: Option<String>,
    /// For members without a timezone.
    pub default_timezone: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ChannelStatus {
    pub name: String,
    pub kind: String,
    pub rate_per_second: Option<f64>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ScriptStatus {
    pub generation: i64,
    pub hash: String,
    pub loaded_at: String,
    pub files: Vec<String>,
    pub audiences: Vec<String>,
    pub templates: Vec<String>,
    pub pushes: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ReloadStatus {
    pub at: String,
    /// "scripts" or "config".
    pub what: String,
    /// Scripts: the generation number this attempt would have (or has) become.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempt: Option<i64>,
    pub ok: bool,
    /// file:line problems of a failed reload.
    pub errors: Vec<String>,
    /// Changed settings that only take effect after a restart.
    pub restart_required: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PushSummary {
    pub id: i64,
    pub name: String,
    pub status: String,
    pub status_reason: Option<String>,
    pub audience: String,
    pub template: String,
    pub start_at: String,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
    pub recipients: u64,
    pub sent: u64,
    pub failed: u64,
    pub skipped: u64,
    pub cancelled: u64,
    pub remaining: u64,
    /// Messages per minute over the last minute.
    pub current_rate: f64,
    pub rate_limit: Option<u32>,
    pub eta: Option<String>,
    pub eta_secs: Option<u64>,
    pub generation: Option<i64>,
    pub retry_of: Option<String>,
    /// "bypass" when `[policy]` does not apply to this push.
    #[serde(default)]
    pub policy: Option<String>,
    /// Recipients held by quiet hours or the send window (part of `remaining`).
    #[serde(default)]
    pub held: u64,
    /// When the last held recipient is released.
    #[serde(default)]
    pub held_until: Option<String>,
    /// When sending resumes, while every remaining recipient is held.
    #[serde(default)]
    pub resumes_at: Option<String>,
    /// The A/B plan and where it stands; None for a push without one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ab: Option<AbSummary>,
}

/// A push's A/B variants and its phase.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AbSummary {
    /// The plan in words ("variants a, b; test 20% then …").
    pub plan: String,
    pub variants: Vec<String>,
    /// "test", "waiting", "winner" or "split" (no test).
    pub phase: String,
    /// When the winner is due (auto), once the test share is sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decide_at: Option<String>,
    /// "auto" or "manual" (a push with a test).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub winner_mode: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub winner: Option<String>,
    /// Who chose it: "auto" or the admin.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decided_by: Option<String>,
}

pub type ImportData = ImportReport;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AuditData {
    pub entries: Vec<AuditEntry>,
    /// `before` for the next (older) page; None on the last page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<i64>,
}

/// One entry of the audit trail.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditEntry {
    pub id: i64,
    pub at: Millis,
    /// Peer uid over the socket; `None` when the daemon acted on its own
    /// (file-watch reload, startup).
    pub uid: Option<u32>,
    /// Who acted when it was not a socket peer: `panel:<session> (role)`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor: Option<String>,
    pub action: String,
    pub target: Option<String>,
    pub ok: bool,
    pub detail: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ReloadData {
    pub config: ReloadStatus,
    pub scripts: ReloadStatus,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PushCreateData {
    pub push: PushSummary,
    /// Advice the operator should read (e.g. an ETA over an hour).
    pub warnings: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PushListData {
    pub pushes: Vec<PushSummary>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PushShowData {
    pub push: PushSummary,
    pub report: ReportData,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FailuresData {
    pub push: String,
    pub sent_fail: u64,
    pub groups: Vec<FailureGroup>,
}

/// One chunk of a streamed CSV export; the last line carries `rows`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ExportData {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub csv: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rows: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PreviewSample {
    pub member_id: i64,
    pub channel: String,
    pub channel_user_id: String,
    pub name: String,
    pub locale: String,
    /// The routed channel and rendered message, or why it would be skipped.
    pub routed: Option<Routed>,
    pub error: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PreviewData {
    pub audience: String,
    pub template: Option<String>,
    /// Members the audience resolves to now (after `filter`), unsubscribed included.
    pub size: u64,
    pub subscribed: u64,
    /// `size` and `subscribed` are estimates: the audience's Lua filter ran
    /// on its first candidates only (a preview's budget), and the rest is
    /// extrapolated from the share it kept.
    #[serde(default)]
    pub estimated: bool,
    pub samples: Vec<PreviewSample>,
}

/// A saved audience.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AudienceInfo {
    pub id: i64,
    pub name: String,
    /// The push it was made from (retry audiences).
    pub source_push_id: Option<PushId>,
    /// `transient` when only transient failures were taken.
    pub only_class: Option<String>,
    /// The outcome its members had in the source push (`sent_fail` for
    /// retry audiences).
    #[serde(default)]
    pub outcome: Option<String>,
    /// The other filters it was made with, e.g. `channel=wa locale=en`.
    #[serde(default)]
    pub filter: Option<String>,
    pub created_at: Millis,
    pub members: u64,
}

/// An audience as the Audiences page and `audience.list` show it: its
/// definition as written and where (script audiences), or its lineage
/// (saved audiences).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AudienceSummary {
    pub name: String,
    /// "script" (defined in the scripts) or "saved" (made from a push).
    pub kind: String,
    pub description: Option<String>,
    /// The `where` as written (Lua); None for saved audiences, `{}` for
    /// an audience without one.
    #[serde(rename = "where")]
    pub where_text: Option<String>,
    /// A Lua `filter` refines what `where` selects.
    pub has_filter: bool,
    /// `file:line` of its definition.
    pub defined_at: Option<String>,
    /// Members it holds now (unsubscribed included); None when a Lua
    /// filter refines it (`audience.show` counts it exactly).
    pub size: Option<u64>,
    /// Members the `where` selects, before the Lua filter.
    pub matches_where: Option<u64>,
    /// Pushes defined in the scripts that send to it.
    pub pushes: Vec<String>,
    pub lineage: Option<Lineage>,
}

/// Where a saved audience came from.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Lineage {
    /// The source push's name (None once that push is gone).
    pub source_push: Option<String>,
    pub source_push_id: Option<PushId>,
    /// The outcome its members had there (`sent_fail` for retry audiences).
    pub outcome: Option<String>,
    /// The other filters, e.g. `channel=wa locale=en`.
    pub filter: Option<String>,
    /// `transient` when only transient failures were taken.
    pub only: Option<String>,
    pub created_at: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AudienceListData {
    pub audiences: Vec<AudienceSummary>,
    /// `after` for the next page; None on the last page.
    pub next: Option<String>,
}

/// A member as an audience's sample lists it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MemberSample {
    pub member_id: MemberId,
    pub channel: String,
    pub channel_user_id: String,
    pub name: String,
    pub locale: String,
    pub tags: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AudienceShowData {
    pub audience: AudienceSummary,
    /// Members it resolves to now (after `filter`), unsubscribed included.
    pub size: u64,
    pub subscribed: u64,
    /// `size` and `subscribed` are estimates (see `PreviewData::estimated`).
    #[serde(default)]
    pub estimated: bool,
    /// The first subscribed members, in id order.
    pub sample: Vec<MemberSample>,
}

/// A template with each of its renderings for sample members.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TemplateInfo {
    pub name: String,
    pub defined_at: String,
    /// Locales of its generic tables.
    pub locales: Vec<String>,
    /// Platforms with their own version, and that version's locales.
    pub platform_versions: Vec<PlatformVersion>,
    /// A `render` function makes its messages.
    pub has_render: bool,
    /// One rendering per configured platform × locale.
    pub samples: Vec<TemplateSample>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PlatformVersion {
    pub platform: String,
    pub locales: Vec<String>,
    /// A channel of this platform is configured (else the version is only
    /// checked against the platform's rules at load).
    pub configured: bool,
}

/// The template as one sample member gets it: rendered and routed, exactly
/// as `audience preview` (and a push) does.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TemplateSample {
    pub platform: String,
    pub locale: String,
    /// A real member of that channel and locale; false: a made-up "Sample
    /// Member" (no such member among the channel's first ones).
    pub real_member: bool,
    pub sample: PreviewSample,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TemplateListData {
    /// The live generation the templates come from.
    pub generation: i64,
    pub templates: Vec<TemplateInfo>,
    /// `after` for the next page; None on the last page.
    pub next: Option<String>,
}

/// A configured channel instance, its rates and how it has been doing.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ChannelSummary {
    pub name: String,
    pub kind: String,
    /// `rate_per_second` in config, if set.
    pub configured_rate_per_second: Option<f64>,
    /// The platform's documented default for one instance.
    pub default_rate_per_second: Option<f64>,
    /// Sends the platform accepted per minute, over the last minute.
    pub current_per_minute: f64,
    pub last_error: Option<ChannelError>,
    /// Where the platform must send its webhooks (None: the channel takes
    /// none, or the HTTP listener is off).
    pub webhook_url: Option<String>,
}

/// A channel's last send error, in the platform's words.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ChannelError {
    pub at: String,
    pub class: String,
    pub code: String,
    pub message: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ChannelListData {
    pub channels: Vec<ChannelSummary>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RetryAudienceData {
    pub audience: AudienceInfo,
    pub source_push: String,
}

/// A one-time panel login link.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PanelLoginData {
    /// `http://HOST/login/TOKEN`: works once, until `expires_at`.
    pub url: String,
    pub role: String,
    pub expires_at: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PanelLogoutAllData {
    pub sessions_ended: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct EventsData {
    pub events: Vec<LogEntry>,
}

/// One line of the message log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogEntry {
    pub at: String,
    pub at_ms: Millis,
    /// "in" (webhook / receipt) or "out" (a send).
    pub direction: String,
    pub channel: String,
    pub kind: String,
    pub member_id: Option<MemberId>,
    pub push_id: Option<PushId>,
    pub delivery_id: Option<i64>,
    pub detail: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_errors() {
        let r = Request::PushCreate(PushCreateArgs {
            audience: "a".into(),
            template: "t".into(),
            ..Default::default()
        });
        let line = r.to_line();
        assert_eq!(Request::parse(line.trim_end().as_bytes()).unwrap(), r);
        assert_eq!(
            Request::parse(br#"{"cmd":"status"}"#).unwrap(),
            Request::Status(StatusArgs {})
        );
        assert_eq!(Request::parse(b"{nope").unwrap_err().code, "bad_request");
        assert_eq!(
            Request::parse(br#"{"cmd":"fly"}"#).unwrap_err().code,
            "unknown_command"
        );
        let e = Request::parse(br#"{"cmd":"push.create","args":{"audience":"a"}}"#).unwrap_err();
        assert_eq!(e.code, "invalid_args");
        assert!(e.message.contains("template"), "{}", e.message);
        assert!(Request::parse(br#"{"cmd":"status","args":{"x":1}}"#).is_err());
    }
}

#[cfg(test)]
mod proptests {
    use super::*;
    use proptest::prelude::*;

    const CODES: &[&str] = &["bad_request", "unknown_command", "invalid_args"];

    proptest! {
        #![proptest_config(ProptestConfig { cases: 2000, failure_persistence: None, ..ProptestConfig::default() })]

        /// Any bytes: a request or a clean error with a known code, never a panic.
        #[test]
        fn parse_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            if let Err(e) = Request::parse(&bytes) {
                prop_assert!(CODES.contains(&e.code));
                prop_assert!(!e.message.is_empty());
            }
        }

        /// Well-formed JSON with arbitrary commands and argument shapes.
        #[test]
        fn json_requests_are_parsed_or_refused(
            cmd in prop_oneof![proptest::sample::select(COMMANDS.to_vec()).prop_map(String::from), ".{0,20}"],
            key in "[a-z_]{1,12}",
            val in prop_oneof![Just(serde_json::json!(null)), any::<i64>().prop_map(|n| serde_json::json!(n)), ".{0,30}".prop_map(|s| serde_json::json!(s)), Just(serde_json::json!([1, "x"]))],
        ) {
            let line = serde_json::json!({ "cmd": cmd, "args": { key: val } }).to_string();
            match Request::parse(line.as_bytes()) {
                Ok(r) => {
                    // What parses round-trips through the CLI's serializer.
                    let again = Request::parse(r.to_line().trim_end().as_bytes());
                    prop_assert_eq!(again.ok(), Some(r));
                }
                Err(e) => prop_assert!(CODES.contains(&e.code)),
            }
        }
    }
}
