//! What every platform's webhook parser shares (headers, query strings,
//! secrets, JSON paths in error messages), and the contract they keep.
//! [`crate::receipts::parse_webhook`] picks the parser: each checks the
//! request's signature on the raw bytes first, then parses the payload into
//! normalized [`InboundEvent`]s.
//!
//! Contract, per platform (`POST` unless noted):
//!
//! | platform | auth | handshake | reply |
//! |---|---|---|---|
//! | whatsapp, messenger, instagram | `X-Hub-Signature-256` with `app_secret` | `GET ?hub.mode=subscribe&hub.verify_token=…&hub.challenge=…` → `Challenge`, wrong token → 403 | empty `text/plain` |
//! | telegram | `X-Telegram-Bot-Api-Secret-Token` = `secret_token` | — | empty `text/plain`; for a `callback_query`, `{"method":"answerCallbackQuery","callback_query_id":…}` as `application/json` |
//! | slack | `X-Slack-Signature` + `X-Slack-Request-Timestamp` (±300 s) with `signing_secret` | `url_verification` (signed) → `Challenge` | empty `text/plain` |
//! | wechat | query `signature`/`timestamp`/`nonce` with `verify_token` (±300 s; a nonce once, see `replay`); safe mode: `msg_signature` over `<Encrypt>` | `GET …&echostr=…` → `Challenge(echostr)`, bad signature → 403 | `success` `text/plain` |
//! | custom, webchat | Standard Webhooks with `webhook_secret` (±300 s) | — | empty `text/plain` |
//! | simulator | — | — | always 400 |
//!
//! Errors: no/wrong/stale signature → `Unauthorized` (401); wrong handshake
//! token → `Forbidden` (403); a signed body we cannot read or that lacks a
//! required field → `BadRequest` (400) naming the field; any other method →
//! `MethodNotAllowed` (405). Well-formed events we do not track (reactions,
//! echoes, edits, …) are skipped: `Ok` with fewer (or no) events.
//!
//! When `insecure_webhooks = true` and the platform's secret is not
//! configured, the signature check is skipped; a configured secret is always
//! checked.

use axum::http::Method;
use serde_json::Value;

use super::{WebhookError, WebhookOutcome, WebhookRequest};
use crate::config::{ChannelConfig, Secret};
use crate::model::{InboundEvent, Millis};

/// The usual 200 answer to a webhook carrying events.
pub(crate) fn events(events: Vec<InboundEvent>) -> WebhookOutcome {
    WebhookOutcome::Events {
        events,
        reply: String::new(),
        reply_type: "text/plain",
    }
}

/// Refuses anything but `POST`.
pub(crate) fn expect_post(req: &WebhookRequest<'_>) -> Result<(), WebhookError> {
    if *req.method == Method::POST {
        Ok(())
    } else {
        Err(WebhookError::MethodNotAllowed)
    }
}

/// The secret a check needs: `Some` when configured (always checked),
/// `None` when it may be skipped (`insecure_webhooks = true` and unset),
/// an error otherwise.
pub(crate) fn secret<'a>(
    cfg: &'a ChannelConfig,
    value: Option<&'a Secret>,
    name: &str,
) -> Result<Option<&'a str>, WebhookError> {
    match value {
        Some(s) => Ok(Some(s.expose())),
        None if cfg.insecure_webhooks => Ok(None),
        None => Err(WebhookError::Unauthorized(format!(
            "this channel has no `{name}` configured, so its webhooks cannot be verified; set `{name}` (or `{name}_env`), or `insecure_webhooks = true` to accept unsigned webhooks"
        ))),
    }
}

/// A header as text; a value that is not visible ASCII counts as malformed.
pub(crate) fn header<'a>(
    req: &WebhookRequest<'a>,
    name: &'static str,
) -> Result<Option<&'a str>, WebhookError> {
    match req.headers.get(name) {
        None => Ok(None),
        Some(v) => v.to_str().map(Some).map_err(|_| {
            WebhookError::Unauthorized(format!(
                "the {name} header is malformed: it is not visible ASCII"
            ))
        }),
    }
}

