//! Receipts: the webhook HTTP listener, each platform's signature check and
//! payload parsing, and applying normalized events to deliveries and members.

use crate::model::InboundEvent;
use tokio::sync::mpsc;

/// An event from a channel instance, on its way to be applied.
#[derive(Debug, Clone, PartialEq)]
pub struct ChannelEvent {
    /// Channel instance name.
    pub channel: String,
    pub event: InboundEvent,
    /// The raw payload it came from, kept in the events table.
    pub raw: Option<String>,
}

/// Where adapters (the simulator) and the webhook server put events.
pub type ReceiptSink = mpsc::Sender<ChannelEvent>;

/// A webhook request as received, before any parsing: signatures are checked
/// on these exact bytes.
#[derive(Debug, Clone, Copy)]
pub struct WebhookRequest<'a> {
    pub method: &'a axum::http::Method,
    pub headers: &'a axum::http::HeaderMap,
    /// The raw query string (without '?'), e.g. WeChat's signature/timestamp/nonce.
    pub query: &'a str,
    pub body: &'a [u8],
    /// Now, in ms since the epoch (for timestamp windows; injectable in tests).
    pub now: crate::model::Millis,
}

/// What a verified webhook asks of us.
#[derive(Debug, Clone, PartialEq)]
pub enum WebhookOutcome {
    /// Apply these events, then answer 200 with `reply` (content type `reply_type`).
    Events {
        events: Vec<InboundEvent>,
        reply: String,
        reply_type: &'static str,
    },
    /// A verification handshake (Meta hub.challenge, Slack url_verification,
    /// WeChat echostr): answer 200 with this body as text/plain.
    Challenge(String),
}

/// Why a webhook was refused. Nothing is written for any of these.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WebhookError {
    /// Missing, malformed or wrong signature, or a timestamp outside the window: 401.
    #[error("unauthorized: {0}")]
    Unauthorized(String),
    /// Verification handshake with the wrong verify token: 403.
    #[error("forbidden: {0}")]
    Forbidden(String),
    /// Signed correctly but not a payload we understand: 400.
    #[error("bad request: {0}")]
    BadRequest(String),
    /// Wrong HTTP method for this platform: 405.
    #[error("method not allowed")]
    MethodNotAllowed,
}

pub mod custom;
pub mod messenger;
pub mod meta;
pub mod signature;
pub mod slack;
pub mod telegram;
pub mod webhook;
pub mod wechat;
pub mod whatsapp;
