//! Mock chat platforms on loopback, answering with each platform's real
//! success and error bodies, for adapter tests and end-to-end tests.
//!
//! ```ignore
//! use crate::support::mocks::{Behavior, MockPlatform};
//! use pushd::model::Platform;
//!
//! let mock = MockPlatform::start(Platform::Telegram).await;   // 127.0.0.1:<random port>
//! // A complete `[channels.tg]` table pointing at the mock, with its credentials:
//! let toml = mock.channel_toml("tg");                          // append `timeout = "300ms"` etc.
//! mock.script("1001", Behavior::Block);                        // per recipient; default Succeed
//! mock.script("1002", Behavior::fail_first(2, Behavior::ServerError)); // 2 failures, then success
//! mock.set_default(Behavior::Succeed);                          // everyone not scripted
//! // ... send through the adapter / the daemon ...
//! mock.wait_for_requests(3, Duration::from_secs(5)).await;     // waits on a condition, with a deadline
//! let sends = mock.sends();                                    // every request that named a recipient
//! assert_eq!(sends[0].body()["chat_id"], 1001);                // parsed JSON body, headers, path, query
//! mock.assert_each_recipient_once(&["1001", "1003"]);
//! ```
//!
//! Every mock checks credentials the way the platform does (bearer token,
//! `access_token` query, token in the path, Standard Webhooks signature) and
//! the body shape, and refuses with the platform's real error body when they
//! are wrong. [`Behavior`] is the same for every platform; what each one
//! answers is documented on the platform's file (`whatsapp.rs`, ...). A
//! behaviour the platform has no synchronous error for is mapped to the
//! nearest real one (documented there).
//!
//! Mocks never sleep except where a platform's latency is the point
//! ([`MockOptions::token_latency`]); `Hang` holds the request until the mock
//! is dropped.

pub mod custom;
pub mod messenger;
pub mod slack;
pub mod telegram;
pub mod wechat;
pub mod whatsapp;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::Response;
use pushd::model::Platform;
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// How the mock answers a send to one recipient.
#[derive(Clone, Debug, PartialEq)]
pub enum Behavior {
    /// The platform's success body.
    Succeed,
    /// The user blocked the bot / can no longer be reached.
    Block,
    /// No such user on the platform.
    InvalidRecipient,
    /// Outside the platform's messaging window.
    OutsideWindow,
    /// The platform's rate-limit error; the delay is sent where the platform
    /// sends one (Telegram `retry_after`, Slack and custom `Retry-After`).
    RateLimit { retry_after_secs: u64 },
    /// A 5xx (or the platform's "system busy") with the platform's body.
    ServerError,
    /// HTTP 502 with an HTML page, as a proxy in front of the API sends.
    HtmlError,
    /// HTTP 200, JSON content type, the connection cut halfway through the body.
    Truncated,
    /// The success body, written in three chunks (chunked transfer encoding).
    ChunkedSucceed,
    /// Never answers (until the mock is dropped).
    Hang,
    /// Succeeds after a delay (a slow platform; requests stay in flight).
    SlowSucceed { millis: u64 },
    /// The platform's invalid/expired token error, whatever token was sent.
    BadToken,
    /// Behaves like `then` for the first `times` requests to this recipient,
    /// then succeeds.
    FailFirst { times: u32, then: Box<Behavior> },
}

impl Behavior {
    pub fn rate_limit(retry_after_secs: u64) -> Behavior {
        Behavior::RateLimit { retry_after_secs }
    }

    pub fn fail_first(times: u32, then: Behavior) -> Behavior {
        Behavior::FailFirst {
            times,
            then: Box::new(then),
        }
    }
}

/// The failures a platform file renders in its own words.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Failure {
    Block,
    InvalidRecipient,
    OutsideWindow,
    RateLimit(u64),
    ServerError,
    BadToken,
}

