//! The HTTP listener: `POST|GET /webhooks/{channel}`, `/healthz`, `/metrics`.
//!
//! Served with hyper directly (not `axum::serve`) so we control what a
//! hostile client can hold: a connection limit, a deadline for the request
//! head (slow-loris), another for its body (read by the webhook handler, the
//! one route that reads a body), and a body size limit. Signatures are
//! checked on the raw bytes before any parsing; a refused webhook writes
//! nothing.

use super::apply::ApplyContext;
use super::batch::Applier;
use super::replay::ReplayGuard;
use super::{WebhookError, WebhookOutcome, WebhookRequest, webhook};
use crate::config::Config;
use crate::daemon::Daemon;
use crate::metrics::Gauges;
use crate::model::{Platform, now_ms};
use crate::store::{members, pushes};
use arc_swap::ArcSwapOption;
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, FromRequest, FromRequestParts, Path, RawQuery, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, Method, Request, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tower::Service;

pub async fn bind(listen: &str) -> std::io::Result<TcpListener> {
    TcpListener::bind(listen).await
}

fn router(d: Arc<Daemon>) -> Router {
    let cfg = d.config();
    let webhooks = Arc::new(Webhooks {
        applier: Applier::start(d.store.clone()),
        replays: ReplayGuard::default(),
        body_timeout: cfg.http.request_timeout,
        contexts: ArcSwapOption::empty(),
        d: d.clone(),
    });
    Router::new()
        .route("/webhooks/{channel}", any(webhook_handler))
        .with_state(webhooks)
        .merge(
            Router::new()
                .route("/healthz", get(healthz))
                .route("/metrics", get(metrics))
                .with_state(d),
        )
        .layer(DefaultBodyLimit::max(cfg.http.max_body_bytes))
}

/// What the webhook handler shares across requests.
struct Webhooks {
    d: Arc<Daemon>,
    applier: Applier,
    /// Nonces of admitted WeChat callbacks (their signature leaves the body out).
    replays: ReplayGuard,
    /// The request head must arrive within `http.request_timeout` (hyper's
    /// header timeout); the body within this much more.
    body_timeout: Duration,
    /// Apply contexts of the current configuration's channels, built once
    /// per configuration rather than once per webhook.
    contexts: ArcSwapOption<Contexts>,
}

struct Contexts {
    config: Arc<Config>,
    by_channel: HashMap<String, Arc<ApplyContext>>,
}

impl Webhooks {
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
}

/// The request's headers, moved out of it: axum's `HeaderMap` extractor
/// copies the map, and nothing after the handler's own extractors reads it.
struct Headers(HeaderMap);

impl<S: Send + Sync> FromRequestParts<S> for Headers {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Headers, Self::Rejection> {
        Ok(Headers(std::mem::take(&mut parts.headers)))
    }
}

/// Serves until shutdown; open connections get a graceful close.
pub async fn run(listener: TcpListener, d: Arc<Daemon>) {
    let cfg = d.config();
    let app = router(d.clone());
    let limit = Arc::new(Semaphore::new(cfg.http.max_connections));
    let head_timeout = cfg.http.request_timeout;
    let graceful = GracefulShutdown::new();
    let shutdown = d.shutdown.clone();
    loop {
        let permit = tokio::select! {
            _ = shutdown.cancelled() => break,
            p = limit.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => break },
        };
        let (stream, _peer) = tokio::select! {
            _ = shutdown.cancelled() => break,
            r = listener.accept() => match r {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(error = %e, "webhook listener accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let app = app.clone();
        let service = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
            let mut app = app.clone();
            async move { app.call(req.map(Body::new)).await }
        });
        let mut builder = auto::Builder::new(TokioExecutor::new());
        builder
            .http1()
            .timer(hyper_util::rt::TokioTimer::new())
            .header_read_timeout(head_timeout);
        let conn = builder
            .serve_connection(TokioIo::new(stream), service)
            .into_owned();
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            let _ = conn.await;
            drop(permit);
        });
    }
    tokio::select! {
        _ = graceful.shutdown() => {}
        _ = tokio::time::sleep(Duration::from_secs(10)) => {
            tracing::warn!("webhook connections still open after 10s; closing");
        }
    }
}

async fn healthz(State(d): State<Arc<Daemon>>) -> Response {
    match d
        .store
        .read(|c| Ok(c.query_row("SELECT 1", [], |_| Ok(()))?))
        .await
    {
        Ok(()) if !d.dispatcher.storage_fault() => (StatusCode::OK, "ok\n").into_response(),
        Ok(()) => (
            StatusCode::SERVICE_UNAVAILABLE,
            "storage fault: writes are failing\n",
        )
            .into_response(),
        Err(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("database unavailable: {e}\n"),
        )
            .into_response(),
    }
}

