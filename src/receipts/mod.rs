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
    /// Cannot be taken now (the replay memory is full); the platform retries: 503.
    #[error("unavailable: {0}")]
    Unavailable(String),
}

pub mod apply;
pub mod batch;
pub mod server;

use crate::daemon::Daemon;
use std::collections::BTreeMap;
use std::sync::Arc;

/// Most events folded into one write.
const APPLY_BATCH: usize = 2000;

/// Applies events from the in-process sink (the simulator's receipts) in
/// batches, one transaction per batch.
pub async fn run_applier(d: Arc<Daemon>, mut rx: mpsc::Receiver<ChannelEvent>) {
    loop {
        let first = tokio::select! {
            e = rx.recv() => match e { Some(e) => e, None => return },
            _ = d.shutdown.cancelled() => return,
        };
        let mut batch = vec![first];
        while batch.len() < APPLY_BATCH {
            match rx.try_recv() {
                Ok(e) => batch.push(e),
                Err(_) => break,
            }
        }
        let mut by_channel: BTreeMap<String, Vec<apply::Prepared>> = BTreeMap::new();
        for e in batch {
            by_channel
                .entry(e.channel)
                .or_default()
                .push(apply::Prepared::new(e.event));
        }
        let cfg = d.config();
        let groups: Arc<Vec<(apply::ApplyContext, Vec<apply::Prepared>)>> = Arc::new(
            by_channel
                .into_iter()
                .filter_map(|(ch, evs)| {
                    let kind = cfg.channels.get(&ch)?.kind;
                    Some((server::apply_context(&d, &ch, kind), evs))
                })
                .collect(),
        );
        let mut delay = std::time::Duration::from_millis(100);
        loop {
            let groups = groups.clone();
            let r = d
                .store
                .write(move |c| {
                    for (ctx, evs) in groups.iter() {
                        apply::apply_prepared(c, ctx, evs, None)?;
                    }
                    Ok(())
                })
                .await;
            match r {
                Ok(()) => break,
                Err(e) if d.shutdown.is_cancelled() => {
                    tracing::warn!(error = %e, "dropping receipts at shutdown");
                    break;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot record receipts yet; retrying");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(std::time::Duration::from_secs(5));
                }
            }
        }
        for (ctx, evs) in groups.iter() {
            for e in evs {
                d.metrics.record_event(&ctx.channel, e.event.kind());
            }
        }
    }
}

pub mod custom;
pub mod messenger;
pub mod meta;
pub mod replay;
pub mod signature;
pub mod slack;
pub mod telegram;
pub mod webhook;
pub mod wechat;
pub mod wechat_crypto;
pub mod whatsapp;
