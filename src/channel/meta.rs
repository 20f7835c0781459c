//! What WhatsApp, Messenger and Instagram share: the Graph API host and
//! version, and its error envelope
//! `{"error":{"message","type","code","error_subcode","error_data","fbtrace_id"}}`
//! (https://developers.facebook.com/docs/graph-api/guides/error-handling).
//!
//! Each platform classifies codes itself (code 10 means "outside the window"
//! on Messenger but "permission denied" on WhatsApp); the codes that mean the
//! same everywhere live in [`common_class`].

use crate::channel::http::Reply;
use crate::model::{ErrorClass, SendError};
use serde::Deserialize;
use serde_json::Value;

pub(crate) const DEFAULT_BASE_URL: &str = "https://graph.facebook.com";
pub(crate) const DEFAULT_API_VERSION: &str = "v21.0";

/// The `error` object of a Graph API reply.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct GraphError {
    #[serde(default)]
    pub message: String,
    #[serde(default)]
    pub code: i64,
    #[serde(default)]
    pub error_subcode: Option<i64>,
    /// WhatsApp: `{"messaging_product":"whatsapp","details":"..."}`;
    /// older Messenger replies: a plain string.
    #[serde(default)]
    pub error_data: Option<Value>,
    #[serde(default)]
    pub error_user_msg: Option<String>,
    #[serde(default)]
    pub is_transient: Option<bool>,
    #[serde(default)]
    pub fbtrace_id: Option<String>,
}

impl GraphError {
    /// `"131047"`, or `"100/2018001"` with a subcode: what operators look up.
    pub fn code_string(&self) -> String {
        match self.error_subcode {
            Some(sub) => format!("{}/{}", self.code, sub),
            None => self.code.to_string(),
        }
    }

    pub fn details(&self) -> Option<String> {
        match &self.error_data {
            Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
            Some(Value::Object(o)) => o
                .get("details")
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
                .map(str::to_string),
            _ => None,
        }
    }

    /// Message, details and trace id: everything Meta support asks for.
    pub fn describe(&self) -> String {
        let mut out = if self.message.is_empty() {
            "Graph API error".to_string()
        } else {
            self.message.clone()
        };
        for extra in [self.details(), self.error_user_msg.clone()]
            .into_iter()
            .flatten()
        {
            if !out.contains(&extra) {
                out.push_str(" — ");
                out.push_str(&extra);
            }
        }
        if let Some(trace) = &self.fbtrace_id {
            out.push_str(&format!(" (fbtrace_id {trace})"));
        }
        out
    }

    /// The message mentions `needle` (case-insensitive); Meta's messages are
    /// the only signal for a few subcode-less errors.
    pub fn says(&self, needle: &str) -> bool {
        self.message
            .to_ascii_lowercase()
            .contains(&needle.to_ascii_lowercase())
            || self.details().is_some_and(|d| {
                d.to_ascii_lowercase()
                    .contains(&needle.to_ascii_lowercase())
            })
    }
}

/// Codes that mean the same on every Graph API product.
pub(crate) fn common_class(e: &GraphError) -> Option<ErrorClass> {
    Some(match e.code {
        // 0 AuthException, 102 session, 190 invalid/expired token,
        // 200-299 missing permission, 368 account restricted for a policy
        // violation: nothing will get through until an operator acts.
        0 | 102 | 190 | 200..=299 | 368 => ErrorClass::Auth,
        // 4 app-level, 17 user-level, 32 page-level, 613 "calls to this api
        // have exceeded the rate limit", 80006/80007 Messenger/WABA limits.
        4 | 17 | 32 | 613 | 80006 | 80007 => ErrorClass::RateLimited,
        // 1 "unknown error", 2 "unexpected error, retry later".
        1 | 2 => ErrorClass::Transient,
        _ => return None,
    })
}

