//! Channel adapters: one `Channel` trait, one file per platform, the built-in
//! simulator, and the factory that builds instances from `[channels.*]`.

use crate::model::{DeliveryId, MemberId, Outbound, Platform, SendError, SendOk};
use async_trait::async_trait;
use std::sync::Arc;
use std::time::Duration;

pub mod activity;
pub mod custom;
mod error;
pub mod factory;
pub(crate) mod http;
pub mod instagram;
pub mod messenger;
pub(crate) mod meta;
pub mod onboard;
mod registry;
pub mod simulator;
pub mod slack;
pub mod telegram;
pub mod wechat;
pub mod whatsapp;

pub use error::{ChannelError, Rule, RuleError};
pub use factory::build;
pub use onboard::{Probe, ProbeAnswer, ProbeFailure};
pub use registry::{BuildError, ChannelSet, Channels, build_set};

/// A platform's message rules, as its adapter's [`Channel::validate`]
/// applies them, without an instance: scripts check a template's own
/// version for a platform (`wechat = { … }`) with it even when no channel of
/// that kind is configured. The error names the platform and the rule.
pub fn rules(platform: Platform, outbound: &Outbound) -> Result<(), RuleError> {
    use messenger::Flavor;
    match platform {
        Platform::Whatsapp => whatsapp::rules(outbound),
        Platform::Messenger => messenger::rules(Flavor::Messenger, outbound),
        Platform::Instagram => messenger::rules(Flavor::Instagram, outbound),
        Platform::Telegram => telegram::rules(outbound),
        Platform::Slack => slack::rules(outbound),
        Platform::Wechat => wechat::rules(outbound),
        Platform::Webchat | Platform::Custom => custom::rules(platform, outbound),
        Platform::Simulator => simulator::rules(outbound),
    }
}

/// Who a message goes to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recipient {
    pub member_id: MemberId,
    /// The platform's id for the user (phone number, PSID, chat id, OPENID, ...).
    pub channel_user_id: String,
    /// Stable across retries: adapters that support idempotency keys use it.
    pub delivery_id: DeliveryId,
    /// Which attempt at this delivery this is (1 = the first).
    pub attempt: u32,
}

/// A named instance of a platform (`[channels.<name>]`).
#[async_trait]
pub trait Channel: Send + Sync {
    /// The instance name from config.
    fn name(&self) -> &str;

    fn platform(&self) -> Platform;

    /// Checks, at script-load time, that `outbound` can be expressed on this
    /// platform within its limits (button counts, title lengths, ...).
    /// The error says what is wrong and what the limit is.
    fn validate(&self, outbound: &Outbound) -> Result<(), RuleError>;

    /// Sends one message. Every response — success, documented error, HTML
    /// error page, truncated body, timeout — becomes `Ok` or a classified
    /// `SendError`; never a panic.
    async fn send(&self, to: &Recipient, outbound: &Outbound) -> Result<SendOk, SendError>;

    /// The platform's documented default throughput for one instance, in
    /// messages per second (`rate_per_second` in config overrides it).
    fn default_rate_per_second(&self) -> Option<f64>;

    /// Checks the credentials with the platform's harmless call (nothing is
    /// sent to anyone) and says what the platform answered, or what failed
    /// and what to do about it (`pushd channel test`).
    async fn probe(&self) -> Probe;

    /// Registers this channel's webhook at `url` through the platform's API,
    /// or removes it with `None` (`pushd channel webhook`). `None` for
    /// platforms whose webhook is entered in their console instead.
    async fn register_webhook(&self, _url: Option<&str>) -> Option<Probe> {
        None
    }
}

/// What adapters share: one HTTP client (connection pool, rustls), timeouts,
/// and the receipt path (used by the simulator to feed receipts back).
#[derive(Clone)]
pub struct ChannelContext {
    pub http: reqwest::Client,
    /// Per-request timeout unless the channel sets `timeout`.
    pub send_timeout: Duration,
    pub receipts: crate::model::EventSink,
}

/// Builds the shared HTTP client.
pub fn http_client() -> Result<reqwest::Client, ChannelError> {
    reqwest::Client::builder()
        // No cap on idle connections: `dispatch.concurrency` already bounds
        // how many are open, and a cap below it closes connections a burst
        // of sends needs again a moment later (measured: at concurrency 512
        // a cap of 256 halved throughput to a loopback mock).
        .tcp_nodelay(true)
        .connect_timeout(Duration::from_secs(10))
        .user_agent(concat!("pushd/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(ChannelError::HttpClient)
}

pub type ChannelRef = Arc<dyn Channel>;
