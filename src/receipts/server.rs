//! The HTTP listener: `POST|GET /webhooks/{channel}`, `/healthz`, `/metrics`.
//!
//! Served with hyper directly (not `axum::serve`) so we control what a
//! hostile client can hold: a connection limit, a deadline for the request
//! head (slow-loris), a deadline for the whole request including its body,
//! and a body size limit. Signatures are checked on the raw bytes before any
//! parsing; a refused webhook writes nothing.

use super::apply::ApplyContext;
use super::batch::Applier;
use super::{WebhookError, WebhookOutcome, WebhookRequest, webhook};
use crate::daemon::Daemon;
use crate::metrics::Gauges;
use crate::model::{Platform, now_ms};
use crate::store::{members, pushes};
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, Extension, Path, RawQuery, State};
use axum::http::{HeaderMap, Method, Request, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
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
    let timeout = cfg.http.request_timeout;
    Router::new()
        .route("/webhooks/{channel}", any(webhook_handler))
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .layer(Extension(Applier::start(d.store.clone())))
        .layer(DefaultBodyLimit::max(cfg.http.max_body_bytes))
        .layer(middleware::from_fn(
            move |req: Request<Body>, next: Next| request_deadline(req, next, timeout),
        ))
        .with_state(d)
}

/// The whole request — body included — must arrive within the deadline.
async fn request_deadline(req: Request<Body>, next: Next, timeout: Duration) -> Response {
    match tokio::time::timeout(timeout, next.run(req)).await {
        Ok(r) => r,
        Err(_) => (
            StatusCode::REQUEST_TIMEOUT,
            "request not received in time\n",
        )
            .into_response(),
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
    State(d): State<Arc<Daemon>>,
    Extension(applier): Extension<Applier>,
    Path(channel): Path<String>,
    method: Method,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
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
    match outcome {
        Err(e) => {
            let status = match e {
                WebhookError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
                WebhookError::Forbidden(_) => StatusCode::FORBIDDEN,
                WebhookError::BadRequest(_) => StatusCode::BAD_REQUEST,
                WebhookError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
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
            let ctx = apply_context(&d, &channel, ch.kind);
            let raw = String::from_utf8_lossy(&body).into_owned();
            let kinds: Vec<&'static str> = events.iter().map(|e| e.kind()).collect();
            let result = applier.apply(ctx, events, raw).await;
            match result {
                Ok(applied) => {
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
    let cfg = d.config();
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
