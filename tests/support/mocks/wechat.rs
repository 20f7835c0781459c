//! WeChat Official Account mock: `GET /cgi-bin/token` and
//! `POST /cgi-bin/message/custom/send?access_token=…`. Every answer is HTTP
//! 200 with `errcode`/`errmsg`, as WeChat does.
//!
//! The token endpoint checks `grant_type=client_credential`, `appid`
//! (40013) and `secret` (40125), and issues `wxtok-mock-<n>` with
//! [`MockOptions::token_expires_in`](super::MockOptions) after
//! [`MockOptions::token_latency`](super::MockOptions). Sends with an unknown
//! token get 40001, with an expired one ([`MockPlatform::expire_access_tokens`](super::MockPlatform::expire_access_tokens)) 42001.
//!
//! | behaviour | answer |
//! |---|---|
//! | Succeed | `{"errcode":0,"errmsg":"ok"}` (no message id, like the real API) |
//! | Block | 43004 "require subscribe" |
//! | InvalidRecipient | 40003 "invalid openid" |
//! | OutsideWindow | 45015 "response out of time limit or subscription is canceled" |
//! | RateLimit | 45011 "api minute-quota reach limit mustslower retry next minute" |
//! | (after [`MockPlatform::use_up_daily_quota`](super::MockPlatform::use_up_daily_quota)) | 45009 "reach max api daily quota limit" for every send |
//! | ServerError | -1 "system error" |
//! | BadToken | 40001 "invalid credential, access_token is invalid or not latest" |

use super::{Api, Failure, Incoming, Reply, Shared, creds};
use serde_json::{Value, json};

pub struct WeChatApi;

fn error(code: i64, msg: &str) -> Reply {
    Reply::json(
        200,
        json!({ "errcode": code, "errmsg": format!("{msg} rid: 6650c1d2-mock") }),
    )
}

const SEND_PATH: &str = "/cgi-bin/message/custom/send";

impl Api for WeChatApi {
    fn recipient(&self, req: &Incoming) -> Option<String> {
        if req.path != SEND_PATH {
            return None;
        }
        req.body()
            .get("touser")
            .and_then(Value::as_str)
            .map(str::to_string)
    }

    fn check(&self, mock: &Shared, req: &Incoming) -> Result<(), Reply> {
        if req.path == "/cgi-bin/token" {
            return Err(token(mock, req));
        }
        if req.path != SEND_PATH || req.method != "POST" {
            return Err(error(48001, "api unauthorized"));
        }
        let Some(token) = req.query.get("access_token") else {
            return Err(error(41001, "access_token missing"));
        };
        {
            let st = mock.state();
            if st.expired_tokens.contains(token) {
                return Err(error(42001, "access_token expired"));
            }
            if !st.valid_tokens.contains(token) {
                return Err(error(
                    40001,
                    "invalid credential, access_token is invalid or not latest",
                ));
            }
            if st.daily_quota_used_up {
                return Err(error(45009, "reach max api daily quota limit"));
            }
        }
        check_body(req.body())
    }

    fn success(&self, _req: &Incoming, _recipient: &str) -> Value {
        json!({ "errcode": 0, "errmsg": "ok" })
    }

    fn failure(&self, failure: Failure, _req: &Incoming, _recipient: &str) -> Reply {
        match failure {
            Failure::Block => error(43004, "require subscribe"),
            Failure::InvalidRecipient => error(40003, "invalid openid"),
            Failure::OutsideWindow => error(
                45015,
                "response out of time limit or subscription is canceled",
            ),
            Failure::RateLimit(_) => error(
                45011,
                "api minute-quota reach limit mustslower retry next minute",
            ),
            Failure::ServerError => error(-1, "system error"),
            Failure::BadToken => error(
                40001,
                "invalid credential, access_token is invalid or not latest",
            ),
        }
    }
}

fn token(mock: &Shared, req: &Incoming) -> Reply {
    let q = |k: &str| req.query.get(k).map(String::as_str);
    if req.method != "GET" || q("grant_type") != Some("client_credential") {
        return error(40002, "invalid grant_type");
    }
    if q("appid") != Some(creds::WX_APP_ID) {
        return error(40013, "invalid appid");
    }
    if q("secret") != Some(creds::WX_APP_SECRET) {
        return error(40125, "invalid appsecret");
    }
    let value = {
        let mut st = mock.state();
        st.tokens_issued += 1;
        let value = format!("wxtok-mock-{}", st.tokens_issued);
        st.valid_tokens.insert(value.clone());
        value
    };
    let reply = Reply::json(
        200,
        json!({ "access_token": value, "expires_in": mock.options.token_expires_in }),
    );
    if mock.options.token_latency.is_zero() {
        reply
    } else {
        Reply::Delayed(mock.options.token_latency, Box::new(reply))
    }
}

fn check_body(b: &Value) -> Result<(), Reply> {
    if b.get("touser")
        .and_then(Value::as_str)
        .is_none_or(str::is_empty)
    {
        return Err(error(40003, "invalid openid"));
    }
    let s = |p: &str| b.pointer(p).and_then(Value::as_str).unwrap_or("");
    match b.get("msgtype").and_then(Value::as_str) {
        Some("text") => {
            if s("/text/content").is_empty() {
                return Err(error(44004, "empty content"));
            }
            if s("/text/content").len() > 2048 {
                return Err(error(45002, "content size out of limit"));
            }
        }
        Some("news") => {
            let articles = b
                .pointer("/news/articles")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            if articles.len() != 1
                || articles[0].get("title").and_then(Value::as_str).is_none()
                || articles[0].get("url").and_then(Value::as_str).is_none()
            {
                return Err(error(44003, "empty news data"));
            }
        }
        Some("msgmenu") => {
            let list = b
                .pointer("/msgmenu/list")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            let items_ok = list.iter().all(|i| {
                i.get("id")
                    .and_then(Value::as_str)
                    .is_some_and(|id| !id.is_empty())
                    && i.get("content")
                        .and_then(Value::as_str)
                        .is_some_and(|c| !c.is_empty())
            });
            if list.is_empty()
                || list.len() > 10
                || !items_ok
                || s("/msgmenu/head_content").is_empty()
            {
                return Err(error(40008, "invalid message type"));
            }
        }
        _ => return Err(error(40008, "invalid message type")),
    }
    Ok(())
}