/// The query string as decoded pairs.
pub(crate) fn query_pairs(req: &WebhookRequest<'_>) -> Result<Vec<(String, String)>, WebhookError> {
    serde_urlencoded::from_str::<Vec<(String, String)>>(req.query)
        .map_err(|e| WebhookError::BadRequest(format!("the query string is not form-encoded: {e}")))
}

pub(crate) fn query_get<'q>(pairs: &'q [(String, String)], key: &str) -> Option<&'q str> {
    pairs
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

/// Parses a JSON body, or says where it stopped making sense.
pub(crate) fn parse_json(body: &[u8]) -> Result<Value, WebhookError> {
    serde_json::from_slice(body)
        .map_err(|e| WebhookError::BadRequest(format!("the body is not valid JSON ({e})")))
}

/// A JSON value that is read and dropped, checked exactly as [`parse_json`]
/// checks it (string escapes and UTF-8, number ranges, nesting depth), for
/// typed readers that must refuse whatever `parse_json` refuses. serde's
/// `IgnoredAny` only skips over a value, and would let through, say, a
/// number out of range or a lone surrogate that `parse_json` rejects.
pub(crate) struct Skip;

impl<'de> serde::Deserialize<'de> for Skip {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Skip, D::Error> {
        d.deserialize_any(SkipVisitor)
    }
}

struct SkipVisitor;

impl<'de> serde::de::Visitor<'de> for SkipVisitor {
    type Value = Skip;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<Skip, E> {
        Ok(Skip)
    }

    fn visit_i64<E>(self, _: i64) -> Result<Skip, E> {
        Ok(Skip)
    }

    fn visit_u64<E>(self, _: u64) -> Result<Skip, E> {
        Ok(Skip)
    }

    fn visit_f64<E>(self, _: f64) -> Result<Skip, E> {
        Ok(Skip)
    }

    fn visit_str<E>(self, _: &str) -> Result<Skip, E> {
        Ok(Skip)
    }

    fn visit_unit<E>(self) -> Result<Skip, E> {
        Ok(Skip)
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Skip, A::Error> {
        while seq.next_element::<Skip>()?.is_some() {}
        Ok(Skip)
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Skip, A::Error> {
        while map.next_entry::<Skip, Skip>()?.is_some() {}
        Ok(Skip)
    }
}

/// A JSON string, borrowed from the body unless it had escapes.
pub(crate) struct Str<'a>(pub std::borrow::Cow<'a, str>);

impl<'de> serde::Deserialize<'de> for Str<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Str<'de>, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Str<'de>;

            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a string")
            }

            fn visit_borrowed_str<E>(self, s: &'de str) -> Result<Str<'de>, E> {
                Ok(Str(std::borrow::Cow::Borrowed(s)))
            }

            fn visit_str<E>(self, s: &str) -> Result<Str<'de>, E> {
                Ok(Str(std::borrow::Cow::Owned(s.to_string())))
            }
        }
        d.deserialize_str(V)
    }
}

pub(crate) fn bad(msg: impl Into<String>) -> WebhookError {
    WebhookError::BadRequest(msg.into())
}

/// Unix seconds → ms, refusing values that would overflow.
pub(crate) fn secs_to_ms(secs: i64, what: &str) -> Result<Millis, WebhookError> {
    secs.checked_mul(1000)
        .ok_or_else(|| bad(format!("`{what}` is not a plausible unix time: {secs}")))
}

/// A JSON value with the path it was found at, so errors say exactly which
/// field was missing or of the wrong type (`entry[0].changes[0].value…`).
#[derive(Debug, Clone)]
pub(crate) struct Json<'a> {
    value: &'a Value,
    path: String,
}

impl<'a> Json<'a> {
    pub fn root(value: &'a Value) -> Json<'a> {
        Json {
            value,
            path: String::new(),
        }
    }

    pub fn value(&self) -> &'a Value {
        self.value
    }

    pub fn path(&self) -> &str {
        if self.path.is_empty() {
            "(body)"
        } else {
            &self.path
        }
    }

    fn child_path(&self, key: &str) -> String {
        if self.path.is_empty() {
            key.to_string()
        } else {
            format!("{}.{key}", self.path)
        }
    }

