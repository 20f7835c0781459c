//! Domain types shared by every layer: members, messages, delivery states,
//! send outcomes and inbound events. Each concept is defined once, here.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::time::Duration;

pub type MemberId = i64;
pub type PushId = i64;
pub type DeliveryId = i64;

/// Milliseconds since the Unix epoch; the one timestamp unit in the store.
pub type Millis = i64;

pub fn now_ms() -> Millis {
    chrono::Utc::now().timestamp_millis() + *CLOCK_OFFSET_MS
}

/// Tests only: `PUSHD_TEST_CLOCK_OFFSET_MS` moves this process's wall clock
/// (every stored time, the calendar days of frequency caps, quiet hours),
/// so the real binary can be tested seconds before a member's midnight.
/// `serve` warns loudly when it is set.
static CLOCK_OFFSET_MS: std::sync::LazyLock<i64> = std::sync::LazyLock::new(|| {
    std::env::var("PUSHD_TEST_CLOCK_OFFSET_MS")
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
});

/// The test clock offset in force, if any (see `now_ms`).
pub fn clock_offset_ms() -> Option<i64> {
    Some(*CLOCK_OFFSET_MS).filter(|o| *o != 0)
}

/// Renders a stored timestamp the way operators read it (RFC 3339, UTC).
pub fn fmt_ms(ms: Millis) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_else(|| ms.to_string())
}

/// The platform a channel instance speaks (`kind` in config).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Platform {
    Whatsapp,
    Messenger,
    Instagram,
    Telegram,
    Slack,
    Wechat,
    Webchat,
    Custom,
    Simulator,
}

impl Platform {
    pub const ALL: [Platform; 9] = [
        Platform::Whatsapp,
        Platform::Messenger,
        Platform::Instagram,
        Platform::Telegram,
        Platform::Slack,
        Platform::Wechat,
        Platform::Webchat,
        Platform::Custom,
        Platform::Simulator,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Platform::Whatsapp => "whatsapp",
            Platform::Messenger => "messenger",
            Platform::Instagram => "instagram",
            Platform::Telegram => "telegram",
            Platform::Slack => "slack",
            Platform::Wechat => "wechat",
            Platform::Webchat => "webchat",
            Platform::Custom => "custom",
            Platform::Simulator => "simulator",
        }
    }

    pub fn parse(s: &str) -> Option<Platform> {
        Platform::ALL.into_iter().find(|p| p.as_str() == s)
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A subscriber as stored, and as handed to Lua (`m`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Member {
    pub id: MemberId,
    /// Channel instance name from config (`[channels.<name>]`).
    pub channel: String,
    pub channel_user_id: String,
    pub name: String,
    pub locale: String,
    pub timezone: String,
    /// Sorted, unique.
    pub tags: Vec<String>,
    pub attributes: serde_json::Map<String, serde_json::Value>,
    pub subscribed: bool,
    pub last_interaction_at: Option<Millis>,
}

/// The delivery state machine: `pending → sending → sent | failed | skipped`,
/// plus `cancelled` for recipients a cancelled push never reached.
/// The numeric codes are what the store keeps (and what its counter triggers see).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeliveryState {
    Pending = 0,
    Sending = 1,
    Sent = 2,
    Failed = 3,
    Skipped = 4,
    Cancelled = 5,
}

impl DeliveryState {
    pub const ALL: [DeliveryState; 6] = [
        DeliveryState::Pending,
        DeliveryState::Sending,
        DeliveryState::Sent,
        DeliveryState::Failed,
        DeliveryState::Skipped,
        DeliveryState::Cancelled,
    ];

    pub fn code(self) -> i64 {
        self as i64
    }

    pub fn from_code(code: i64) -> Option<DeliveryState> {
        DeliveryState::ALL.into_iter().find(|s| s.code() == code)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryState::Pending => "pending",
            DeliveryState::Sending => "sending",
            DeliveryState::Sent => "sent",
            DeliveryState::Failed => "failed",
            DeliveryState::Skipped => "skipped",
            DeliveryState::Cancelled => "cancelled",
        }
    }

    pub fn is_final(self) -> bool {
        matches!(
            self,
            DeliveryState::Sent
                | DeliveryState::Failed
                | DeliveryState::Skipped
                | DeliveryState::Cancelled
        )
    }
}