/// What is wrong with the account behind the mock's credentials, for
/// `pushd channel test`: each platform file answers its credential check
/// (and, where the platform would, its sends) with the real error body.
/// A platform without such an error ignores the fault (documented there).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AccountFault {
    /// The token expired (or, where tokens do not expire, was revoked).
    ExpiredToken,
    /// The token lacks the permission (scope) sending needs.
    MissingPermission,
    /// Messenger/Instagram: a user access token instead of the Page's.
    UserToken,
    /// WeChat: the caller's IP is not on the account's whitelist (40164).
    IpNotWhitelisted,
    /// Custom: a receiver that predates pings answers them 400.
    PingUnsupported,
}

/// Per-mock settings beyond the platform.
#[derive(Clone, Debug)]
pub struct MockOptions {
    /// WeChat: `expires_in` of the access tokens it issues.
    pub token_expires_in: u64,
    /// WeChat: how long the token endpoint takes to answer (to show that
    /// concurrent sends share one token fetch).
    pub token_latency: Duration,
}

impl Default for MockOptions {
    fn default() -> Self {
        MockOptions {
            token_expires_in: 7200,
            token_latency: Duration::ZERO,
        }
    }
}

/// Credentials every mock accepts. All are distinctive so tests can search
/// logs and errors for them.
/// One channel of every kind that needs a mock (the simulator needs none),
/// by the name tests give it.
pub const EVERY_KIND: [(&str, Platform); 8] = [
    ("wa", Platform::Whatsapp),
    ("fb", Platform::Messenger),
    ("ig", Platform::Instagram),
    ("tg", Platform::Telegram),
    ("sl", Platform::Slack),
    ("wx", Platform::Wechat),
    ("web", Platform::Webchat),
    ("hook", Platform::Custom),
];

