//! Replay protection for webhooks whose signature does not cover the body.
//!
//! WeChat signs a plaintext callback with `sha1(token, timestamp, nonce)`
//! only: anyone who saw one signed URL (a proxy log, a referer) could post
//! any body with it. The signature check refuses a timestamp more than
//! [`MAX_SKEW_SECS`] away; this module refuses a (timestamp, nonce) pair it
//! has already admitted, so a signed URL works once.
//!
//! Memory is bounded: a pair is kept only while its timestamp could still
//! pass the window (after that the window refuses it anyway), and at most
//! [`CAPACITY`] pairs are held. When that many callbacks arrive within one
//! window the next ones are answered 503 (WeChat retries) rather than
//! forgetting a pair that could then be replayed.
//!
//! A pair is reserved when its request is admitted and released again if the
//! request's events could not be recorded, so the platform's own retry of a
//! failed request is not mistaken for a replay: see [`Ticket`].

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

use sha2::{Digest, Sha256};

use super::signature::MAX_SKEW_SECS;
use super::webhook::{query_get, query_pairs};
use super::{WebhookError, WebhookOutcome, WebhookRequest};
use crate::model::{Millis, Platform};

/// Pairs held at most. 100,000 in a 10-minute span (a timestamp may be up to
/// 5 minutes ahead and is kept until 5 minutes after it) is ~170 callbacks a
/// second sustained, far above an Official Account's traffic; at ~80 bytes
/// an entry it is under 10 MB.
pub const CAPACITY: usize = 100_000;

/// Expired pairs are swept at most this often (seconds), besides when full.
const SWEEP_EVERY_SECS: i64 = 60;

/// Which requests have been admitted, per channel.
pub struct ReplayGuard {
    seen: Mutex<Seen>,
    capacity: usize,
}

struct Seen {
    /// Hash of (channel, timestamp, nonce) → the unix second after which
    /// that timestamp is outside the window.
    expires: HashMap<[u8; 16], i64>,
    next_sweep: i64,
}

/// An admitted request's reservation. Dropped without [`Ticket::keep`] (the
/// events were not recorded, or the handler was cancelled), it releases the
/// pair so the platform's retry is accepted.
#[must_use = "a ticket dropped at once releases its nonce; call keep() once the events are recorded"]
pub struct Ticket<'a> {
    guard: &'a ReplayGuard,
    key: Option<[u8; 16]>,
}

impl Ticket<'_> {
    /// The request's events are recorded: its nonce stays used.
    pub fn keep(mut self) {
        self.key = None;
    }
}

impl Drop for Ticket<'_> {
    fn drop(&mut self) {
        if let Some(key) = self.key.take() {
            self.guard.lock().expires.remove(&key);
        }
    }
}

impl Default for ReplayGuard {
    fn default() -> Self {
        ReplayGuard::with_capacity(CAPACITY)
    }
}