impl fmt::Display for DeliveryState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A button the recipient can tap; `payload` comes back in the click event.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Button {
    pub title: String,
    /// Postback payload (reply buttons, callback data). Absent for URL buttons.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload: Option<String>,
    /// Opens a link instead of posting back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
}

/// A channel-neutral free-form message, as templates render it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Message {
    pub text: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub buttons: Vec<Button>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub quick_replies: Vec<Button>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_url: Option<String>,
}

/// What actually goes to a platform for one recipient.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Outbound {
    /// Free-form message (inside the platform's messaging window).
    Message {
        #[serde(flatten)]
        message: Message,
        /// Messenger/Instagram message tag (e.g. `ACCOUNT_UPDATE`) for sends outside the window.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        tag: Option<String>,
    },
    /// A pre-approved platform template (WhatsApp templates, WeChat template messages).
    Template {
        name: String,
        language: String,
        #[serde(default)]
        params: Vec<String>,
    },
}

/// The result of `route()` + render for one recipient.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Routed {
    Send { channel: String, outbound: Outbound },
    Skip { reason: String },
}

/// How a failed send is classified; decides retry vs fail vs pause.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorClass {
    /// Timeouts, 5xx, connection errors, unparseable replies: retried with backoff.
    Transient,
    /// The platform asked us to slow down: retried, honouring retry-after.
    RateLimited,
    /// The user blocked the bot, deactivated, or unsubscribed on the platform.
    Blocked,
    /// The recipient does not exist / is not reachable on this platform.
    InvalidRecipient,
    /// Outside the platform's messaging window (switch to a template / tag).
    OutsideWindow,
    /// Bad, expired or revoked credentials: pauses the push.
    Auth,
    /// Any other permanent refusal (message rejected, bad request).
    Rejected,
    /// The daemon died while the request was in flight; never resent automatically.
    Interrupted,
}

impl ErrorClass {
    pub const ALL: [ErrorClass; 8] = [
        ErrorClass::Transient,
        ErrorClass::RateLimited,
        ErrorClass::Blocked,
        ErrorClass::InvalidRecipient,
        ErrorClass::OutsideWindow,
        ErrorClass::Auth,
        ErrorClass::Rejected,
        ErrorClass::Interrupted,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ErrorClass::Transient => "transient",
            ErrorClass::RateLimited => "rate_limited",
            ErrorClass::Blocked => "blocked",
            ErrorClass::InvalidRecipient => "invalid_recipient",
            ErrorClass::OutsideWindow => "outside_window",
            ErrorClass::Auth => "auth",
            ErrorClass::Rejected => "rejected",
            ErrorClass::Interrupted => "interrupted",
        }
    }

    pub fn parse(s: &str) -> Option<ErrorClass> {
        ErrorClass::ALL.into_iter().find(|c| c.as_str() == s)
    }

    /// Worth sending again later, by the retry policy or a retry audience.
    pub fn is_transient(self) -> bool {
        matches!(
            self,
            ErrorClass::Transient | ErrorClass::RateLimited | ErrorClass::Interrupted
        )
    }
}

impl fmt::Display for ErrorClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A platform accepted the message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SendOk {
    pub provider_message_id: String,
}

/// A platform (or the network) refused the message. `code` and `message` are the
/// platform's own, so operators can look them up in its documentation.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{class} [{code}]: {message}")]
pub struct SendError {
    pub class: ErrorClass,
    pub code: String,
    pub message: String,
    pub retry_after: Option<Duration>,
    /// Set when the platform refused because the whole channel is out of
    /// quota until this time (ms since the epoch), e.g. WeChat's daily API
    /// quota (45009): every send on the channel fails the same way until
    /// then, so the channel's sends should stop (with an alert) rather than
    /// this recipient be retried in a few seconds.
    pub channel_quota_reset_at: Option<Millis>,
}

