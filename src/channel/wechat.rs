//! WeChat Official Account customer-service messages (客服消息):
//! `POST {base}/cgi-bin/message/custom/send?access_token=…`, JSON body, every
//! reply HTTP 200 with `{"errcode":0,"errmsg":"ok"}` or an error code.
//!
//! | pushd message | customer-service message |
//! |---|---|
//! | text (URL buttons become `<a href>` links) | `msgtype: text` (≤ 2048 bytes) |
//! | buttons / quick replies with payloads | `msgtype: msgmenu`: `head_content` = text, `list` = `{id: payload, content: title}` (≤ 10 items) |
//! | image | `msgtype: news`, one article: title = text, `picurl` = image, `url` = the URL button or the image |
//!
//! Plain `image` messages need a `media_id` uploaded beforehand, so an image
//! URL goes out as a news (link) article instead. msgmenu only works on
//! certified accounts (test accounts get 40200). Sources: CHANNELS.md §6;
//! developers.weixin.qq.com/doc/service/api/customer/message/api_sendcustommessage;
//! limits for msgmenu and text from the WeCom customer-service API docs
//! (the Official Account page does not state them).
//!
//! The access token comes from `GET /cgi-bin/token?grant_type=client_credential&appid=…&secret=…`,
//! is cached and refreshed before `expires_in` runs out, fetched by one task
//! at a time, and refreshed once (with one resend) when a send answers
//! 40001/42001/40014. No message id is returned for customer-service
//! messages: the provider id is `msgid` if present, else `wx-<delivery_id>`.
//!
//! 45009 means the account's *daily* quota for the API is used up (500,000
//! customer-service sends, 2,000 token fetches): nothing on this channel can
//! succeed before the quota resets at midnight China Standard Time, so the
//! error carries [`SendError::channel_quota_reset_at`] (and a retry-after to
//! then) for the dispatcher to hold the channel, not a short retry. 45011,
//! the per-minute quota, stays an ordinary rate limit.

use crate::channel::http::{self, HttpSettings, Scrubber};
use crate::channel::{Channel, ChannelContext, ChannelError, Recipient, Rule, RuleError};
use crate::config::{ChannelConfig, Secret};
use crate::model::{Button, ErrorClass, Message, Outbound, Platform, SendError, SendOk};
use async_trait::async_trait;
use chrono::{DateTime, TimeZone, Utc};
use serde_json::{Value, json};
use std::time::{Duration, Instant};
use tokio::sync::Mutex;

pub(crate) mod probe;

const DEFAULT_BASE_URL: &str = "https://api.weixin.qq.com";

/// WeChat publishes no per-second limit for customer-service sends, only a
/// daily call quota per account (500,000 for message/custom/send) and
/// 45009/45011 when it is exceeded; 5/s stays under that quota even for a
/// push that runs all day.
const DEFAULT_RATE: f64 = 5.0;

const TEXT_MAX_BYTES: usize = 2048;
const MENU_HEAD_MAX_BYTES: usize = 1024;
const MENU_ITEMS_MAX: usize = 10;
const MENU_ID_MAX_BYTES: usize = 64;
const MENU_CONTENT_MAX_BYTES: usize = 128;

/// Refresh this long before the token expires (at most half its lifetime).
const REFRESH_MARGIN: Duration = Duration::from_secs(300);

/// errcodes that mean "this access token is not (or no longer) valid".
const TOKEN_ERRORS: &[&str] = &["40001", "42001", "40014"];

/// "reach max api daily quota limit": the account's daily quota for this API.
const DAILY_QUOTA_USED_UP: i64 = 45009;

/// WeChat counts daily quotas in China Standard Time (no DST).
const QUOTA_DAY_ZONE: chrono_tz::Tz = chrono_tz::Asia::Shanghai;

struct CachedToken {
    value: Secret,
    refresh_at: Instant,
}

