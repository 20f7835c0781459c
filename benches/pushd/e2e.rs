//! The end-to-end machinery: the bare loops the dispatch and receipts rows
//! are held to (reqwest posting WhatsApp bodies to the mock; signed status
//! webhooks to a bare "200 OK" sink), and the receipts posted to the daemon.

use crate::daemon::Daemon;
use crate::fixtures::{WA_APP_SECRET, WA_TOKEN, rate};
use crate::{inproc, mock};
use serde_json::json;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// The same webhooks posted to a bare "200 OK" sink: the receipts baseline.
pub fn sink_run(messages: &Arc<Vec<(String, String)>>, concurrency: usize) -> f64 {
    eprintln!("[receipts] bare HTTP loop, {} webhooks…", messages.len());
    let sink = mock::webhook_sink(2);
    let took = post_receipts(
        &format!("http://{}/webhooks/wa", sink.addr),
        messages,
        concurrency,
    );
    rate(messages.len() as u64, took)
}

/// Signed WhatsApp `delivered` statuses for every message of `push`, posted
/// to the daemon; every one must be applied.
pub fn receipts_run(
    d: &Daemon,
    push: i64,
    messages: &Arc<Vec<(String, String)>>,
    concurrency: usize,
) -> f64 {
    let status = d.call("status", json!({}));
    let listen = status["data"]["http_listen"]
        .as_str()
        .expect("http_listen in status")
        .to_string();
    eprintln!("[receipts] signed status webhooks to the daemon…");
    let took = post_receipts(
        &format!("http://{listen}/webhooks/wa"),
        messages,
        concurrency,
    );
    let delivered = inproc::count(
        d.db_path(),
        &format!(
            "SELECT count(*) FROM deliveries WHERE push_id = {push} AND delivered_at IS NOT NULL"
        ),
    );
    assert_eq!(
        delivered,
        messages.len() as u64,
        "receipts were not all applied"
    );
    rate(messages.len() as u64, took)
}

pub fn tokio_rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("bench-client")
        .enable_all()
        .build()
        .expect("client runtime")
}

/// The baseline the daemon's send path is held to: reqwest (configured as
/// pushd's client) posting WhatsApp message bodies to the same mock at the
/// same concurrency, reading each reply's message id.
pub fn bare_send_loop(mock: std::net::SocketAddr, n: u64, concurrency: usize) -> Duration {
    let rt = tokio_rt();
    let client = client();
    let url = format!("http://{mock}/v21.0/{}/messages", mock::BULK_PHONE_ID);
    let next = Arc::new(AtomicUsize::new(1));
    rt.block_on(async move {
        let t = Instant::now();
        let mut tasks = Vec::new();
        for _ in 0..concurrency {
            let (client, url, next) = (client.clone(), url.clone(), next.clone());
            tasks.push(tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed) as u64;
                    if i > n {
                        break;
                    }
                    let body = json!({
                        "messaging_product": "whatsapp",
                        "recipient_type": "individual",
                        "to": format!("8525{i:08}"),
                        "type": "text",
                        "text": { "body": "Hi Ava, this week's offer is waiting for you." }
                    });
                    let r = client
                        .post(&url)
                        .bearer_auth(WA_TOKEN)
                        .json(&body)
                        .send()
                        .await
                        .expect("bare send");
                    let bytes = r.bytes().await.expect("bare reply");
                    let v: serde_json::Value = serde_json::from_slice(&bytes).expect("reply json");
                    assert!(v.pointer("/messages/0/id").is_some());
                }
            }));
        }
        for t in tasks {
            t.await.expect("send task");
        }
        t.elapsed()
    })
}