/// Starts a mock for each (name, platform) on `rt`; returns the
/// `[channels.*]` config pointing at them, and the mocks by name.
pub fn start_each(
    rt: &tokio::runtime::Runtime,
    kinds: &[(&'static str, Platform)],
) -> (String, BTreeMap<&'static str, MockPlatform>) {
    let mut channels = String::new();
    let mut mocks = BTreeMap::new();
    for (name, platform) in kinds {
        let mock = rt.block_on(MockPlatform::start(*platform));
        channels.push_str(&mock.channel_toml(name));
        channels.push('\n');
        mocks.insert(*name, mock);
    }
    (channels, mocks)
}

pub mod creds {
    pub const WA_TOKEN: &str = "EAAGmockWhatsAppTokenS3CRET0001";
    pub const WA_PHONE_NUMBER_ID: &str = "106540352242922";
    pub const PAGE_TOKEN: &str = "EAAGmockPageAccessTokenS3CRET02";
    pub const PAGE_ID: &str = "1122334455667788";
    pub const TG_TOKEN: &str = "123456789:AAmockTelegramBotTokenS3CRET03";
    pub const SLACK_TOKEN: &str = "xoxb-mock-slack-token-S3CRET04";
    pub const WX_APP_ID: &str = "wx0mockappid0005";
    pub const WX_APP_SECRET: &str = "mockwechatappsecretS3CRET000006";
    /// `whsec_` + base64("pushd mock webhook signing key!!").
    pub const WEBHOOK_SECRET: &str = "whsec_cHVzaGQgbW9jayB3ZWJob29rIHNpZ25pbmcga2V5ISE=";
    /// Webhook-side secrets the config requires (never sent by adapters).
    pub const APP_SECRET: &str = "mock-meta-app-secret-S3CRET07";
    pub const VERIFY_TOKEN: &str = "mock-verify-token-S3CRET08";
    pub const TG_SECRET_TOKEN: &str = "mock-tg-secret-token-S3CRET09";
    pub const SLACK_SIGNING_SECRET: &str = "mock-slack-signing-S3CRET10";
}

/// One request as the mock saw it.
#[derive(Clone, Debug)]
pub struct Recorded {
    /// 1-based position in this mock's request log; success ids embed it.
    pub seq: u64,
    pub method: String,
    pub path: String,
    pub query: BTreeMap<String, String>,
    /// Lower-case header names.
    pub headers: BTreeMap<String, String>,
    pub raw_body: String,
    pub json: Option<Value>,
    /// When the mock received it.
    pub at: std::time::Instant,
    /// The user the request is addressed to, when it is a send.
    pub recipient: Option<String>,
}

impl Recorded {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .get(&name.to_ascii_lowercase())
            .map(String::as_str)
    }

    /// The JSON body (`Value::Null` if it was not JSON).
    pub fn body(&self) -> &Value {
        static NULL: Value = Value::Null;
        self.json.as_ref().unwrap_or(&NULL)
    }
}

/// A request handed to a platform file.
pub struct Incoming {
    pub seq: u64,
    pub method: Method,
    pub path: String,
    pub query: BTreeMap<String, String>,
    pub headers: HeaderMap,
    pub raw_body: Bytes,
    pub json: Option<Value>,
}

impl Incoming {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub fn body(&self) -> &Value {
        static NULL: Value = Value::Null;
        self.json.as_ref().unwrap_or(&NULL)
    }
}

/// What a platform file answers.
pub enum Reply {
    Json {
        status: u16,
        headers: Vec<(&'static str, String)>,
        body: Value,
    },
    /// Answer after `delay` (platform latency, e.g. WeChat's token endpoint).
    Delayed(Duration, Box<Reply>),
}

impl Reply {
    pub fn json(status: u16, body: Value) -> Reply {
        Reply::Json {
            status,
            headers: Vec::new(),
            body,
        }
    }

    pub fn with_header(self, name: &'static str, value: String) -> Reply {
        match self {
            Reply::Json {
                status,
                mut headers,
                body,
            } => {
                headers.push((name, value));
                Reply::Json {
                    status,
                    headers,
                    body,
                }
            }
            other => other,
        }
    }
}

/// A platform's API as the mock speaks it.
pub trait Api: Send + Sync + 'static {
    /// The recipient a request addresses, for the log and scripting.
    fn recipient(&self, req: &Incoming) -> Option<String>;
    /// Checks route, credentials and body shape; `Err` answers at once
    /// (also used for non-send endpoints such as WeChat's token).
    fn check(&self, mock: &Shared, req: &Incoming) -> Result<(), Reply>;
    /// The platform's success body for a send.
    fn success(&self, req: &Incoming, recipient: &str) -> Value;
    /// The platform's answer for a scripted failure.
    fn failure(&self, failure: Failure, req: &Incoming, recipient: &str) -> Reply;
}

#[derive(Default)]
pub struct MockState {
    scripts: HashMap<String, Behavior>,
    default: Option<Behavior>,
    requests: Vec<Recorded>,
    /// Sends that passed `check`, per recipient (for `FailFirst`).
    attempts: HashMap<String, u32>,
    /// WeChat access tokens: valid, and expired (answer 42001).
    pub valid_tokens: HashSet<String>,
    pub expired_tokens: HashSet<String>,
    pub tokens_issued: u64,
    /// WeChat: the account's daily send quota is used up (every send 45009).
    pub daily_quota_used_up: bool,
    /// See [`MockPlatform::set_account_fault`].
    pub account_fault: Option<AccountFault>,
}

/// State shared by the server and the test.
pub struct Shared {
    pub platform: Platform,
    pub options: MockOptions,
    state: Mutex<MockState>,
    changed: Notify,
    cancel: CancellationToken,
    api: Box<dyn Api>,
}

impl Shared {
    pub fn state(&self) -> MutexGuard<'_, MockState> {
        // A test that panicked while holding the lock already failed; the
        // state is still readable.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A running mock platform. Dropping it stops the server and releases hung
/// requests.
pub struct MockPlatform {
    shared: Arc<Shared>,
    base_url: String,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for MockPlatform {
    fn drop(&mut self) {
        self.shared.cancel.cancel();
        self.server.abort();
    }
}

impl MockPlatform {
    pub async fn start(platform: Platform) -> MockPlatform {
        MockPlatform::start_with(platform, MockOptions::default()).await
    }

    pub async fn start_with(platform: Platform, options: MockOptions) -> MockPlatform {
        let api: Box<dyn Api> = match platform {
            Platform::Whatsapp => Box::new(whatsapp::WhatsAppApi),
            Platform::Messenger => Box::new(messenger::MessengerApi { instagram: false }),
            Platform::Instagram => Box::new(messenger::MessengerApi { instagram: true }),
            Platform::Telegram => Box::new(telegram::TelegramApi),
            Platform::Slack => Box::new(slack::SlackApi),
            Platform::Wechat => Box::new(wechat::WeChatApi),
            Platform::Custom | Platform::Webchat => Box::new(custom::CustomApi),
            Platform::Simulator => panic!("the simulator needs no mock platform"),
        };
        let shared = Arc::new(Shared {
            platform,
            options,
            state: Mutex::new(MockState::default()),
            changed: Notify::new(),
            cancel: CancellationToken::new(),
            api,
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a loopback port for the mock platform");
        let addr = listener.local_addr().expect("mock listener address");
        let app = Router::new().fallback(handle).with_state(shared.clone());
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        MockPlatform {
            shared,
            base_url: format!("http://{addr}"),
            server,
        }
    }

    pub fn platform(&self) -> Platform {
        self.shared.platform
    }

    /// The API root to put in `base_url` (custom/webchat: use [`Self::url`]).
    pub fn base_url(&self) -> String {
        self.base_url.clone()
    }

    /// The webhook URL for custom/webchat channels.
    pub fn url(&self) -> String {
        format!("{}{}", self.base_url, custom::PATH)
    }

    /// A complete `[channels.<name>]` table for this mock: kind, base URL or
    /// url, and credentials. More keys can be appended (`timeout = "300ms"`).
    pub fn channel_toml(&self, name: &str) -> String {
        use creds::*;
        let base = &self.base_url;
        let kind = self.platform();
        let keys = match kind {
            Platform::Whatsapp => format!(
                "base_url = \"{base}\"\nphone_number_id = \"{WA_PHONE_NUMBER_ID}\"\ntoken = \"{WA_TOKEN}\"\napp_secret = \"{APP_SECRET}\"\nverify_token = \"{VERIFY_TOKEN}\"\n"
            ),
            Platform::Messenger | Platform::Instagram => format!(
                "base_url = \"{base}\"\npage_id = \"{PAGE_ID}\"\ntoken = \"{PAGE_TOKEN}\"\napp_secret = \"{APP_SECRET}\"\nverify_token = \"{VERIFY_TOKEN}\"\n"
            ),
            Platform::Telegram => format!(
                "base_url = \"{base}\"\ntoken = \"{TG_TOKEN}\"\nsecret_token = \"{TG_SECRET_TOKEN}\"\n"
            ),
            Platform::Slack => format!(
                "base_url = \"{base}\"\ntoken = \"{SLACK_TOKEN}\"\nsigning_secret = \"{SLACK_SIGNING_SECRET}\"\n"
            ),
            Platform::Wechat => format!(
                "base_url = \"{base}\"\napp_id = \"{WX_APP_ID}\"\napp_secret = \"{WX_APP_SECRET}\"\nverify_token = \"{VERIFY_TOKEN}\"\n"
            ),
            Platform::Custom | Platform::Webchat => format!(
                "url = \"{}\"\nwebhook_secret = \"{WEBHOOK_SECRET}\"\n",
                self.url()
            ),
            Platform::Simulator => String::new(),
        };
        format!("[channels.{name}]\nkind = \"{kind}\"\n{keys}")
    }

    /// Every credential in [`Self::channel_toml`], for leak checks.
    pub fn secrets(&self) -> Vec<&'static str> {
        use creds::*;
        let mut all = vec![
            APP_SECRET,
            VERIFY_TOKEN,
            TG_SECRET_TOKEN,
            SLACK_SIGNING_SECRET,
        ];
        all.extend(match self.platform() {
            Platform::Whatsapp => vec![WA_TOKEN],
            Platform::Messenger | Platform::Instagram => vec![PAGE_TOKEN],
            Platform::Telegram => vec![TG_TOKEN, "AAmockTelegramBotTokenS3CRET03"],
            Platform::Slack => vec![SLACK_TOKEN],
            Platform::Wechat => vec![WX_APP_SECRET],
            Platform::Custom | Platform::Webchat => {
                vec![
                    WEBHOOK_SECRET,
                    "cHVzaGQgbW9jayB3ZWJob29rIHNpZ25pbmcga2V5ISE=",
                ]
            }
            Platform::Simulator => vec![],
        });
        all
    }

    /// How the mock answers sends to `recipient` from now on.
    pub fn script(&self, recipient: &str, behavior: Behavior) {
        let mut st = self.shared.state();
        st.scripts.insert(recipient.to_string(), behavior);
        st.attempts.remove(recipient);
    }

    /// How the mock answers recipients without a script (default `Succeed`).
    pub fn set_default(&self, behavior: Behavior) {
        self.shared.state().default = Some(behavior);
    }

    /// Every request, in arrival order.
    pub fn requests(&self) -> Vec<Recorded> {
        self.shared.state().requests.clone()
    }

    /// Requests that addressed a recipient (sends), in arrival order.
    pub fn sends(&self) -> Vec<Recorded> {
        self.requests()
            .into_iter()
            .filter(|r| r.recipient.is_some())
            .collect()
    }

    pub fn requests_for(&self, recipient: &str) -> Vec<Recorded> {
        self.requests()
            .into_iter()
            .filter(|r| r.recipient.as_deref() == Some(recipient))
            .collect()
    }

    /// Sends per recipient.
    pub fn count_by_recipient(&self) -> BTreeMap<String, usize> {
        let mut counts = BTreeMap::new();
        for r in self.sends() {
            if let Some(to) = r.recipient {
                *counts.entry(to).or_insert(0) += 1;
            }
        }
        counts
    }

    /// Exactly these recipients were each sent to exactly once.
    pub fn assert_each_recipient_once(&self, recipients: &[&str]) {
        let counts = self.count_by_recipient();
        let expected: BTreeMap<String, usize> =
            recipients.iter().map(|r| (r.to_string(), 1)).collect();
        assert_eq!(counts, expected, "sends per recipient");
    }

    /// Waits until at least `n` requests arrived; panics at the deadline.
    pub async fn wait_for_requests(&self, n: usize, timeout: Duration) -> Vec<Recorded> {
        self.wait_until(timeout, |reqs| reqs.len() >= n)
            .await
            .unwrap_or_else(|got| panic!("waited {timeout:?} for {n} requests, got {}", got.len()))
    }

    /// Waits until `done(requests)`; `Err(requests so far)` at the deadline.
    pub async fn wait_until(
        &self,
        timeout: Duration,
        done: impl Fn(&[Recorded]) -> bool,
    ) -> Result<Vec<Recorded>, Vec<Recorded>> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.shared.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                let st = self.shared.state();
                if done(&st.requests) {
                    return Ok(st.requests.clone());
                }
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return Err(self.requests());
            }
        }
    }

    /// WeChat: every access token issued so far now answers 42001
    /// "access_token expired".
    pub fn expire_access_tokens(&self) {
        let mut st = self.shared.state();
        let valid: Vec<String> = st.valid_tokens.drain().collect();
        st.expired_tokens.extend(valid);
    }

    /// From now on the platform answers as if its account had `fault`
    /// (`None`: a healthy account again).
    pub fn set_account_fault(&self, fault: Option<AccountFault>) {
        self.shared.state().account_fault = fault;
    }

    /// Requests to the Bot API / Graph API method or path ending in `suffix`
    /// (`getMe`, `setWebhook`, `/auth.test`).
    pub fn calls_to(&self, suffix: &str) -> Vec<Recorded> {
        self.requests()
            .into_iter()
            .filter(|r| r.path.ends_with(suffix))
            .collect()
    }

    /// WeChat: the account's daily quota is back (a new day, or cleared in
    /// the console); sends are answered as scripted again.
    pub fn restore_daily_quota(&self) {
        self.shared.state().daily_quota_used_up = false;
    }

    /// WeChat: how many access tokens the token endpoint issued.
    pub fn tokens_issued(&self) -> u64 {
        self.shared.state().tokens_issued
    }

    /// WeChat: the account has made its daily quota of sends; from now on
    /// every send is refused with 45009, whoever it is for.
    pub fn use_up_daily_quota(&self) {
        self.shared.state().daily_quota_used_up = true;
    }
}

async fn handle(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    raw_body: Bytes,
) -> Response {
    let query: BTreeMap<String, String> = uri
        .query()
        .map(|q| serde_urlencoded::from_str(q).unwrap_or_default())
        .unwrap_or_default();
    let json = serde_json::from_slice(&raw_body).ok();
    let mut req = Incoming {
        seq: 0,
        method,
        path: uri.path().to_string(),
        query,
        headers,
        raw_body,
        json,
    };
    let recipient = shared.api.recipient(&req);
    {
        let mut st = shared.state();
        req.seq = st.requests.len() as u64 + 1;
        st.requests.push(Recorded {
            seq: req.seq,
            at: std::time::Instant::now(),
            method: req.method.to_string(),
            path: req.path.clone(),
            query: req.query.clone(),
            headers: req
                .headers
                .iter()
                .map(|(k, v)| {
                    (
                        k.as_str().to_ascii_lowercase(),
                        String::from_utf8_lossy(v.as_bytes()).into_owned(),
                    )
                })
                .collect(),
            raw_body: String::from_utf8_lossy(&req.raw_body).into_owned(),
            json: req.json.clone(),
            recipient: recipient.clone(),
        });
    }
    shared.changed.notify_waiters();

    if let Err(reply) = shared.api.check(&shared, &req) {
        return render(&shared, reply).await;
    }
    let recipient = recipient.unwrap_or_default();
    let behavior = {
        let mut st = shared.state();
        let n = {
            let n = st.attempts.entry(recipient.clone()).or_insert(0);
            *n += 1;
            *n
        };
        let scripted = st
            .scripts
            .get(&recipient)
            .or(st.default.as_ref())
            .cloned()
            .unwrap_or(Behavior::Succeed);
        resolve(scripted, n)
    };
    let failure = match behavior {
        Behavior::Succeed => {
            let body = shared.api.success(&req, &recipient);
            return render(&shared, Reply::json(200, body)).await;
        }
        Behavior::SlowSucceed { millis } => {
            tokio::time::sleep(Duration::from_millis(millis)).await;
            let body = shared.api.success(&req, &recipient);
            return render(&shared, Reply::json(200, body)).await;
        }
        Behavior::HtmlError => return html_502(),
        Behavior::Truncated => return truncated(&shared.api.success(&req, &recipient)),
        Behavior::ChunkedSucceed => return chunked(&shared.api.success(&req, &recipient)),
        Behavior::Hang => {
            shared.cancel.cancelled().await;
            return plain(StatusCode::SERVICE_UNAVAILABLE, "mock stopped");
        }
        Behavior::Block => Failure::Block,
        Behavior::InvalidRecipient => Failure::InvalidRecipient,
        Behavior::OutsideWindow => Failure::OutsideWindow,
        Behavior::RateLimit { retry_after_secs } => Failure::RateLimit(retry_after_secs),
        Behavior::ServerError => Failure::ServerError,
        Behavior::BadToken => Failure::BadToken,
        Behavior::FailFirst { .. } => unreachable!("resolved above"),
    };
    let reply = shared.api.failure(failure, &req, &recipient);
    render(&shared, reply).await
}

/// The behaviour for the `attempt`-th request (1-based) to one recipient.
fn resolve(b: Behavior, attempt: u32) -> Behavior {
    match b {
        Behavior::FailFirst { times, then } if attempt <= times => resolve(*then, attempt),
        Behavior::FailFirst { .. } => Behavior::Succeed,
        other => other,
    }
}

fn render(
    shared: &Shared,
    reply: Reply,
) -> std::pin::Pin<Box<dyn Future<Output = Response> + Send + '_>> {
    Box::pin(async move {
        match reply {
            Reply::Json {
                status,
                headers,
                body,
            } => {
                let mut b = Response::builder()
                    .status(status)
                    .header("content-type", "application/json; charset=utf-8");
                for (k, v) in headers {
                    b = b.header(k, v);
                }
                b.body(Body::from(body.to_string()))
                    .unwrap_or_else(|_| plain(StatusCode::INTERNAL_SERVER_ERROR, "bad mock reply"))
            }
            Reply::Delayed(delay, inner) => {
                tokio::select! {
                    _ = tokio::time::sleep(delay) => render(shared, *inner).await,
                    _ = shared.cancel.cancelled() => plain(StatusCode::SERVICE_UNAVAILABLE, "mock stopped"),
                }
            }
        }
    })
}

