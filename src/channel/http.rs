//! What every HTTP adapter shares: sending one request with the channel's
//! timeout, reading the reply in full, turning transport failures and
//! unreadable replies into `Transient` errors, and keeping credentials out of
//! every error message.
//!
//! Credentials travel in URLs on several platforms (Telegram's bot token is a
//! path segment; Meta and WeChat tokens are query parameters). reqwest errors
//! print the URL, so every transport error goes through [`transport_error`],
//! which strips it, and every `SendError` an adapter returns goes through
//! [`Scrubber::scrub`] as a second line of defence.

use crate::channel::{ChannelContext, ChannelError, Rule};
use crate::config::{ChannelConfig, Secret};
use crate::model::{Button, ErrorClass, SendError};
use reqwest::StatusCode;
use reqwest::header::HeaderMap;
use std::time::Duration;

/// The largest reply body we read; anything bigger is not a platform API answer.
const MAX_REPLY_BYTES: usize = 1 << 20;

/// How many characters of an unreadable body an error message quotes.
const SNIPPET_CHARS: usize = 100;

/// One channel instance's HTTP settings.
#[derive(Clone)]
pub(crate) struct HttpSettings {
    pub client: reqwest::Client,
    /// Per-request timeout, from connecting until the body is read.
    pub timeout: Duration,
    /// API root without a trailing '/'.
    pub base_url: String,
}

impl HttpSettings {
    pub fn new(cfg: &ChannelConfig, ctx: &ChannelContext, default_base: &str) -> HttpSettings {
        let base = cfg.base_url.as_deref().unwrap_or(default_base);
        HttpSettings {
            client: ctx.http.clone(),
            timeout: cfg.timeout.unwrap_or(ctx.send_timeout),
            base_url: base.trim_end_matches('/').to_string(),
        }
    }

    /// `{base_url}{path}`; `path` starts with '/'.
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base_url, path)
    }

    /// [`HttpSettings::url`], parsed once (a fixed endpoint is then not
    /// parsed again on every send).
    pub fn endpoint(&self, path: &str) -> Result<reqwest::Url, ChannelError> {
        parse_url(&self.url(path))
    }
}

/// A configured URL, parsed (config validation has checked it already; the
/// caller names the channel).
pub(crate) fn parse_url(url: &str) -> Result<reqwest::Url, ChannelError> {
    reqwest::Url::parse(url).map_err(|e| ChannelError::InvalidUrl {
        url: url.to_string(),
        reason: e.to_string(),
    })
}

/// A platform's reply, read in full.
#[derive(Debug, Clone)]
pub(crate) struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: bytes::Bytes,
}

impl Reply {
    pub fn content_type(&self) -> &str {
        self.headers
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("no content type")
    }

    /// The body as JSON, if it is JSON.
    pub fn json(&self) -> Option<serde_json::Value> {
        serde_json::from_slice(&self.body).ok()
    }

    /// `Retry-After` in seconds (the HTTP-date form is not used by chat APIs).
    pub fn retry_after(&self) -> Option<Duration> {
        self.headers
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<f64>().ok())
            .filter(|s| s.is_finite() && *s >= 0.0)
            .map(Duration::from_secs_f64)
    }

    /// The first characters of the body, on one line, for error messages.
    pub fn snippet(&self) -> String {
        let text = String::from_utf8_lossy(&self.body);
        let one_line: String = text
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .take(SNIPPET_CHARS)
            .collect();
        let more = text.chars().count() > SNIPPET_CHARS;
        format!("{}{}", one_line.trim(), if more { "…" } else { "" })
    }

    /// The reply is not the JSON the platform documents (an HTML error page
    /// from a proxy, a cut-off body): worth retrying, never a panic.
    pub fn not_json(&self) -> SendError {
        let what = if self.body.is_empty() {
            "an empty body".to_string()
        } else {
            format!(
                "a non-JSON body ({}): {}",
                self.content_type(),
                self.snippet()
            )
        };
        SendError::new(
            ErrorClass::Transient,
            format!("http_{}", self.status.as_u16()),
            format!("HTTP {} with {what}", self.status.as_u16()),
        )
        .with_retry_after(self.retry_after())
    }

    /// JSON, but without the field a successful reply always has.
    pub fn missing(&self, what: &str) -> SendError {
        SendError::new(
            ErrorClass::Transient,
            format!("http_{}", self.status.as_u16()),
            format!(
                "HTTP {} without {what} in the reply: {}",
                self.status.as_u16(),
                self.snippet()
            ),
        )
    }

    /// A classification from the HTTP status alone, for replies whose body
    /// says nothing we recognise.
    pub fn status_error(&self) -> SendError {
        let code = self.status.as_u16();
        let class = match code {
            429 => ErrorClass::RateLimited,
            408 | 500..=599 => ErrorClass::Transient,
            401 | 403 => ErrorClass::Auth,
            _ => ErrorClass::Rejected,
        };
        SendError::new(
            class,
            format!("http_{code}"),
            format!("HTTP {code}: {}", self.snippet()),
        )
        .with_retry_after(self.retry_after())
    }
}

