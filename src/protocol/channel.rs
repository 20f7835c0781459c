//! Wire types of `channel.list`, `channel.test` and `channel.webhook`: the
//! configured channels and connecting a real one (`pushd channel test|webhook`).

pub use crate::channel::onboard::{WebhookField, WebhookSetup};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChannelTestArgs {
    /// The channel instance (`[channels.NAME]`).
    pub name: String,
    /// Also send one test message to this user (the platform's id for them).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChannelWebhookArgs {
    pub name: String,
    /// The public base URL platforms reach pushd at (default: `[http]
    /// public_url`, else the listen address).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// Remove the webhook (Telegram's deleteWebhook).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub delete: bool,
}

/// What `channel.test` found. The reply is `ok: false` (with this data)
/// when a step failed.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ChannelTestData {
    pub channel: String,
    pub kind: String,
    /// The credential check.
    pub check: ChannelStep,
    /// The test message, when one was asked for (`to`) and the check passed.
    pub send: Option<ChannelStep>,
    /// One line, no secret: what the audit trail keeps.
    pub summary: String,
}

/// One call to a platform and how it went.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ChannelStep {
    /// The call, without credentials.
    pub call: String,
    pub ok: bool,
    /// What the platform answered, when it worked.
    pub answer: Option<String>,
    /// Worth knowing either way.
    pub notes: Vec<String>,
    pub error: Option<ChannelStepError>,
}

/// A failed step: the platform's error as pushd classifies it, and what to do.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ChannelStepError {
    pub class: String,
    pub code: String,
    pub message: String,
    pub advice: String,
}

/// What `channel.webhook` printed and did.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ChannelWebhookData {
    pub channel: String,
    pub kind: String,
    /// `PUBLIC_BASE/webhooks/NAME` (absent with `delete`).
    pub url: Option<String>,
    /// Where the public base came from: `--url`, `http.public_url` or `http.listen`.
    pub base_from: String,
    /// Problems with the URL platforms would have to reach.
    pub warnings: Vec<String>,
    /// What to enter in the platform's console (absent with `delete`).
    pub setup: Option<WebhookSetup>,
    /// The platform's answer where pushd registers the webhook itself (Telegram).
    pub registration: Option<ChannelStep>,
    /// One line, no secret: what the audit trail keeps.
    pub summary: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChannelListArgs {}

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
