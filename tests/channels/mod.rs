//! Channel adapters against the mock platforms, over real HTTP on loopback:
//! request shape, success ids, error classification, unreadable replies,
//! timeouts, secrets, validation. Helpers shared by the per-platform files
//! live here.

mod custom;
mod factory;
mod messenger;
mod slack;
mod telegram;
mod wechat;
mod whatsapp;

use crate::support::mocks::{Behavior, MockPlatform};
use pushd::channel::{ChannelContext, ChannelRef, Recipient};
use pushd::config::Config;
use pushd::model::{Button, ErrorClass, Message, Outbound, Platform, SendError};
use std::io::Write;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Generous: only reached when a test is about to fail.
pub const DEADLINE: Duration = Duration::from_secs(10);

pub fn ctx() -> ChannelContext {
    ChannelContext {
        http: pushd::channel::http_client().expect("HTTP client"),
        send_timeout: Duration::from_secs(10),
        receipts: tokio::sync::mpsc::channel(16).0,
    }
}

/// Parses a config holding one `[channels.<name>]` table and builds it.
pub fn build(toml: &str, name: &str) -> Result<ChannelRef, String> {
    let config =
        Config::parse(toml, Path::new("/tmp/x/config.toml")).map_err(|e| format!("config: {e}"))?;
    pushd::channel::build(name, &config.channels[name], &ctx()).map_err(|e| e.to_string())
}

/// The adapter for `mock`, with `extra` config lines (e.g. `timeout = "300ms"`).
pub fn channel(mock: &MockPlatform, extra: &str) -> ChannelRef {
    build(&format!("{}{extra}", mock.channel_toml("ch")), "ch").expect("channel builds")
}

pub fn to(user: &str) -> Recipient {
    Recipient {
        member_id: 7,
        channel_user_id: user.to_string(),
        delivery_id: 4242,
        attempt: 1,
    }
}

pub fn text(s: &str) -> Outbound {
    Outbound::Message {
        message: Message {
            text: s.to_string(),
            ..Message::default()
        },
        tag: None,
    }
}

pub fn message(m: Message) -> Outbound {
    Outbound::Message {
        message: m,
        tag: None,
    }
}

pub fn button(title: &str, payload: &str) -> Button {
    Button {
        title: title.into(),
        payload: Some(payload.into()),
        url: None,
    }
}

pub fn link(title: &str, url: &str) -> Button {
    Button {
        title: title.into(),
        payload: None,
        url: Some(url.into()),
    }
}

pub fn template() -> Outbound {
    Outbound::Template {
        name: "order_update".into(),
        language: "en_US".into(),
        params: vec!["Ann".into(), "#12345".into()],
    }
}

/// No credential of `mock` appears in `err`.
pub fn assert_no_secret(err: &SendError, mock: &MockPlatform) {
    let text = format!("{err} {err:?}");
    for s in mock.secrets() {
        assert!(!text.contains(s), "secret {s:?} leaked into {text}");
    }
}

/// Scripts `behavior` for a fresh recipient, sends `outbound`, expects an error.
pub async fn send_err(
    ch: &ChannelRef,
    mock: &MockPlatform,
    user: &str,
    behavior: Behavior,
    outbound: &Outbound,
) -> SendError {
    mock.script(user, behavior.clone());
    let err = ch
        .send(&to(user), outbound)
        .await
        .expect_err(&format!("{behavior:?} must fail"));
    assert_no_secret(&err, mock);
    assert!(!err.message.is_empty(), "{err:?} has no message");
    err
}

/// Each scripted behaviour maps to the class and the platform's own code,
/// and the platform's message is kept.
pub async fn assert_classes(
    mock: &MockPlatform,
    ch: &ChannelRef,
    outbound: &Outbound,
    cases: &[(Behavior, ErrorClass, &str, &str)],
) {
    for (i, (behavior, class, code, message_part)) in cases.iter().enumerate() {
        let user = format!("{}", 700100 + i);
        let err = send_err(ch, mock, &user, behavior.clone(), outbound).await;
        assert_eq!(err.class, *class, "{behavior:?} → {err:?}");
        assert_eq!(err.code, *code, "{behavior:?} → {err:?}");
        assert!(
            err.message.contains(message_part),
            "{behavior:?}: {:?} should contain {message_part:?}",
            err.message
        );
    }
}