/// Sends `request` with `timeout` and reads the whole reply.
pub(crate) async fn execute(
    request: reqwest::RequestBuilder,
    timeout: Duration,
) -> Result<Reply, SendError> {
    let mut response = request
        .timeout(timeout)
        .send()
        .await
        .map_err(|e| transport_error(e, timeout))?;
    let status = response.status();
    let headers = std::mem::take(response.headers_mut());
    // A reply is almost always one chunk: kept as it is, without a copy.
    let mut first: Option<bytes::Bytes> = None;
    let mut rest = bytes::BytesMut::new();
    let mut len = 0;
    loop {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                len += chunk.len();
                if len > MAX_REPLY_BYTES {
                    return Err(SendError::new(
                        ErrorClass::Transient,
                        format!("http_{}", status.as_u16()),
                        format!(
                            "HTTP {} with a reply larger than {MAX_REPLY_BYTES} bytes",
                            status.as_u16()
                        ),
                    ));
                }
                match &first {
                    None => first = Some(chunk),
                    Some(f) => {
                        if rest.is_empty() {
                            rest.extend_from_slice(f);
                        }
                        rest.extend_from_slice(&chunk);
                    }
                }
            }
            Ok(None) => break,
            Err(e) => {
                let mut err = transport_error(e, timeout);
                if err.code == "network" {
                    err.code = "truncated".into();
                    err.message = format!(
                        "HTTP {} reply cut off after {len} bytes: {}",
                        status.as_u16(),
                        err.message
                    );
                }
                return Err(err);
            }
        }
    }
    let body = if rest.is_empty() {
        first.unwrap_or_default()
    } else {
        rest.freeze()
    };
    Ok(Reply {
        status,
        headers,
        body,
    })
}

/// A transport failure as a `Transient` error, without the request URL
/// (which may carry a token).
pub(crate) fn transport_error(e: reqwest::Error, timeout: Duration) -> SendError {
    let e = e.without_url();
    let (code, what) = if e.is_timeout() {
        (
            "timeout",
            format!("no complete reply within {}", fmt_duration(timeout)),
        )
    } else if e.is_connect() {
        ("connect", "cannot connect".to_string())
    } else if e.is_builder() {
        ("request", "cannot build the request".to_string())
    } else {
        ("network", "the connection failed".to_string())
    };
    SendError::new(
        ErrorClass::Transient,
        code,
        format!("{what}: {}", error_chain(&e)),
    )
}

/// `outer: cause: root cause`, so the operator sees "connection refused".
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts = vec![e.to_string()];
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        source = s.source();
    }
    parts.join(": ")
}

fn fmt_duration(d: Duration) -> String {
    crate::util::duration::format(d)
}

/// Removes credentials from everything an adapter reports.
#[derive(Clone, Default)]
pub(crate) struct Scrubber {
    secrets: Vec<Secret>,
}

impl Scrubber {
    pub fn new(secrets: impl IntoIterator<Item = Secret>) -> Scrubber {
        Scrubber {
            // Very short values would blank out ordinary words.
            secrets: secrets
                .into_iter()
                .filter(|s| s.expose().len() >= 4)
                .collect(),
        }
    }