fn plain(status: StatusCode, text: &'static str) -> Response {
    Response::builder()
        .status(status)
        .header("content-type", "text/plain")
        .body(Body::from(text))
        .unwrap_or_default()
}

/// What nginx in front of an API answers when the upstream is down.
pub const HTML_502: &str = "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n";

fn html_502() -> Response {
    Response::builder()
        .status(StatusCode::BAD_GATEWAY)
        .header("content-type", "text/html")
        .body(Body::from(HTML_502))
        .unwrap_or_default()
}

/// 200 with the first half of `body`, then the connection is cut: the
/// status line, headers and half the body reach the client first.
fn truncated(body: &Value) -> Response {
    let text = body.to_string();
    let half = Bytes::from(text.as_bytes()[..text.len() / 2].to_vec());
    let stream = futures::stream::unfold(0u8, move |step| {
        let half = half.clone();
        async move {
            match step {
                0 => Some((Ok(half), 1)),
                1 => {
                    // Pending once, so hyper flushes what it has before the cut.
                    tokio::task::yield_now().await;
                    Some((Err(std::io::Error::other("mock cut the connection")), 2))
                }
                _ => None,
            }
        }
    });
    Response::builder()
        .status(StatusCode::OK)
        .header("content-type", "application/json")
        .body(Body::from_stream(stream))
        .unwrap_or_default()
}