impl ReplayGuard {
    pub fn with_capacity(capacity: usize) -> ReplayGuard {
        ReplayGuard {
            seen: Mutex::new(Seen {
                expires: HashMap::new(),
                next_sweep: 0,
            }),
            capacity,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Seen> {
        // The map stays consistent whatever panicked while holding it.
        self.seen.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Passes `outcome` (of a verified request) through, unless it carries
    /// events and the request's (timestamp, nonce) was already admitted on
    /// this channel: then it becomes a 401. The ticket must be kept once the
    /// events are recorded.
    pub fn screen<'a>(
        &'a self,
        channel: &str,
        platform: Platform,
        req: &WebhookRequest<'_>,
        outcome: Result<WebhookOutcome, WebhookError>,
    ) -> (Result<WebhookOutcome, WebhookError>, Ticket<'a>) {
        let mut ticket = Ticket {
            guard: self,
            key: None,
        };
        if !matches!(outcome, Ok(WebhookOutcome::Events { .. })) {
            return (outcome, ticket);
        }
        let Some((timestamp, nonce)) = request_id(platform, req) else {
            return (outcome, ticket);
        };
        match self.admit(channel, timestamp, &nonce, req.now) {
            Ok(key) => {
                ticket.key = Some(key);
                (outcome, ticket)
            }
            Err(e) => (Err(e), ticket),
        }
    }

    /// Reserves (channel, timestamp, nonce), or says why not.
    fn admit(
        &self,
        channel: &str,
        timestamp: i64,
        nonce: &str,
        now: Millis,
    ) -> Result<[u8; 16], WebhookError> {
        let key = pair_key(channel, timestamp, nonce);
        let now_secs = now.div_euclid(1000);
        let mut seen = self.lock();
        if seen.expires.len() >= self.capacity || now_secs >= seen.next_sweep {
            seen.expires.retain(|_, expires| *expires >= now_secs);
            seen.next_sweep = now_secs + SWEEP_EVERY_SECS;
        }
        if seen.expires.contains_key(&key) {
            return Err(WebhookError::Unauthorized(format!(
                "this callback (timestamp {timestamp}, nonce {nonce:?}) was already received: a replayed request is refused"
            )));
        }
        if seen.expires.len() >= self.capacity {
            tracing::warn!(
                channel,
                capacity = self.capacity,
                "webhook replay memory is full; refusing callbacks until older ones leave the time window"
            );
            return Err(WebhookError::Unavailable(format!(
                "{} callbacks arrived within the {MAX_SKEW_SECS} s replay window; try again shortly",
                self.capacity
            )));
        }
        let expires = timestamp.saturating_add(MAX_SKEW_SECS as i64);
        seen.expires.insert(key, expires);
        Ok(key)
    }

    /// Pairs held now (for tests and metrics).
    pub fn len(&self) -> usize {
        self.lock().expires.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// What makes one request of `platform` unique, for the platforms whose
/// signature leaves the body out. `None`: not tracked (other platforms sign
/// the body; an unsigned insecure channel may send no nonce at all).
fn request_id(platform: Platform, req: &WebhookRequest<'_>) -> Option<(i64, String)> {
    if platform != Platform::Wechat {
        return None;
    }
    let q = query_pairs(req).ok()?;
    let timestamp = query_get(&q, "timestamp")?.trim().parse::<i64>().ok()?;
    let nonce = query_get(&q, "nonce")?.to_string();
    Some((timestamp, nonce))
}

/// A fixed-size key, so a long nonce costs no more memory than a short one.
fn pair_key(channel: &str, timestamp: i64, nonce: &str) -> [u8; 16] {
    let mut h = Sha256::new();
    for part in [
        channel.as_bytes(),
        &timestamp.to_be_bytes(),
        nonce.as_bytes(),
    ] {
        h.update((part.len() as u64).to_be_bytes());
        h.update(part);
    }
    let digest = h.finalize();
    let mut key = [0u8; 16];
    key.copy_from_slice(&digest[..16]);
    key
}

#[cfg(test)]
mod tests {
    use super::super::webhook::fixtures::*;
    use super::super::webhook::testing::*;
    use super::*;
    use crate::model::InboundEvent;

    const TOKEN: &str = "wx-server-token";

    fn events() -> Result<WebhookOutcome, WebhookError> {
        Ok(WebhookOutcome::Events {
            events: Vec::<InboundEvent>::new(),
            reply: "success".into(),
            reply_type: "text/plain",
        })
    }

    fn wechat(ts: i64, nonce: &str) -> Req {
        Req::post("<xml/>").query(wechat_query(TOKEN, ts, nonce))
    }

    #[test]
    fn a_nonce_is_admitted_once_per_channel() {
        let guard = ReplayGuard::default();
        let ts = NOW / 1000;
        let req = wechat(ts, "n1");
        let (out, ticket) = guard.screen("wx", Platform::Wechat, &req.as_req(), events());
        assert!(out.is_ok());
        ticket.keep();
        let (out, _) = guard.screen("wx", Platform::Wechat, &req.as_req(), events());
        assert!(
            matches!(&out, Err(WebhookError::Unauthorized(m)) if m.contains("already received")),
            "{out:?}"
        );
        // Another nonce, or the same one on another channel, is a new request.
        let (out, t) = guard.screen("wx", Platform::Wechat, &wechat(ts, "n2").as_req(), events());
        assert!(out.is_ok());
        t.keep();
        let (out, t) = guard.screen("wx2", Platform::Wechat, &req.as_req(), events());
        assert!(out.is_ok());
        t.keep();
        assert_eq!(guard.len(), 3);
    }

    #[test]
    fn a_ticket_not_kept_releases_the_nonce() {
        let guard = ReplayGuard::default();
        let req = wechat(NOW / 1000, "n1");
        let (out, ticket) = guard.screen("wx", Platform::Wechat, &req.as_req(), events());
        assert!(out.is_ok());
        drop(ticket);
        assert!(guard.is_empty());
        let (out, _) = guard.screen("wx", Platform::Wechat, &req.as_req(), events());
        assert!(out.is_ok(), "the platform's retry is accepted: {out:?}");
    }

    #[test]
    fn refusals_handshakes_and_other_platforms_are_not_remembered() {
        let guard = ReplayGuard::default();
        let req = wechat(NOW / 1000, "n1");
        let refused = Err(WebhookError::BadRequest("x".into()));
        let (out, t) = guard.screen("wx", Platform::Wechat, &req.as_req(), refused.clone());
        assert_eq!(out, refused);
        t.keep();
        let (_, t) = guard.screen(
            "wx",
            Platform::Wechat,
            &req.as_req(),
            Ok(WebhookOutcome::Challenge("e".into())),
        );
        t.keep();
        let (_, t) = guard.screen("sl", Platform::Slack, &req.as_req(), events());
        t.keep();
        assert!(guard.is_empty());
    }

    #[test]
    fn memory_is_bounded_and_expired_pairs_are_swept() {
        let guard = ReplayGuard::with_capacity(3);
        let ts = NOW / 1000;
        for n in ["a", "b", "c"] {
            let (out, t) = guard.screen("wx", Platform::Wechat, &wechat(ts, n).as_req(), events());
            assert!(out.is_ok());
            t.keep();
        }
        // Full of pairs still inside the window: refused, nothing forgotten.
        let (out, _) = guard.screen("wx", Platform::Wechat, &wechat(ts, "d").as_req(), events());
        assert!(matches!(out, Err(WebhookError::Unavailable(_))), "{out:?}");
        assert_eq!(guard.len(), 3);
        // Once their timestamps leave the window they make room.
        let later = (ts + MAX_SKEW_SECS as i64 + 1) * 1000;
        let fresh = wechat(later / 1000, "e").now(later);
        let (out, t) = guard.screen("wx", Platform::Wechat, &fresh.as_req(), events());
        assert!(out.is_ok(), "{out:?}");
        t.keep();
        assert_eq!(guard.len(), 1);
    }
}