    pub fn text(&self, text: &str) -> String {
        let mut out = text.to_string();
        for s in &self.secrets {
            if out.contains(s.expose()) {
                out = out.replace(s.expose(), "***");
            }
        }
        out
    }

    pub fn scrub(&self, mut err: SendError) -> SendError {
        err.message = self.text(&err.message);
        err.code = self.text(&err.code);
        err
    }
}

/// Logs a failed send at debug level (never with a URL), and scrubs it.
pub(crate) fn failed(channel: &str, scrubber: &Scrubber, err: SendError) -> SendError {
    let err = scrubber.scrub(err);
    tracing::debug!(
        channel,
        class = %err.class,
        code = %err.code,
        message = %err.message,
        "send failed"
    );
    err
}

/// The error `send` returns when `validate` refuses the message.
pub(crate) fn invalid_message(reason: impl std::fmt::Display) -> SendError {
    SendError::new(ErrorClass::Rejected, "invalid_message", reason.to_string())
}

/// Characters as users count them (Unicode scalar values).
pub(crate) fn chars(s: &str) -> usize {
    s.chars().count()
}

/// Checks `s` has at most `max` characters.
pub(crate) fn check_chars(what: &str, s: &str, max: usize) -> Result<(), Rule> {
    let count = chars(s);
    if count > max {
        return Err(Rule::TooManyChars {
            what: what.to_string(),
            count,
            max,
            preview: preview(s),
        });
    }
    Ok(())
}

/// Checks `s` has at most `max` bytes (UTF-8).
pub(crate) fn check_bytes(what: &str, s: &str, max: usize) -> Result<(), Rule> {
    if s.len() > max {
        return Err(Rule::TooManyBytes {
            what: what.to_string(),
            len: s.len(),
            max,
            preview: preview(s),
        });
    }
    Ok(())
}

/// Checks `url` is an http(s) URL (images and links must be fetchable).
pub(crate) fn check_http_url(what: &'static str, url: &str) -> Result<(), Rule> {
    if url.starts_with("https://") || url.starts_with("http://") {
        Ok(())
    } else {
        Err(Rule::NotHttpUrl {
            what,
            url: url.to_string(),
        })
    }
}

/// Checks a list has at most `max` entries.
pub(crate) fn check_count(what: &'static str, count: usize, max: usize) -> Result<(), Rule> {
    if count > max {
        return Err(Rule::TooMany { what, count, max });
    }
    Ok(())
}

fn preview(s: &str) -> String {
    let head: String = s.chars().take(30).collect();
    if head.len() < s.len() {
        format!("{head}…")
    } else {
        head
    }
}

/// The postback payload of a button: its `payload`, else its title (what the
/// user tapped is the next best thing to an id).
pub(crate) fn payload(b: &Button) -> &str {
    b.payload.as_deref().unwrap_or(&b.title)
}

/// A required `[channels.<name>]` setting is missing.
pub(crate) fn missing_setting(name: &str, key: &'static str) -> ChannelError {
    ChannelError::MissingSetting {
        channel: name.to_string(),
        key,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scrubber_hides_secrets() {
        let s = Scrubber::new([Secret::new("abcd1234"), Secret::new("x")]);
        assert_eq!(s.text("token abcd1234 in url"), "token *** in url");
        assert_eq!(s.text("x marks"), "x marks");
    }

    #[test]
    fn limits_name_the_limit() {
        let e = check_chars("button title", "a very long button title", 20)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("24 characters") && e.contains("limit is 20"),
            "{e}"
        );
        assert!(check_chars("t", "héllo", 5).is_ok());
        assert!(check_bytes("t", "héllo", 5).is_err());
    }

    #[test]
    fn snippet_is_one_short_line() {
        let r = Reply {
            status: StatusCode::BAD_GATEWAY,
            headers: HeaderMap::new(),
            body: bytes::Bytes::from(format!("<html>\n<body>{}</body>", "x".repeat(300))),
        };
        let e = r.not_json();
        assert_eq!(e.class, ErrorClass::Transient);
        assert!(e.message.starts_with("HTTP 502 with a non-JSON body"));
        assert!(!e.message.contains('\n'));
        assert!(e.message.chars().count() < 200, "{}", e.message);
    }
}
