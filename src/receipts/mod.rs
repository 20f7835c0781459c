//! Receipts: each platform's webhook signature check and payload parsing,
//! and the [`Receipts`] handle that turns verified webhooks (and the
//! simulator's receipts) into applied events. The HTTP listener that carries
//! webhooks is a transport (`crate::http`); applying events to deliveries
//! and members is SQL, in `store::receipts`.

use crate::config::{ChannelConfig, Config, LiveConfig};
use crate::metrics::Metrics;
use crate::model::{ChannelEvent, InboundEvent, Platform};
use crate::store::receipts::ApplyContext;
use crate::store::{Store, StoreError};
use arc_swap::ArcSwapOption;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

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

pub mod batch;
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

use batch::Applier;
use replay::ReplayGuard;

/// Verifies and parses one webhook request for a channel of `platform`.
pub fn parse_webhook(
    platform: Platform,
    cfg: &ChannelConfig,
    req: &WebhookRequest<'_>,
) -> Result<WebhookOutcome, WebhookError> {
    let result = match platform {
        Platform::Whatsapp => whatsapp::handle(cfg, req),
        Platform::Messenger | Platform::Instagram => messenger::handle(platform, cfg, req),
        Platform::Telegram => telegram::handle(cfg, req),
        Platform::Slack => slack::handle(cfg, req),
        Platform::Wechat => wechat::handle(cfg, req),
        Platform::Custom | Platform::Webchat => custom::handle(cfg, req),
        Platform::Simulator => {
            return Err(WebhookError::BadRequest(
                "simulator channels take no webhooks".into(),
            ));
        }
    };
    // Say which parser refused the body: operators see these in the log.
    result.map_err(|e| match e {
        WebhookError::BadRequest(m) => WebhookError::BadRequest(format!("{platform} webhook: {m}")),
        other => other,
    })
}

/// The answer to a webhook, for whichever transport carries it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookReply {
    pub status: u16,
    pub content_type: &'static str,
    pub body: String,
}

impl WebhookReply {
    fn text(status: u16, body: impl Into<String>) -> WebhookReply {
        WebhookReply {
            status,
            content_type: "text/plain",
            body: body.into(),
        }
    }
}

/// Most simulator receipts folded into one apply.
const SINK_BATCH: usize = 2000;

/// Receipts from every channel: verifies webhooks, applies events in
/// batches, and counts them.
pub struct Receipts {
    config: Arc<LiveConfig>,
    metrics: Arc<Metrics>,
    applier: Applier,
    /// Nonces of admitted WeChat callbacks (their signature leaves the body out).
    replays: ReplayGuard,
    /// Apply contexts of the current configuration's channels, built once
    /// per configuration rather than once per webhook.
    contexts: ArcSwapOption<Contexts>,
}

struct Contexts {
    config: Arc<Config>,
    by_channel: HashMap<String, Arc<ApplyContext>>,
}

impl Receipts {
    /// Starts the batching applier (needs a tokio runtime).
    pub fn start(store: Store, config: Arc<LiveConfig>, metrics: Arc<Metrics>) -> Receipts {
        Receipts {
            config,
            metrics,
            applier: Applier::start(store),
            replays: ReplayGuard::default(),
            contexts: ArcSwapOption::empty(),
        }
    }

    fn context(&self, cfg: &Arc<Config>, channel: &str) -> Option<Arc<ApplyContext>> {
        if let Some(cached) = &*self.contexts.load()
            && Arc::ptr_eq(&cached.config, cfg)
        {
            return cached.by_channel.get(channel).cloned();
        }
        let fresh = Contexts {
            config: cfg.clone(),
            by_channel: cfg
                .channels
                .iter()
                .map(|(name, ch)| (name.clone(), Arc::new(context_for(cfg, name, ch.kind))))
                .collect(),
        };
        let found = fresh.by_channel.get(channel).cloned();
        self.contexts.store(Some(Arc::new(fresh)));
        found
    }