fn chunked(body: &Value) -> Response {
    let text = body.to_string().into_bytes();
    let third = text.len().div_ceil(3);
    let parts: Vec<Bytes> = text.chunks(third).map(Bytes::copy_from_slice).collect();
    let stream = futures::stream::unfold(parts.into_iter(), |mut parts| async move {
        let part = parts.next()?;
        // Pending once between parts, so hyper writes each as its own chunk.
        tokio::task::yield_now().await;
        Some((Ok::<_, std::io::Error>(part), parts))
    });
    Response::builder()
        .status(StatusCode::OK)
        .header("content-type", "application/json")
        .body(Body::from_stream(stream))
        .unwrap_or_default()
}

/// Meta's Graph API error envelope.
pub fn graph_error(
    status: u16,
    code: i64,
    subcode: Option<i64>,
    message: &str,
    details: Option<&str>,
) -> Reply {
    let mut error = json!({
        "message": message,
        "type": "OAuthException",
        "code": code,
        "fbtrace_id": "AmockTrace0001",
    });
    if let Some(sub) = subcode {
        error["error_subcode"] = json!(sub);
    }
    if let Some(d) = details {
        error["error_data"] = json!({ "messaging_product": "whatsapp", "details": d });
    }
    if status >= 500 {
        error["is_transient"] = json!(true);
    }
    Reply::json(status, json!({ "error": error }))
}

/// A bearer token from the Authorization header.
pub fn bearer(req: &Incoming) -> Option<&str> {
    req.header("authorization")
        .and_then(|v| v.strip_prefix("Bearer "))
}