impl SendError {
    pub fn new(class: ErrorClass, code: impl Into<String>, message: impl Into<String>) -> Self {
        SendError {
            class,
            code: code.into(),
            message: message.into(),
            retry_after: None,
            channel_quota_reset_at: None,
        }
    }

    pub fn with_retry_after(mut self, after: Option<Duration>) -> Self {
        self.retry_after = after;
        self
    }

    /// Marks the error as the channel's quota being used up until `reset_at`.
    pub fn with_channel_quota_reset_at(mut self, reset_at: Millis) -> Self {
        self.channel_quota_reset_at = Some(reset_at);
        self
    }
}

/// Delivery progress reported by a platform for one message we sent.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum StatusUpdate {
    Sent,
    Delivered,
    Read,
    /// An asynchronous failure after the platform accepted the message.
    Failed {
        code: String,
        message: String,
    },
}

/// One normalized inbound webhook event (or simulator receipt).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum InboundEvent {
    /// Status of a message we sent, by the provider's message id.
    Status {
        provider_message_id: String,
        update: StatusUpdate,
        /// The platform user the message went to, when the payload says.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        user: Option<String>,
        at: Millis,
    },
    /// Messenger-style watermark: everything sent to `user` up to `watermark` was delivered/read.
    /// `mids` lists specific message ids when the platform sends them.
    Watermark {
        user: String,
        read: bool,
        watermark: Millis,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        mids: Vec<String>,
        at: Millis,
    },
    /// The user wrote to us or tapped a button.
    Message {
        user: String,
        /// Platform's id for this inbound message; the idempotency key.
        id: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        name: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        text: Option<String>,
        /// Set for button clicks / quick replies.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        payload: Option<String>,
        /// Provider id of the message this one replies to, when known.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        context_id: Option<String>,
        at: Millis,
    },
    /// The user blocked the bot / left (e.g. Telegram `my_chat_member` kicked).
    Unsubscribed { user: String, at: Millis },
}

impl InboundEvent {
    pub fn kind(&self) -> &'static str {
        match self {
            InboundEvent::Status { update, .. } => match update {
                StatusUpdate::Sent => "status_sent",
                StatusUpdate::Delivered => "status_delivered",
                StatusUpdate::Read => "status_read",
                StatusUpdate::Failed { .. } => "status_failed",
            },
            InboundEvent::Watermark { read: true, .. } => "read_watermark",
            InboundEvent::Watermark { read: false, .. } => "delivery_watermark",
            InboundEvent::Message {
                payload: Some(_), ..
            } => "button",
            InboundEvent::Message { .. } => "message",
            InboundEvent::Unsubscribed { .. } => "unsubscribed",
        }
    }
}

/// An event from a channel instance, on its way to be applied: from a
/// verified webhook, or fed back by the simulator.
#[derive(Debug, Clone, PartialEq)]
pub struct ChannelEvent {
    /// Channel instance name.
    pub channel: String,
    pub event: InboundEvent,
    /// The raw payload it came from, kept in the events table.
    pub raw: Option<String>,
}

/// Where channels that produce their own receipts (the simulator) put them;
/// the receipts applier drains it.
pub type EventSink = tokio::sync::mpsc::Sender<ChannelEvent>;

/// A value bound to a `?` parameter of SQL built outside the store (an
/// audience's compiled `where`).
#[derive(Debug, Clone, PartialEq)]
pub enum SqlValue {
    Integer(i64),
    Real(f64),
    Text(String),
}

/// A recipient shown as an example of a failure group.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FailureSample {
    pub member_id: i64,
    pub channel: String,
    pub channel_user_id: String,
    pub attempts: u32,
}

/// Failed recipients of one error class and code.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FailureGroup {
    pub class: String,
    pub code: String,
    pub count: u64,
    /// The platform's own message (one example).
    pub message: String,
    pub samples: Vec<FailureSample>,
}