pub struct WeChat {
    name: String,
    http: HttpSettings,
    app_id: String,
    app_secret: Secret,
    scrubber: Scrubber,
    /// Held across a fetch, so only one fetch runs at a time and the others
    /// wait for its result.
    token: Mutex<Option<CachedToken>>,
}

impl WeChat {
    pub fn new(
        name: &str,
        cfg: &ChannelConfig,
        ctx: &ChannelContext,
    ) -> Result<Self, ChannelError> {
        let app_id = cfg
            .app_id
            .clone()
            .filter(|s| !s.is_empty())
            .ok_or_else(|| http::missing_setting(name, "app_id"))?;
        let app_secret = cfg
            .secrets
            .app_secret
            .clone()
            .ok_or_else(|| http::missing_setting(name, "app_secret"))?;
        Ok(WeChat {
            name: name.to_string(),
            http: HttpSettings::new(cfg, ctx, DEFAULT_BASE_URL),
            scrubber: Scrubber::new(cfg.secrets.all().cloned()),
            app_id,
            app_secret,
            token: Mutex::new(None),
        })
    }

    /// A valid access token: the cached one unless it is due for refresh or
    /// is `rejected` (the one a send just had refused).
    async fn access_token(&self, rejected: Option<&Secret>) -> Result<Secret, SendError> {
        let mut cached = self.token.lock().await;
        if let Some(t) = cached.as_ref() {
            let refused = rejected.is_some_and(|r| r == &t.value);
            if !refused && Instant::now() < t.refresh_at {
                return Ok(t.value.clone());
            }
        }
        *cached = None;
        let fresh = self.fetch_token().await?;
        let value = fresh.value.clone();
        *cached = Some(fresh);
        Ok(value)
    }

    async fn fetch_token(&self) -> Result<CachedToken, SendError> {
        tracing::debug!(channel = %self.name, "fetching a WeChat access token");
        let request = self
            .http
            .client
            .get(self.http.url("/cgi-bin/token"))
            .query(&[
                ("grant_type", "client_credential"),
                ("appid", self.app_id.as_str()),
                ("secret", self.app_secret.expose()),
            ]);
        let reply = http::execute(request, self.http.timeout).await?;
        let Some(json) = reply.json() else {
            return Err(reply.not_json());
        };
        if let Some(token) = json.get("access_token").and_then(Value::as_str) {
            let lifetime = Duration::from_secs(
                json.get("expires_in")
                    .and_then(Value::as_u64)
                    .unwrap_or(7200),
            );
            let margin = REFRESH_MARGIN.min(lifetime / 2);
            return Ok(CachedToken {
                value: Secret::new(token),
                refresh_at: Instant::now() + lifetime - margin,
            });
        }
        let (code, errmsg) = wechat_error(&json);
        let errmsg = format!("cannot get an access token: {errmsg}");
        if code == DAILY_QUOTA_USED_UP.to_string() {
            return Err(daily_quota_used_up(&errmsg, quota_clock()));
        }
        let class = match code.as_str() {
            "-1" => ErrorClass::Transient,
            "45011" => ErrorClass::RateLimited,
            // 40013 invalid appid, 40125 invalid appsecret, 40164 caller IP
            // not in the account's whitelist, ...: an operator has to act.
            _ => ErrorClass::Auth,
        };
        Err(SendError::new(class, code, errmsg))
    }