    /// A member of this object; `None` when absent or `null` (or when this
    /// is not an object: callers that require an object use [`Json::req`]).
    pub fn get(&self, key: &str) -> Option<Json<'a>> {
        match self.value.get(key) {
            None | Some(Value::Null) => None,
            Some(v) => Some(Json {
                value: v,
                path: self.child_path(key),
            }),
        }
    }

    pub fn req(&self, key: &str) -> Result<Json<'a>, WebhookError> {
        if !self.value.is_object() {
            return Err(bad(format!("`{}` must be an object", self.path())));
        }
        self.get(key).ok_or_else(|| {
            bad(format!(
                "required field `{}` is missing",
                self.child_path(key)
            ))
        })
    }

    pub fn str(&self) -> Result<&'a str, WebhookError> {
        self.value
            .as_str()
            .ok_or_else(|| bad(format!("`{}` must be a string", self.path())))
    }

    pub fn req_str(&self, key: &str) -> Result<&'a str, WebhookError> {
        self.req(key)?.str()
    }

    pub fn opt_str(&self, key: &str) -> Result<Option<&'a str>, WebhookError> {
        self.get(key).map(|j| j.str()).transpose()
    }

    /// An id that platforms send as a string or as a JSON integer.
    pub fn id(&self) -> Result<String, WebhookError> {
        match self.value {
            Value::String(s) => Ok(s.clone()),
            Value::Number(n) if n.is_i64() || n.is_u64() => Ok(n.to_string()),
            _ => Err(bad(format!(
                "`{}` must be a string or an integer id",
                self.path()
            ))),
        }
    }

    pub fn req_id(&self, key: &str) -> Result<String, WebhookError> {
        self.req(key)?.id()
    }

    pub fn opt_id(&self, key: &str) -> Result<Option<String>, WebhookError> {
        self.get(key).map(|j| j.id()).transpose()
    }

    pub fn i64(&self) -> Result<i64, WebhookError> {
        self.value
            .as_i64()
            .ok_or_else(|| bad(format!("`{}` must be an integer", self.path())))
    }

    /// Unix seconds sent as a JSON integer or as a string of digits
    /// (WhatsApp), in ms.
    pub fn unix_secs_ms(&self) -> Result<Millis, WebhookError> {
        let secs = match self.value {
            Value::String(s) => s
                .trim()
                .parse::<i64>()
                .map_err(|_| bad(format!("`{}` must be unix seconds, got {s:?}", self.path())))?,
            _ => self
                .i64()
                .map_err(|_| bad(format!("`{}` must be unix seconds", self.path())))?,
        };
        secs_to_ms(secs, self.path())
    }

    pub fn bool_or_false(&self, key: &str) -> bool {
        self.value
            .get(key)
            .and_then(Value::as_bool)
            .unwrap_or(false)
    }

    /// The elements of this array.
    pub fn items(&self) -> Result<Vec<Json<'a>>, WebhookError> {
        let arr = self
            .value
            .as_array()
            .ok_or_else(|| bad(format!("`{}` must be an array", self.path())))?;
        Ok(arr
            .iter()
            .enumerate()
            .map(|(i, v)| Json {
                value: v,
                path: format!("{}[{i}]", self.path),
            })
            .collect())
    }

    /// The elements of an optional array member (absent → none).
    pub fn opt_items(&self, key: &str) -> Result<Vec<Json<'a>>, WebhookError> {
        match self.get(key) {
            None => Ok(Vec::new()),
            Some(j) => j.items(),
        }
    }
}

/// The real payloads from CHANNELS.md, shared with the integration tests.
#[cfg(test)]
#[path = "../../tests/support/webhooks.rs"]
pub(crate) mod fixtures;

/// What every platform's unit tests need: channel configs and requests.
#[cfg(test)]
pub(crate) mod testing {
    use super::*;
    use crate::model::Platform;
    use axum::http::{HeaderMap, HeaderName, HeaderValue};

    /// Now in the tests: 2025-06-08T21:00:00Z, matching the WhatsApp fixtures.
    pub const NOW: Millis = 1_749_416_400_000;

    pub fn config(kind: Platform) -> ChannelConfig {
        let toml = format!("kind = \"{}\"\ninsecure_webhooks = true\n", kind.as_str());
        toml::from_str(&toml).expect("minimal channel config")
    }

