//! Who is looking: the signed session cookie, the CSRF token derived from
//! it, and the brake on guessed login links.
//!
//! The cookie is `<session id>.<HMAC(key, session id)>`: the id alone (it
//! is named in the audit trail) opens nothing. The CSRF token is another
//! HMAC of the id, so it needs no storage and dies with the session.

use super::backend::{Role, Session};
use super::{Panel, page};
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use hmac::{KeyInit, Mac};
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};
use subtle::ConstantTimeEq;

pub const COOKIE: &str = "pushd_session";

type HmacSha256 = hmac::Hmac<sha2::Sha256>;

fn mac(key: &[u8], purpose: &str, id: &str) -> String {
    // HMAC accepts keys of any length; the key is 32 random bytes.
    let mut m = <HmacSha256 as KeyInit>::new_from_slice(key).expect("HMAC takes any key length");
    m.update(purpose.as_bytes());
    m.update(b"\0");
    m.update(id.as_bytes());
    hex::encode(m.finalize().into_bytes())
}

pub fn cookie_value(key: &[u8], session_id: &str) -> String {
    format!("{session_id}.{}", mac(key, "session", session_id))
}

/// The session id a cookie value carries, if its signature holds.
pub fn verify_cookie(key: &[u8], value: &str) -> Option<String> {
    let (id, sig) = value.split_once('.')?;
    let want = mac(key, "session", id);
    bool::from(want.as_bytes().ct_eq(sig.as_bytes())).then(|| id.to_string())
}

pub fn csrf_token(key: &[u8], session_id: &str) -> String {
    mac(key, "csrf", session_id)[..32].to_string()
}

pub fn csrf_ok(key: &[u8], session_id: &str, given: &str) -> bool {
    bool::from(
        csrf_token(key, session_id)
            .as_bytes()
            .ct_eq(given.as_bytes()),
    )
}

/// `Set-Cookie` for a new session: script cannot read it, other sites
/// cannot send it.
pub fn set_cookie(key: &[u8], session: &Session, ttl: Duration) -> String {
    format!(
        "{COOKIE}={}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}",
        cookie_value(key, &session.id),
        ttl.as_secs()
    )
}

pub fn clear_cookie() -> String {
    format!("{COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0")
}

fn cookie_from(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == COOKIE)
        .map(|(_, v)| v.to_string())
}

/// A signed-in request: the session and its CSRF token.
pub struct SignedIn {
    pub session: Session,
    pub csrf: String,
}

impl SignedIn {
    pub fn is_admin(&self) -> bool {
        self.session.role == Role::Admin
    }
}

impl FromRequestParts<Arc<Panel>> for SignedIn {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut Parts,
        panel: &Arc<Panel>,
    ) -> Result<SignedIn, Response> {
        let key = panel.key().await.map_err(|e| page::failure(&e))?;
        let Some(id) = cookie_from(&parts.headers).and_then(|v| verify_cookie(&key, &v)) else {
            return Err(page::signed_out().into_response());
        };
        match panel.backend.session(&id).await {
            Ok(Some(session)) => Ok(SignedIn {
                csrf: csrf_token(&key, &session.id),
                session,
            }),
            Ok(None) => Err(page::signed_out().into_response()),
            Err(e) => Err(page::failure(&e)),
        }
    }
}

/// Bad login links slow every later attempt down: after `FREE` failures
/// within a minute, each attempt waits its turn (one at a time) for a delay
/// that doubles per further failure, up to `MAX_DELAY`. A guesser gets a few
/// tries a second at most; the links themselves are 256 random bits.
pub struct Throttle {
    recent: tokio::sync::Mutex<VecDeque<Instant>>,
}

const FREE: usize = 5;
const WINDOW: Duration = Duration::from_secs(60);
const FIRST_DELAY: Duration = Duration::from_millis(250);
const MAX_DELAY: Duration = Duration::from_secs(5);

impl Throttle {
    pub fn new() -> Throttle {
        Throttle {
            recent: tokio::sync::Mutex::new(VecDeque::new()),
        }
    }

    /// Waits as long as recent failures demand; call before checking a link.
    pub async fn before_attempt(&self) {
        let mut recent = self.recent.lock().await;
        let now = Instant::now();
        while recent
            .front()
            .is_some_and(|t| now.duration_since(*t) > WINDOW)
        {
            recent.pop_front();
        }
        if recent.len() >= FREE {
            let doublings = (recent.len() - FREE).min(16) as u32;
            let delay = FIRST_DELAY.saturating_mul(1 << doublings).min(MAX_DELAY);
            // Held across the wait: attempts queue up instead of waiting side by side.
            tokio::time::sleep(delay).await;
        }
    }

    pub async fn failed(&self) {
        self.recent.lock().await.push_back(Instant::now());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_and_csrf_tokens_are_bound_to_the_key_and_session() {
        let key = [7u8; 32];
        let v = cookie_value(&key, "abc");
        assert_eq!(verify_cookie(&key, &v).as_deref(), Some("abc"));
        assert_eq!(verify_cookie(&[8u8; 32], &v), None, "another key");
        let forged = v.replacen("abc", "abd", 1);
        assert_eq!(verify_cookie(&key, &forged), None, "another id");
        assert_eq!(verify_cookie(&key, "abc"), None, "no signature");
        let t = csrf_token(&key, "abc");
        assert!(csrf_ok(&key, "abc", &t));
        assert!(!csrf_ok(&key, "abd", &t));
        assert!(!csrf_ok(&key, "abc", ""));
    }

    #[tokio::test(start_paused = true)]
    async fn repeated_failures_slow_attempts_down() {
        let t = Throttle::new();
        for _ in 0..FREE {
            t.failed().await;
        }
        let start = tokio::time::Instant::now();
        t.before_attempt().await;
        assert!(start.elapsed() >= FIRST_DELAY);
        for _ in 0..3 {
            t.failed().await;
        }
        let start = tokio::time::Instant::now();
        t.before_attempt().await;
        assert!(start.elapsed() >= FIRST_DELAY * 8);
    }
}
