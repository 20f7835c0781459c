//! The HTTP listener: `POST|GET /webhooks/{channel}` (handed to `receipts`),
//! `GET|HEAD /l/{token}` (tracked links, handed to `links`), `/healthz`,
//! `/metrics`, and the web panel's routes (`crate::panel`, the
//! second transport over the commands).
//!
//! Served with hyper directly (not `axum::serve`) so we control what a
//! hostile client can hold: a connection limit, a deadline for the request
//! head (slow-loris), another for its body (read by the webhook handler, the
//! one route that reads a body), and a body size limit. Signatures are
//! checked on the raw bytes before any parsing; a refused webhook writes
//! nothing.

mod links;

use crate::config::HttpConfig;
use crate::links::Links;
use crate::metrics::Metrics;
use crate::model::now_ms;
use crate::receipts::{Receipts, WebhookRequest};
use crate::store::{Store, pushes};
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
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tower::Service;

pub async fn bind(listen: &str) -> std::io::Result<TcpListener> {
    TcpListener::bind(listen).await
}

/// The bound address, for `status` (the config may ask for port 0).
pub fn local_addr(l: &TcpListener) -> Option<SocketAddr> {
    l.local_addr().ok()
}

/// What the routes reach: receipts for webhooks, tracked links for clicks,
/// the store for health and gauges, the metrics, and the panel.
#[derive(Clone)]
pub struct Services {
    pub receipts: Arc<Receipts>,
    pub links: Arc<Links>,
    pub store: Store,
    pub metrics: Arc<Metrics>,
    pub panel: crate::panel::Backend,
}

/// What the webhook route shares across requests.
struct Webhooks {
    receipts: Arc<Receipts>,
    /// The request head must arrive within `http.request_timeout` (hyper's
    /// header timeout); the body within this much more.
    body_timeout: Duration,
}

fn router(services: Services, http: &HttpConfig) -> Router {
    let webhooks = Arc::new(Webhooks {
        receipts: services.receipts.clone(),
        body_timeout: http.request_timeout,
    });
    let panel = crate::panel::router(services.panel.clone());
    Router::new()
        .route("/webhooks/{channel}", any(webhook_handler))
        .with_state(webhooks)
        .merge(
            Router::new()
                .route("/l/{token}", get(links::redirect))
                .with_state(services.links.clone()),
        )
        .merge(
            Router::new()
                .route("/healthz", get(healthz))
                .route("/metrics", get(metrics))
                .with_state(services),
        )
        .merge(panel)
        .layer(DefaultBodyLimit::max(http.max_body_bytes))
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

/// Serves until `shutdown`; open connections get a graceful close.
pub async fn run(
    listener: TcpListener,
    services: Services,
    http: HttpConfig,
    shutdown: CancellationToken,
) {
    let app = router(services, &http);
    let limit = Arc::new(Semaphore::new(http.max_connections));
    let head_timeout = http.request_timeout;
    let graceful = GracefulShutdown::new();
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
                    tracing::warn!(error = %e, "HTTP listener accept failed");
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
            tracing::warn!("HTTP connections still open after 10s; closing");
        }
    }
}

async fn healthz(State(s): State<Services>) -> Response {
    match s.store.ping().await {
        Ok(()) if !s.store.faulted() => (StatusCode::OK, "ok\n").into_response(),
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

async fn metrics(State(s): State<Services>) -> Response {
    let gauges = s.store.read(pushes::gauges).await.unwrap_or_default();
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        s.metrics.render(&gauges),
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
    let query = query.unwrap_or_default();
    let req = WebhookRequest {
        method: &method,
        headers: &headers,
        query: &query,
        body: &body,
        now: now_ms(),
    };
    let reply = w.receipts.webhook(&channel, &req).await;
    let status = StatusCode::from_u16(reply.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (
        status,
        [(header::CONTENT_TYPE, reply.content_type)],
        reply.body,
    )
        .into_response()
}
