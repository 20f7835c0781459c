//! Loopback HTTP servers for the bench: a WhatsApp-shaped Cloud API mock
//! (the daemon and the bare reqwest loop both send to it; every send to a
//! phone number id other than the bulk one is timestamped on arrival, for
//! the rate, first-send and many-accounts rows), a bare "200 OK" webhook
//! sink (the receipts baseline) and a bare 302 server (the tracked-links
//! baseline). Each runs on its own
//! tokio runtime on a background thread, so the process under test and the
//! mock share the machine the same way in every measurement.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;
use tokio::net::TcpListener;

/// The phone number id of the bulk end-to-end sends: counted, not
/// timestamped (a lock per request would weigh on the dispatch figure).
pub const BULK_PHONE_ID: &str = "555000111";
/// The phone number id of the rate-accuracy channel.
pub const RATE_PHONE_ID: &str = "100200300";

/// One timestamped send.
#[derive(Debug, Clone)]
pub struct Arrival {
    pub at: Instant,
    pub phone: String,
    pub to: String,
}

/// What the WhatsApp mock saw.
#[derive(Default)]
pub struct Seen {
    pub requests: AtomicU64,
    /// Every send to a phone number id other than [`BULK_PHONE_ID`].
    pub arrivals: Mutex<Vec<Arrival>>,
}

impl Seen {
    /// Takes (and forgets) the arrivals recorded so far.
    pub fn take_arrivals(&self) -> Vec<Arrival> {
        self.arrivals
            .lock()
            .map(|mut a| std::mem::take(&mut *a))
            .unwrap_or_default()
    }

    /// The first arrival at `phone` recorded so far, if any.
    pub fn first_at(&self, phone: &str) -> Option<Instant> {
        let a = self.arrivals.lock().ok()?;
        a.iter().find(|a| a.phone == phone).map(|a| a.at)
    }
}

/// The phone number id in `/{version}/{phone_number_id}/messages`.
fn phone_of(path: &str) -> &str {
    path.trim_start_matches('/')
        .split('/')
        .nth(1)
        .unwrap_or_default()
}

pub struct Server {
    pub addr: SocketAddr,
    pub seen: Arc<Seen>,
    _rt: tokio::runtime::Runtime,
}

fn runtime(threads: usize) -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .thread_name("bench-mock")
        .enable_all()
        .build()
        .expect("mock runtime")
}

#[derive(serde::Deserialize)]
struct SendBody<'a> {
    #[serde(borrow)]
    to: std::borrow::Cow<'a, str>,
}

/// `POST /{version}/{phone_number_id}/messages` → the Cloud API success
/// body with `messages[0].id = "wamid.<to>.<n>"` (n counts the mock's
/// requests), unique across pushes to the same members, so each push's
/// receipts name only its own messages.
async fn whatsapp(
    req: Request<Incoming>,
    seen: Arc<Seen>,
) -> Result<Response<Full<Bytes>>, hyper::Error> {
    // No allocation on the bulk path: both sides of the dispatch ratio pay it.
    let timed = (phone_of(req.uri().path()) != BULK_PHONE_ID)
        .then(|| phone_of(req.uri().path()).to_string());
    let body = req.into_body().collect().await?.to_bytes();
    let now = Instant::now();
    let seq = seen.requests.fetch_add(1, Ordering::Relaxed);
    let Ok(parsed) = serde_json::from_slice::<SendBody>(&body) else {
        let mut r = Response::new(Full::new(Bytes::from_static(
            br#"{"error":{"message":"(#100) Invalid parameter","type":"OAuthException","code":100}}"#,
        )));
        *r.status_mut() = StatusCode::BAD_REQUEST;
        return Ok(r);
    };
    let to = parsed.to;
    if let Some(phone) = timed
        && let Ok(mut a) = seen.arrivals.lock()
    {
        a.push(Arrival {
            at: now,
            phone,
            to: to.to_string(),
        });
    }
    let reply = format!(
        r#"{{"messaging_product":"whatsapp","contacts":[{{"input":"{to}","wa_id":"{to}"}}],"messages":[{{"id":"wamid.{to}.{seq}"}}]}}"#
    );
    let mut r = Response::new(Full::new(Bytes::from(reply)));
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    Ok(r)
}

/// The bare webhook sink: read the body, answer 200 `ok`.
async fn sink(
    req: Request<Incoming>,
    seen: Arc<Seen>,
) -> Result<Response<Full<Bytes>>, hyper::Error> {
    let _ = req.into_body().collect().await?;
    seen.requests.fetch_add(1, Ordering::Relaxed);
    Ok(Response::new(Full::new(Bytes::from_static(b"ok"))))
}

fn serve<F, Fut>(threads: usize, handler: F) -> Server
where
    F: Fn(Request<Incoming>, Arc<Seen>) -> Fut + Send + Sync + Copy + 'static,
    Fut: std::future::Future<Output = Result<Response<Full<Bytes>>, hyper::Error>> + Send + 'static,
{
    let rt = runtime(threads);
    let seen = Arc::new(Seen::default());
    let listener = rt
        .block_on(TcpListener::bind("127.0.0.1:0"))
        .expect("bind loopback");
    let addr = listener.local_addr().expect("local addr");
    let s = seen.clone();
    rt.spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let _ = stream.set_nodelay(true);
            let seen = s.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |req| handler(req, seen.clone()));
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    Server {
        addr,
        seen,
        _rt: rt,
    }
}

pub fn whatsapp_mock(threads: usize) -> Server {
    serve(threads, whatsapp)
}

pub fn webhook_sink(threads: usize) -> Server {
    serve(threads, sink)
}
/// The bare redirect: every request answered `302 Location: <to>`, no
/// caching (the tracked-links baseline).
pub fn redirect_server(threads: usize, to: &'static str) -> Server {
    serve(
        threads,
        move |req: Request<Incoming>, seen: Arc<Seen>| async move {
            let _ = req.into_body().collect().await?;
            seen.requests.fetch_add(1, Ordering::Relaxed);
            let mut r = Response::new(Full::new(Bytes::new()));
            *r.status_mut() = StatusCode::FOUND;
            let h = r.headers_mut();
            h.insert(
                hyper::header::LOCATION,
                hyper::header::HeaderValue::from_static(to),
            );
            h.insert(
                hyper::header::CACHE_CONTROL,
                hyper::header::HeaderValue::from_static("no-store"),
            );
            Ok(r)
        },
    )
}