    /// Verifies, parses and applies one webhook to `channel`. Nothing is
    /// written for a refused webhook; events that cannot be recorded yet
    /// are answered 503 so the platform retries.
    pub async fn webhook(&self, channel: &str, req: &WebhookRequest<'_>) -> WebhookReply {
        let cfg = self.config.get();
        let Some(ch) = cfg
            .channels
            .get(channel)
            .filter(|c| c.kind != Platform::Simulator)
        else {
            self.metrics.record_webhook_reject(channel, 404);
            return WebhookReply::text(404, "no such channel\n");
        };
        let outcome = parse_webhook(ch.kind, ch, req);
        let (outcome, replay_ticket) = self.replays.screen(channel, ch.kind, req, outcome);
        let (events, reply, reply_type) = match outcome {
            Err(e) => {
                let status = match e {
                    WebhookError::Unauthorized(_) => 401,
                    WebhookError::Forbidden(_) => 403,
                    WebhookError::BadRequest(_) => 400,
                    WebhookError::MethodNotAllowed => 405,
                    WebhookError::Unavailable(_) => 503,
                };
                tracing::warn!(channel = %channel, status, error = %e, "webhook refused");
                self.metrics.record_webhook_reject(channel, status);
                return WebhookReply::text(status, format!("{e}\n"));
            }
            Ok(WebhookOutcome::Challenge(c)) => return WebhookReply::text(200, c),
            Ok(WebhookOutcome::Events {
                events,
                reply,
                reply_type,
            }) => (events, reply, reply_type),
        };
        let Some(ctx) = self.context(&cfg, channel) else {
            return WebhookReply::text(404, "no such channel\n");
        };
        let raw = String::from_utf8_lossy(req.body).into_owned();
        let kinds: Vec<&'static str> = events.iter().map(|e| e.kind()).collect();
        match self.applier.apply(ctx, events, Some(raw)).await {
            Ok(applied) => {
                replay_ticket.keep();
                for k in kinds {
                    self.metrics.record_event(channel, k);
                }
                tracing::debug!(channel = %channel, ?applied, "webhook applied");
                WebhookReply {
                    status: 200,
                    content_type: reply_type,
                    body: reply,
                }
            }
            Err(e) => {
                // Not recorded: ask the platform to retry later.
                tracing::error!(channel = %channel, error = %e, "cannot record webhook events");
                WebhookReply::text(503, "temporarily unable to record events\n")
            }
        }
    }

    /// Applies the events channels feed back themselves (the simulator's
    /// receipts) until `shutdown`, through the same batching applier as
    /// webhooks. A batch that cannot be written yet is retried with backoff.
    pub async fn drain(&self, mut rx: mpsc::Receiver<ChannelEvent>, shutdown: CancellationToken) {
        loop {
            let first = tokio::select! {
                e = rx.recv() => match e { Some(e) => e, None => return },
                _ = shutdown.cancelled() => return,
            };
            let mut batch = vec![first];
            while batch.len() < SINK_BATCH {
                match rx.try_recv() {
                    Ok(e) => batch.push(e),
                    Err(_) => break,
                }
            }
            let mut by_channel: BTreeMap<String, Vec<InboundEvent>> = BTreeMap::new();
            for e in batch {
                by_channel.entry(e.channel).or_default().push(e.event);
            }
            let cfg = self.config.get();
            let applies = by_channel.into_iter().filter_map(|(channel, events)| {
                let ctx = self.context(&cfg, &channel)?;
                Some(self.apply_until_recorded(ctx, events, &shutdown))
            });
            futures::future::join_all(applies).await;
        }
    }

    async fn apply_until_recorded(
        &self,
        ctx: Arc<ApplyContext>,
        events: Vec<InboundEvent>,
        shutdown: &CancellationToken,
    ) {
        let kinds: Vec<&'static str> = events.iter().map(|e| e.kind()).collect();
        let mut delay = Duration::from_millis(100);
        loop {
            match self.applier.apply(ctx.clone(), events.clone(), None).await {
                Ok(_) => break,
                Err(e) if shutdown.is_cancelled() || matches!(e, StoreError::Closed) => {
                    tracing::warn!(error = %e, "dropping receipts at shutdown");
                    return;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot record receipts yet; retrying");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(5));
                }
            }
        }
        for k in kinds {
            self.metrics.record_event(&ctx.channel, k);
        }
    }
}

fn context_for(cfg: &Config, channel: &str, platform: Platform) -> ApplyContext {
    let upper = |keywords: &[String]| -> Vec<String> {
        keywords.iter().map(|k| k.trim().to_uppercase()).collect()
    };
    ApplyContext {
        channel: channel.to_string(),
        platform,
        attribution_window_ms: cfg.receipts.attribution_window.as_millis() as i64,
        opt_out: upper(&cfg.receipts.opt_out_keywords),
        opt_in: upper(&cfg.receipts.opt_in_keywords),
        default_locale: cfg.scripts.default_locale.clone(),
    }
}