async fn metrics(State(d): State<Arc<Daemon>>) -> Response {
    let gauges = d
        .store
        .read(|c| {
            let mut g = Gauges {
                members: members::count(c)?,
                ..Default::default()
            };
            for p in pushes::active(c)? {
                *g.pushes_by_state.entry(p.status.to_string()).or_insert(0) += 1;
                g.queue_depth += pushes::counts(c, p.id)?.remaining();
            }
            let mut stmt = c.prepare_cached("SELECT status, count(*) FROM pushes WHERE status IN ('completed','cancelled') GROUP BY status")?;
            let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))?;
            for row in rows {
                let (s, n) = row?;
                g.pushes_by_state.insert(s, n as u64);
            }
            Ok(g)
        })
        .await
        .unwrap_or_default();
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        d.metrics.render(&gauges),
    )
        .into_response()
}

async fn webhook_handler(
    State(w): State<Arc<Webhooks>>,
    Path(channel): Path<String>,
    method: Method,
    RawQuery(query): RawQuery,
    Headers(headers): Headers,
    req: Request<Body>,
) -> Response {
    let d = &w.d;
    // The whole body must arrive in time (a slow sender holds a connection).
    let body = match tokio::time::timeout(w.body_timeout, Bytes::from_request(req, &())).await {
        Ok(Ok(body)) => body,
        Ok(Err(rejection)) => return rejection.into_response(),
        Err(_) => {
            return (
                StatusCode::REQUEST_TIMEOUT,
                "request not received in time\n",
            )
                .into_response();
        }
    };
    let cfg = d.config();
    let Some(ch) = cfg
        .channels
        .get(&channel)
        .filter(|c| c.kind != Platform::Simulator)
    else {
        d.metrics.record_webhook_reject(&channel, 404);
        return (StatusCode::NOT_FOUND, "no such channel\n").into_response();
    };
    let query = query.unwrap_or_default();
    let req = WebhookRequest {
        method: &method,
        headers: &headers,
        query: &query,
        body: &body,
        now: now_ms(),
    };
    let outcome = webhook::handle(ch.kind, ch, &req);
    let (outcome, replay_ticket) = w.replays.screen(&channel, ch.kind, &req, outcome);
    match outcome {
        Err(e) => {
            let status = match e {
                WebhookError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
                WebhookError::Forbidden(_) => StatusCode::FORBIDDEN,
                WebhookError::BadRequest(_) => StatusCode::BAD_REQUEST,
                WebhookError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
                WebhookError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            };
            tracing::warn!(channel = %channel, status = status.as_u16(), error = %e, "webhook refused");
            d.metrics.record_webhook_reject(&channel, status.as_u16());
            (status, format!("{e}\n")).into_response()
        }
        Ok(WebhookOutcome::Challenge(c)) => {
            ([(header::CONTENT_TYPE, "text/plain")], c).into_response()
        }
        Ok(WebhookOutcome::Events {
            events,
            reply,
            reply_type,
        }) => {
            let Some(ctx) = w.context(&cfg, &channel) else {
                return (StatusCode::NOT_FOUND, "no such channel\n").into_response();
            };
            let raw = String::from_utf8_lossy(&body).into_owned();
            let kinds: Vec<&'static str> = events.iter().map(|e| e.kind()).collect();
            let result = w.applier.apply(ctx, events, raw).await;
            match result {
                Ok(applied) => {
                    replay_ticket.keep();
                    for k in kinds {
                        d.metrics.record_event(&channel, k);
                    }
                    tracing::debug!(channel = %channel, ?applied, "webhook applied");
                    ([(header::CONTENT_TYPE, reply_type)], reply).into_response()
                }
                Err(e) => {
                    // Not recorded: ask the platform to retry later.
                    tracing::error!(channel = %channel, error = %e, "cannot record webhook events");
                    (
                        StatusCode::SERVICE_UNAVAILABLE,
                        "temporarily unable to record events\n",
                    )
                        .into_response()
                }
            }
        }
    }
}

pub fn apply_context(d: &Daemon, channel: &str, platform: Platform) -> ApplyContext {
    context_for(&d.config(), channel, platform)
}

fn context_for(cfg: &Config, channel: &str, platform: Platform) -> ApplyContext {
    ApplyContext {
        channel: channel.to_string(),
        platform,
        attribution_window_ms: cfg.receipts.attribution_window.as_millis() as i64,
        opt_out: cfg
            .receipts
            .opt_out_keywords
            .iter()
            .map(|k| k.trim().to_uppercase())
            .collect(),
        opt_in: cfg
            .receipts
            .opt_in_keywords
            .iter()
            .map(|k| k.trim().to_uppercase())
            .collect(),
        default_locale: cfg.scripts.default_locale.clone(),
    }
}

/// The bound address, for `status` (the config may ask for port 0).
pub fn local_addr(l: &TcpListener) -> Option<SocketAddr> {
    l.local_addr().ok()
}