    async fn post(&self, token: &Secret, body: &Value) -> Result<Value, SendError> {
        let request = self
            .http
            .client
            .post(self.http.url("/cgi-bin/message/custom/send"))
            .query(&[("access_token", token.expose())])
            .header(
                reqwest::header::CONTENT_TYPE,
                "application/json; charset=utf-8",
            )
            // WeChat wants UTF-8 as is, not \u escapes (serde_json never escapes them).
            .body(body.to_string());
        let reply = http::execute(request, self.http.timeout).await?;
        let Some(json) = reply.json() else {
            return Err(reply.not_json());
        };
        let Some(errcode) = json.get("errcode").and_then(Value::as_i64) else {
            if reply.status.is_success() {
                return Err(reply.missing("errcode"));
            }
            return Err(reply.status_error());
        };
        if errcode == 0 {
            return Ok(json);
        }
        let (code, errmsg) = wechat_error(&json);
        if errcode == DAILY_QUOTA_USED_UP {
            return Err(daily_quota_used_up(&errmsg, quota_clock()));
        }
        Err(SendError::new(classify(errcode), code, errmsg))
    }

    async fn send_body(&self, body: &Value) -> Result<Value, SendError> {
        let token = self.access_token(None).await?;
        match self.post(&token, body).await {
            Err(e) if TOKEN_ERRORS.contains(&e.code.as_str()) => {
                tracing::debug!(channel = %self.name, code = %e.code, "WeChat refused the access token; refreshing it once");
                let token = self.access_token(Some(&token)).await?;
                self.post(&token, body).await
            }
            other => other,
        }
    }
}

#[async_trait]
impl Channel for WeChat {
    fn name(&self) -> &str {
        &self.name
    }

    fn platform(&self) -> Platform {
        Platform::Wechat
    }

    fn validate(&self, outbound: &Outbound) -> Result<(), RuleError> {
        rules(outbound)
    }

    async fn send(&self, to: &Recipient, outbound: &Outbound) -> Result<SendOk, SendError> {
        let result = match (self.validate(outbound), outbound) {
            (Err(e), _) => Err(http::invalid_message(e)),
            (Ok(()), Outbound::Message { message, .. }) => self
                .send_body(&request_body(&to.channel_user_id, message))
                .await
                .map(|json| SendOk {
                    provider_message_id: json
                        .get("msgid")
                        .and_then(|v| {
                            v.as_i64()
                                .map(|n| n.to_string())
                                .or_else(|| v.as_str().map(str::to_string))
                        })
                        .unwrap_or_else(|| format!("wx-{}", to.delivery_id)),
                }),
            (Ok(()), Outbound::Template { .. }) => Err(http::invalid_message(template_error())),
        };
        result.map_err(|e| http::failed(&self.name, &self.scrubber, e))
    }

    fn default_rate_per_second(&self) -> Option<f64> {
        Some(DEFAULT_RATE)
    }

    async fn probe(&self) -> crate::channel::Probe {
        self.fetch_token_now().await
    }
}

fn wechat_error(json: &Value) -> (String, String) {
    let code = json
        .get("errcode")
        .and_then(Value::as_i64)
        .map(|c| c.to_string())
        .unwrap_or_else(|| "unknown".into());
    let errmsg = json
        .get("errmsg")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    (code, errmsg)
}

/// 45009 at `now`: rate-limited until the quota day ends, flagged as the
/// whole channel's quota.
fn daily_quota_used_up(errmsg: &str, now: DateTime<Utc>) -> SendError {
    let reset = next_quota_day(now);
    let wait = (reset - now).to_std().unwrap_or_default();
    let local = reset.with_timezone(&QUOTA_DAY_ZONE);
    SendError::new(
        ErrorClass::RateLimited,
        DAILY_QUOTA_USED_UP.to_string(),
        format!(
            "{errmsg} (the account's daily API quota is used up: sends on this channel can resume at {} China time, {} UTC, or once the quota is cleared in the WeChat console)",
            local.format("%Y-%m-%d %H:%M"),
            reset.format("%Y-%m-%d %H:%M"),
        ),
    )
    .with_retry_after(Some(wait))
    .with_channel_quota_reset_at(reset.timestamp_millis())
}

/// Now, on the daemon's clock (`model::now_ms`, which tests can move to
/// just before midnight in China).
fn quota_clock() -> DateTime<Utc> {
    DateTime::from_timestamp_millis(crate::model::now_ms()).unwrap_or_else(Utc::now)
}

