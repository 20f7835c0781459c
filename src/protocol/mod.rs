//! The control protocol, shared by the daemon and the CLI so it cannot drift:
//! one JSON object per line each way.
//!
//! Request: `{"cmd":"status"}` or `{"cmd":"push.create","args":{...}}`.
//! Reply: `{"ok":true,"data":{...}}` or `{"ok":false,"error":{"code":"...","message":"..."}}`.
//! A streamed reply (export) is several `{"ok":true,"data":…,"more":true}` lines
//! ended by one without `more`.

mod audience;
mod audit;
mod channel;
mod panel;
mod push;
mod recipients;
mod status;
mod store;
mod template;

pub use audience::*;
pub use audit::*;
pub use channel::*;
pub use panel::*;
pub use push::*;
pub use recipients::*;
use serde::{Deserialize, Serialize};
use serde_json::Value;
pub use status::*;
pub use store::*;
pub use template::*;

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