fn sign(body: &[u8]) -> String {
    use hmac::{KeyInit, Mac};
    let mut mac = <hmac::Hmac<sha2::Sha256> as KeyInit>::new_from_slice(WA_APP_SECRET.as_bytes())
        .expect("any key length");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// A WhatsApp `delivered` status webhook for message `id` sent to `to`.
fn status_body(id: &str, to: &str) -> String {
    let ts = chrono::Utc::now().timestamp();
    json!({
        "object": "whatsapp_business_account",
        "entry": [{
            "id": "102290129340398",
            "changes": [{ "field": "messages", "value": {
                "messaging_product": "whatsapp",
                "metadata": { "display_phone_number": "15550783881", "phone_number_id": mock::BULK_PHONE_ID },
                "statuses": [{
                    "id": id,
                    "status": "delivered",
                    "timestamp": ts.to_string(),
                    "recipient_id": to,
                    "conversation": { "id": "CONVERSATION_ID", "origin": { "type": "marketing" } },
                    "pricing": { "billable": true, "pricing_model": "PMP", "category": "marketing", "type": "regular" }
                }]
            }}]
        }]
    })
    .to_string()
}

/// A signed status webhook for each of `messages`, posted by `concurrency`
/// client tasks.
fn post_receipts(url: &str, messages: &Arc<Vec<(String, String)>>, concurrency: usize) -> Duration {
    let n = messages.len() as u64;
    let rt = tokio_rt();
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(1024)
        .tcp_nodelay(true)
        .build()
        .expect("client");
    let next = Arc::new(AtomicUsize::new(1));
    let url = url.to_string();
    rt.block_on(async move {
        let t = Instant::now();
        let mut tasks = Vec::new();
        for _ in 0..concurrency {
            let (client, url, next) = (client.clone(), url.clone(), next.clone());
            let messages = messages.clone();
            tasks.push(tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed) as u64;
                    if i > n {
                        break;
                    }
                    let (id, to) = &messages[i as usize - 1];
                    let body = status_body(id, to);
                    let sig = sign(body.as_bytes());
                    let r = client
                        .post(&url)
                        .header("Content-Type", "application/json")
                        .header("X-Hub-Signature-256", sig)
                        .body(body)
                        .send()
                        .await
                        .expect("post webhook");
                    let status = r.status();
                    let _ = r.bytes().await;
                    assert!(status.is_success(), "webhook answered {status}");
                }
            }));
        }
        for t in tasks {
            t.await.expect("webhook task");
        }
        t.elapsed()
    })
}

/// What one end-to-end push came to.
pub struct Push {
    pub id: i64,
    pub rate: f64,
    /// The daemon's peak RSS during the push, in kB.
    pub peak_kb: u64,
}

/// One push of `n` recipients to the WhatsApp mock at full speed; every
/// recipient must be sent and seen by the mock exactly once.
pub fn push(d: &Daemon, wa: &mock::Server, name: &str, n: u64) -> Push {
    let before = wa.seen.requests.load(Ordering::Relaxed);
    d.reset_peak_rss();
    let t = Instant::now();
    let id = d.create_push(name, "wa", "hello", None);
    let p = d.wait_completed(name, Duration::from_secs(3600));
    let took = t.elapsed();
    let peak_kb = d.proc_kb("VmHWM");
    let sent_to_mock = wa.seen.requests.load(Ordering::Relaxed) - before;
    assert_eq!(p["sent"].as_u64(), Some(n), "e2e push: {p}");
    assert_eq!(sent_to_mock, n, "the mock saw a different number of sends");
    Push {
        id,
        rate: rate(n, took),
        peak_kb,
    }
}

/// One request as pushd's send path makes it: `client` (pushd's shared
/// client keeps its connections too) posting one WhatsApp body to `phone`
/// and reading its reply.
pub fn one_request(
    rt: &tokio::runtime::Runtime,
    client: &reqwest::Client,
    mock: std::net::SocketAddr,
    phone: &str,
) {
    let url = format!("http://{mock}/v21.0/{phone}/messages");
    rt.block_on(async move {
        let body = json!({
            "messaging_product": "whatsapp",
            "recipient_type": "individual",
            "to": "85250000001",
            "type": "text",
            "text": { "body": "Hi Ava, this week's offer is waiting for you." }
        });
        let r = client
            .post(&url)
            .bearer_auth(WA_TOKEN)
            .json(&body)
            .send()
            .await
            .expect("bare first request");
        let bytes = r.bytes().await.expect("bare first reply");
        assert!(bytes.starts_with(b"{"), "mock reply: {bytes:?}");
    })
}

/// pushd's HTTP client settings (`pushd::channel::http_client`).
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .tcp_nodelay(true)
        .build()
        .expect("client")
}