/// The next midnight in China Standard Time after `now`.
fn next_quota_day(now: DateTime<Utc>) -> DateTime<Utc> {
    let today = now.with_timezone(&QUOTA_DAY_ZONE).date_naive();
    let midnight = today
        .succ_opt()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .and_then(|t| QUOTA_DAY_ZONE.from_local_datetime(&t).single());
    // UTC+8 all year: both steps always succeed; a day later is the bound.
    midnight.map_or(now + chrono::Duration::days(1), |m| m.with_timezone(&Utc))
}

/// Global return codes (developers.weixin.qq.com … Global_Return_Code) as
/// they apply to customer-service sends.
fn classify(errcode: i64) -> ErrorClass {
    match errcode {
        // System busy.
        -1 => ErrorClass::Transient,
        // Invalid credential / token expired / invalid token (after the one
        // refresh), API unauthorized, IP not whitelisted.
        40001 | 42001 | 40014 | 48001 | 40164 => ErrorClass::Auth,
        // Outside the 48 h window or unsubscribed; per-interaction quota used up.
        45015 | 45047 => ErrorClass::OutsideWindow,
        // The user does not follow the account; the user is blacklisted.
        43004 | 43019 => ErrorClass::Blocked,
        40003 => ErrorClass::InvalidRecipient,
        // Per-minute API quota reached (45009, the daily one, is
        // [`daily_quota_used_up`]).
        45009 | 45011 => ErrorClass::RateLimited,
        _ => ErrorClass::Rejected,
    }
}

fn template_error() -> Rule {
    Rule::Other("this channel sends customer-service messages only and has no template messages; send a free-form message within 48 h of the user's last interaction".into())
}

/// WeChat's message rules (what [`Channel::validate`] checks); the error
/// names the rule broken.
pub(crate) fn rules(outbound: &Outbound) -> Result<(), RuleError> {
    validate(outbound).map_err(|rule| rule.on("WeChat"))
}

fn validate(outbound: &Outbound) -> Result<(), Rule> {
    let m = match outbound {
        Outbound::Template { .. } => return Err(template_error()),
        Outbound::Message { message, .. } => message,
    };
    let links: Vec<&Button> = m.buttons.iter().filter(|b| b.url.is_some()).collect();
    let menu: Vec<&Button> = m
        .buttons
        .iter()
        .filter(|b| b.url.is_none())
        .chain(&m.quick_replies)
        .collect();
    for b in m.buttons.iter().chain(&m.quick_replies) {
        if b.title.trim().is_empty() {
            return Err(Rule::Empty("button title"));
        }
        if let Some(url) = &b.url {
            http::check_http_url("button url", url)?;
        }
    }
    if m.quick_replies.iter().any(|q| q.url.is_some()) {
        return Err(Rule::Other(
            "quick replies post back; use a button for links".into(),
        ));
    }
    if let Some(image) = &m.image_url {
        http::check_http_url("image_url", image)?;
        if !menu.is_empty() {
            return Err(Rule::Other(
                "an image goes out as a news article (title, picture, one link), which carries no menu buttons or quick replies; send the image without them, or the buttons without the image"
                    .into(),
            ));
        }
        http::check_count(
            "URL buttons on an image (news article link)",
            links.len(),
            1,
        )?;
        if m.text.trim().is_empty() {
            return Err(Rule::Other(
                "a message with an image needs text (the article title)".into(),
            ));
        }
        return Ok(());
    }
    if m.text.trim().is_empty() {
        return Err(Rule::Empty("text"));
    }
    if menu.is_empty() {
        return http::check_bytes("text (with its links)", &text_with_links(m), TEXT_MAX_BYTES);
    }
    http::check_bytes(
        "text of a menu message (with its links)",
        &text_with_links(m),
        MENU_HEAD_MAX_BYTES,
    )?;
    http::check_count(
        "menu items (buttons and quick replies)",
        menu.len(),
        MENU_ITEMS_MAX,
    )?;
    for b in menu {
        http::check_bytes(
            "menu item text (button title)",
            &b.title,
            MENU_CONTENT_MAX_BYTES,
        )?;
        http::check_bytes(
            "menu item id (payload)",
            http::payload(b),
            MENU_ID_MAX_BYTES,
        )?;
    }
    Ok(())
}