    /// A channel whose webhooks are signed with every secret kind set to `secret`.
    pub fn config_with(kind: Platform, secret: &str) -> ChannelConfig {
        let mut cfg = config(kind);
        cfg.insecure_webhooks = false;
        let s = Some(Secret::new(secret));
        cfg.secrets.app_secret = s.clone();
        cfg.secrets.verify_token = s.clone();
        cfg.secrets.signing_secret = s.clone();
        cfg.secrets.secret_token = s.clone();
        cfg.secrets.webhook_secret = s;
        cfg
    }

    /// An owned request, borrowed as a [`WebhookRequest`] by [`Req::as_req`].
    pub struct Req {
        pub method: Method,
        pub headers: HeaderMap,
        pub query: String,
        pub body: Vec<u8>,
        pub now: Millis,
    }

    impl Req {
        pub fn post(body: impl Into<Vec<u8>>) -> Req {
            Req {
                method: Method::POST,
                headers: HeaderMap::new(),
                query: String::new(),
                body: body.into(),
                now: NOW,
            }
        }

        pub fn get(query: impl Into<String>) -> Req {
            Req {
                method: Method::GET,
                headers: HeaderMap::new(),
                query: query.into(),
                body: Vec::new(),
                now: NOW,
            }
        }

        pub fn header(mut self, name: &str, value: &str) -> Req {
            self.headers.insert(
                HeaderName::from_bytes(name.as_bytes()).expect("header name"),
                HeaderValue::from_str(value).expect("header value"),
            );
            self
        }

        pub fn headers<K: AsRef<str>>(mut self, pairs: &[(K, String)]) -> Req {
            for (k, v) in pairs {
                self = self.header(k.as_ref(), v);
            }
            self
        }

        pub fn query(mut self, q: impl Into<String>) -> Req {
            self.query = q.into();
            self
        }

        pub fn method(mut self, m: Method) -> Req {
            self.method = m;
            self
        }

        pub fn now(mut self, now: Millis) -> Req {
            self.now = now;
            self
        }