/// Reads a Graph API reply: the JSON body of a success, or a classified
/// error carrying Meta's code, message and trace id.
pub(crate) fn read_reply(
    reply: &Reply,
    classify: impl Fn(&GraphError) -> ErrorClass,
) -> Result<Value, SendError> {
    let Some(json) = reply.json() else {
        return Err(reply.not_json());
    };
    if let Some(err) = json
        .get("error")
        .and_then(|e| GraphError::deserialize(e).ok())
    {
        let mut class = classify(&err);
        if (reply.status.is_server_error() || err.is_transient == Some(true))
            && class == ErrorClass::Rejected
        {
            class = ErrorClass::Transient;
        }
        return Err(SendError::new(class, err.code_string(), err.describe())
            .with_retry_after(reply.retry_after()));
    }
    if !reply.status.is_success() {
        return Err(reply.status_error());
    }
    Ok(json)
}

/// `"190/463"` → `(190, Some(463))`: a Graph error's code back from
/// [`GraphError::code_string`], for advice about a `SendError`.
pub(crate) fn parse_code(code: &str) -> Option<(i64, Option<i64>)> {
    match code.split_once('/') {
        Some((c, sub)) => Some((c.parse().ok()?, Some(sub.parse().ok()?))),
        None => Some((code.parse().ok()?, None)),
    }
}

/// What an OAuthException 190 means, by subcode
/// (developers.facebook.com/docs/graph-api/guides/error-handling,
/// "Authentication error subcodes"), then how to get a new token on this
/// platform (`how`).
pub(crate) fn token_advice(subcode: Option<i64>, how: &str) -> String {
    let what = match subcode {
        Some(463) => "The access token has expired.",
        Some(460) => {
            "The access token was invalidated: the person who created it changed their password, or Meta reset the session for security."
        }
        Some(458) => {
            "The access token was revoked: the app was removed from the account that created it."
        }
        Some(492) => {
            "The access token's session is invalid: the person who created it is no longer an admin of the Page or the business."
        }
        Some(459) | Some(464) => {
            "The account that created the token must log in to Facebook and clear a security checkpoint."
        }
        _ => "The access token is not valid: mistyped, cut short, from another app, or revoked.",
    };
    format!("{what} {how} Put the new token in `token` (or `token_env`) and run `pushd reload`.")
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::StatusCode;
    use reqwest::header::HeaderMap;

    fn reply(status: u16, body: &str) -> Reply {
        Reply {
            status: StatusCode::from_u16(status).unwrap(),
            headers: HeaderMap::new(),
            body: bytes::Bytes::from(body.to_string()),
        }
    }

    #[test]
    fn keeps_code_subcode_details_and_trace() {
        let r = reply(
            400,
            r#"{"error":{"message":"(#131056) pair rate limit hit","type":"OAuthException","code":131056,"error_data":{"messaging_product":"whatsapp","details":"too many messages"},"fbtrace_id":"A4O5"}}"#,
        );
        let e = read_reply(&r, |_| ErrorClass::RateLimited).unwrap_err();
        assert_eq!(e.code, "131056");
        assert_eq!(
            e.message,
            "(#131056) pair rate limit hit — too many messages (fbtrace_id A4O5)"
        );
        let r = reply(
            400,
            r#"{"error":{"message":"No matching user found","code":100,"error_subcode":2018001}}"#,
        );
        assert_eq!(
            read_reply(&r, |_| ErrorClass::Rejected).unwrap_err().code,
            "100/2018001"
        );
    }

    #[test]
    fn codes_parse_back() {
        assert_eq!(parse_code("190/463"), Some((190, Some(463))));
        assert_eq!(parse_code("131047"), Some((131047, None)));
        assert_eq!(parse_code("http_502"), None);
        assert!(
            token_advice(Some(463), "Get one.")
                .starts_with("The access token has expired. Get one.")
        );
    }

    #[test]
    fn unknown_error_on_5xx_is_transient() {
        let r = reply(503, r#"{"error":{"message":"busy","code":99999}}"#);
        let e = read_reply(&r, |_| ErrorClass::Rejected).unwrap_err();
        assert_eq!(e.class, ErrorClass::Transient);
    }
}