/// HTML error page, cut-off body, a hang past the timeout and a refused
/// connection are all Transient, with a clear message and no secret.
pub async fn assert_transport_failures(platform: Platform, outbound: &Outbound) {
    let mock = MockPlatform::start(platform).await;
    let ch = channel(&mock, "timeout = \"300ms\"\n");

    // Not a failure: a success reply in several chunks is read whole (half
    // of it would not parse).
    mock.script("800000", Behavior::ChunkedSucceed);
    let ok = ch
        .send(&to("800000"), outbound)
        .await
        .unwrap_or_else(|e| panic!("a reply in chunks is a success: {e:?}"));
    assert!(!ok.provider_message_id.is_empty(), "{ok:?}");

    let err = send_err(&ch, &mock, "800001", Behavior::HtmlError, outbound).await;
    assert_eq!(err.class, ErrorClass::Transient, "{err:?}");
    assert!(
        err.message
            .starts_with("HTTP 502 with a non-JSON body (text/html): <html>"),
        "{err:?}"
    );
    assert!(err.message.contains("502 Bad Gateway"), "{err:?}");

    let err = send_err(&ch, &mock, "800002", Behavior::Truncated, outbound).await;
    assert_eq!(err.class, ErrorClass::Transient, "{err:?}");
    assert_eq!(err.code, "truncated", "{err:?}");
    assert!(err.message.starts_with("HTTP 200 reply cut off"), "{err:?}");

    let started = std::time::Instant::now();
    let err = send_err(&ch, &mock, "800003", Behavior::Hang, outbound).await;
    assert_eq!(err.class, ErrorClass::Transient, "{err:?}");
    assert_eq!(err.code, "timeout", "{err:?}");
    assert!(err.message.contains("300ms"), "{err:?}");
    assert!(started.elapsed() < DEADLINE, "the timeout was not applied");

    // A port nobody listens on.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr")
    };
    let toml = mock
        .channel_toml("ch")
        .replace(&mock.base_url(), &format!("http://{closed}"));
    let ch = build(&toml, "ch").expect("channel builds");
    let err = ch
        .send(&to("800004"), outbound)
        .await
        .expect_err("nobody listens");
    assert_eq!(err.class, ErrorClass::Transient, "{err:?}");
    assert_eq!(err.code, "connect", "{err:?}");
    assert_no_secret(&err, &mock);
}

/// Tracing output captured for the current thread (tests run on a
/// current-thread runtime, so the adapter's and the mock's tasks log here).
///
/// One global subscriber (installed once, TRACE) routes each event to the
/// capture buffer of the thread that emitted it. Scoped subscribers
/// (`set_default`) would race with other tests over tracing's cached
/// callsite interest and sometimes see nothing.
pub struct LogCapture {
    buf: Arc<Mutex<Vec<u8>>>,
}

thread_local! {
    static CAPTURE: std::cell::RefCell<Option<Arc<Mutex<Vec<u8>>>>> =
        const { std::cell::RefCell::new(None) };
}

struct ThreadRouter;

impl Write for ThreadRouter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        CAPTURE.with(|c| {
            if let Some(buf) = c.borrow().as_ref() {
                buf.lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .extend_from_slice(data);
            }
        });
        Ok(data.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl LogCapture {
    pub fn start() -> LogCapture {
        static INSTALL: std::sync::Once = std::sync::Once::new();
        INSTALL.call_once(|| {
            let subscriber = tracing_subscriber::fmt()
                .with_max_level(tracing::Level::TRACE)
                .with_ansi(false)
                .with_writer(|| ThreadRouter)
                .finish();
            tracing::subscriber::set_global_default(subscriber)
                .expect("no other global tracing subscriber in this test binary");
        });
        let buf = Arc::new(Mutex::new(Vec::new()));
        CAPTURE.with(|c| *c.borrow_mut() = Some(buf.clone()));
        LogCapture { buf }
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.buf.lock().unwrap_or_else(|e| e.into_inner())).into_owned()
    }
}

impl Drop for LogCapture {
    fn drop(&mut self) {
        CAPTURE.with(|c| *c.borrow_mut() = None);
    }
}

/// Errors and logs of a failing send carry no credential, even when the
/// connection fails (reqwest errors print URLs, and Telegram's token is in
/// the path).
pub async fn assert_secrets_stay_secret(platform: Platform, outbound: &Outbound) {
    let logs = LogCapture::start();
    let mock = MockPlatform::start(platform).await;
    let ch = channel(&mock, "timeout = \"300ms\"\n");
    for (user, behavior) in [
        ("900001", Behavior::BadToken),
        ("900002", Behavior::ServerError),
        ("900003", Behavior::Hang),
        ("900004", Behavior::Truncated),
    ] {
        send_err(&ch, &mock, user, behavior, outbound).await;
    }
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr")
    };
    let toml = mock
        .channel_toml("ch")
        .replace(&mock.base_url(), &format!("http://{closed}"));
    let err = build(&toml, "ch")
        .expect("builds")
        .send(&to("900005"), outbound)
        .await
        .expect_err("nobody listens");
    assert_no_secret(&err, &mock);
    let text = logs.text();
    assert!(
        text.contains("send failed"),
        "the adapter should log failures at debug level: {text}"
    );
    for s in mock.secrets() {
        assert!(!text.contains(s), "secret {s:?} in the logs:\n{text}");
    }
}