        pub fn as_req(&self) -> WebhookRequest<'_> {
            WebhookRequest {
                method: &self.method,
                headers: &self.headers,
                query: &self.query,
                body: &self.body,
                now: self.now,
            }
        }
    }

    pub fn run(
        kind: Platform,
        cfg: &ChannelConfig,
        req: &Req,
    ) -> Result<WebhookOutcome, WebhookError> {
        crate::receipts::parse_webhook(kind, cfg, &req.as_req())
    }

    /// The events of an `Ok(Events)` outcome; panics (a test failure) otherwise.
    pub fn events_of(out: Result<WebhookOutcome, WebhookError>) -> Vec<InboundEvent> {
        match out {
            Ok(WebhookOutcome::Events { events, .. }) => events,
            other => panic!("expected events, got {other:?}"),
        }
    }

    pub fn is_bad_request(out: &Result<WebhookOutcome, WebhookError>) -> bool {
        matches!(out, Err(WebhookError::BadRequest(_)))
    }

    /// Ok, or a clean refusal: what every malformed input must produce.
    pub fn is_clean(out: &Result<WebhookOutcome, WebhookError>) -> bool {
        match out {
            Ok(_) => true,
            Err(WebhookError::BadRequest(m)) | Err(WebhookError::Unauthorized(m)) => !m.is_empty(),
            Err(_) => true,
        }
    }

    /// Property tests run a fixed, seeded sequence of cases so a run is
    /// repeatable, and record no regression files (a failure prints its input).
    pub fn proptest_config() -> proptest::test_runner::Config {
        proptest::test_runner::Config {
            cases: 512,
            rng_seed: proptest::test_runner::RngSeed::Fixed(0x70_7573_6864),
            failure_persistence: None,
            ..proptest::test_runner::Config::default()
        }
    }

    /// Structural mutations of a JSON document, each aimed at a node picked
    /// uniformly from the whole tree (so deep fields get hit as often as the
    /// envelope): drop it, or swap it for null, another type, a truncated
    /// string or an extreme number. Two choices drive one mutation.
    /// Used by the property tests.
    pub fn mutate_json(v: &mut Value, choice: &mut impl Iterator<Item = u32>) {
        while let (Some(which), Some(how)) = (choice.next(), choice.next()) {
            let mut pointers = Vec::new();
            collect_pointers(v, String::new(), &mut pointers);
            let ptr = pointers[which as usize % pointers.len()].clone();
            if how % 7 == 0 && !ptr.is_empty() {
                remove_at(v, &ptr);
            } else if let Some(node) = v.pointer_mut(&ptr) {
                *node = replacement(node, how);
            }
        }
    }

    fn collect_pointers(v: &Value, at: String, out: &mut Vec<String>) {
        match v {
            Value::Object(map) => {
                for (k, child) in map {
                    let key = k.replace('~', "~0").replace('/', "~1");
                    collect_pointers(child, format!("{at}/{key}"), out);
                }
            }
            Value::Array(items) => {
                for (i, child) in items.iter().enumerate() {
                    collect_pointers(child, format!("{at}/{i}"), out);
                }
            }
            _ => {}
        }
        out.push(at);
    }

    fn remove_at(v: &mut Value, ptr: &str) {
        let Some((parent, last)) = ptr.rsplit_once('/') else {
            return;
        };
        let key = last.replace("~1", "/").replace("~0", "~");
        match v.pointer_mut(parent) {
            Some(Value::Object(map)) => {
                map.remove(&key);
            }
            Some(Value::Array(items)) => {
                if let Ok(i) = key.parse::<usize>()
                    && i < items.len()
                {
                    items.remove(i);
                }
            }
            _ => {}
        }
    }

    fn replacement(node: &Value, how: u32) -> Value {
        match how % 9 {
            0 | 1 => Value::Null,
            2 => Value::from("x"),
            3 => match node.as_str() {
                Some(s) => {
                    let mut n = s.len() / 2;
                    while !s.is_char_boundary(n) {
                        n -= 1;
                    }
                    Value::from(&s[..n])
                }
                None => Value::from(""),
            },
            4 => Value::from(i64::MIN),
            5 => Value::from(u64::MAX),
            6 => serde_json::json!(1e300),
            7 => serde_json::json!([1, 2]),
            _ => serde_json::json!({}),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::testing::*;
    use super::*;
    use crate::model::Platform;

    #[test]
    fn simulator_takes_no_webhooks() {
        let cfg = config(Platform::Simulator);
        let out = run(Platform::Simulator, &cfg, &Req::post("{}"));
        assert_eq!(
            out,
            Err(WebhookError::BadRequest(
                "simulator channels take no webhooks".into()
            ))
        );
    }

    #[test]
    fn bad_requests_name_the_platform_and_the_field() {
        let cfg = config(Platform::Whatsapp);
        let out = run(
            Platform::Whatsapp,
            &cfg,
            &Req::post(r#"{"object":"whatsapp_business_account"}"#),
        );
        match out {
            Err(WebhookError::BadRequest(m)) => {
                assert!(m.starts_with("whatsapp webhook: "), "{m}");
                assert!(m.contains("`entry`"), "{m}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn missing_secret_without_insecure_is_401() {
        for kind in [
            Platform::Whatsapp,
            Platform::Messenger,
            Platform::Instagram,
            Platform::Telegram,
            Platform::Slack,
            Platform::Wechat,
            Platform::Custom,
            Platform::Webchat,
        ] {
            let mut cfg = config(kind);
            cfg.insecure_webhooks = false;
            let out = run(kind, &cfg, &Req::post("{}"));
            match out {
                Err(WebhookError::Unauthorized(m)) => {
                    assert!(m.contains("insecure_webhooks"), "{kind}: {m}")
                }
                other => panic!("{kind}: {other:?}"),
            }
        }
    }

    #[test]
    fn json_paths_in_errors() {
        let v: Value = serde_json::from_str(r#"{"a":[{"b":1},{"c":"x"}]}"#).unwrap();
        let root = Json::root(&v);
        let items = root.req("a").unwrap().items().unwrap();
        assert_eq!(
            items[1].req_str("b").unwrap_err(),
            bad("required field `a[1].b` is missing")
        );
        assert_eq!(
            items[0].req_str("b").unwrap_err(),
            bad("`a[0].b` must be a string")
        );
        assert_eq!(items[0].req_id("b").unwrap(), "1");
        assert_eq!(items[1].opt_str("c").unwrap(), Some("x"));
        assert!(root.req("a").unwrap().req("x").is_err());
    }
}