/// The text with URL buttons appended as links, which WeChat renders in
/// customer-service text.
fn text_with_links(m: &Message) -> String {
    let mut text = m.text.clone();
    for b in m.buttons.iter() {
        if let Some(url) = &b.url {
            text.push_str(&format!("\n<a href=\"{}\">{}</a>", url, b.title));
        }
    }
    text
}

/// The customer-service message body (assumes validation passed).
fn request_body(to: &str, m: &Message) -> Value {
    if let Some(image) = &m.image_url {
        let link = m
            .buttons
            .iter()
            .find_map(|b| b.url.clone())
            .unwrap_or_else(|| image.clone());
        return json!({
            "touser": to,
            "msgtype": "news",
            "news": { "articles": [{ "title": m.text, "url": link, "picurl": image }] },
        });
    }
    let menu: Vec<Value> = m
        .buttons
        .iter()
        .filter(|b| b.url.is_none())
        .chain(&m.quick_replies)
        .map(|b| json!({ "id": http::payload(b), "content": b.title }))
        .collect();
    if menu.is_empty() {
        return json!({ "touser": to, "msgtype": "text", "text": { "content": text_with_links(m) } });
    }
    json!({
        "touser": to,
        "msgtype": "msgmenu",
        "msgmenu": { "head_content": text_with_links(m), "list": menu, "tail_content": "" },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classification() {
        assert_eq!(classify(45015), ErrorClass::OutsideWindow);
        assert_eq!(classify(45047), ErrorClass::OutsideWindow);
        assert_eq!(classify(43004), ErrorClass::Blocked);
        assert_eq!(classify(40003), ErrorClass::InvalidRecipient);
        assert_eq!(classify(45009), ErrorClass::RateLimited);
        assert_eq!(classify(-1), ErrorClass::Transient);
        assert_eq!(classify(42001), ErrorClass::Auth);
    }

    #[test]
    fn daily_quota_waits_for_midnight_china_time() {
        // 2026-03-01 15:59:59 UTC is 23:59:59 in Beijing: one second left.
        let now = Utc.with_ymd_and_hms(2026, 3, 1, 15, 59, 59).unwrap();
        let e = daily_quota_used_up("reach max api daily quota limit", now);
        let reset = Utc.with_ymd_and_hms(2026, 3, 1, 16, 0, 0).unwrap();
        assert_eq!(e.channel_quota_reset_at, Some(reset.timestamp_millis()));
        assert_eq!(e.retry_after, Some(Duration::from_secs(1)));
        assert_eq!(
            (e.class, e.code.as_str()),
            (ErrorClass::RateLimited, "45009")
        );
        assert!(
            e.message.contains("2026-03-02 00:00 China time"),
            "{}",
            e.message
        );
        // Just past midnight there: almost a whole day.
        let now = Utc.with_ymd_and_hms(2026, 3, 1, 16, 0, 1).unwrap();
        let e = daily_quota_used_up("x", now);
        assert_eq!(e.retry_after, Some(Duration::from_secs(86_399)));
    }

    #[test]
    fn text_limit_in_bytes() {
        let m = Message {
            text: "你".repeat(683),
            ..Message::default()
        };
        let e = validate(&Outbound::Message {
            message: m,
            tag: None,
        })
        .unwrap_err()
        .to_string();
        assert!(e.contains("2049 bytes") && e.contains("2048"), "{e}");
    }
}
