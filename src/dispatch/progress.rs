//! Progress of a push as operators see it: sent / failed / remaining, the
//! current rate, and an ETA that accounts for rate limits and batches.

use crate::model::{fmt_ms, now_ms};
use crate::protocol::PushSummary;
use crate::store::pushes::{Counts, PushRow, PushStatus};
use crate::util::duration::human_secs;

/// Messages per minute this push can go at: the tighter of its own and the
/// global limit (None = unlimited).
pub fn effective_rate(global_per_minute: u32, push_rate: Option<u32>) -> Option<f64> {
    let g = (global_per_minute > 0).then_some(global_per_minute as f64);
    match (g, push_rate.filter(|r| *r > 0).map(|r| r as f64)) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// Seconds to send `remaining` recipients at `per_minute`, with batching.
pub fn eta_secs(
    remaining: u64,
    per_minute: Option<f64>,
    batch_size: Option<u32>,
    batch_every_ms: Option<i64>,
) -> Option<u64> {
    let rate = per_minute?;
    if remaining == 0 {
        return Some(0);
    }
    let send_secs = |n: u64| n as f64 * 60.0 / rate;
    let secs = match (batch_size.filter(|s| *s > 0), batch_every_ms) {
        (Some(size), Some(every)) if every > 0 => {
            let size = size as u64;
            let full_batches = (remaining - 1) / size;
            let per_batch = (every as f64 / 1000.0).max(send_secs(size));
            full_batches as f64 * per_batch + send_secs(remaining - full_batches * size)
        }
        _ => send_secs(remaining),
    };
    Some(secs.ceil() as u64)
}

/// What the dispatcher knows of a push right now (see `Dispatcher::live`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Live {
    /// `dispatch.rate_per_minute` in force.
    pub global_per_minute: u32,
    /// Sends per minute over the last minute.
    pub current_rate: f64,
    /// The store refuses writes: running pushes are held.
    pub storage_fault: bool,
}

pub fn summary(p: &PushRow, c: &Counts, live: &Live, retry_of: Option<String>) -> PushSummary {
    let rate = effective_rate(live.global_per_minute, p.rate_per_minute);
    let current = live.current_rate;
    let remaining = c.remaining();
    let storage_hold = live.storage_fault && p.status == PushStatus::Running;
    let eta_secs = match p.status {
        PushStatus::Completed | PushStatus::Cancelled => None,
        PushStatus::Scheduled if !p.resolved => None,
        _ => eta_secs(remaining, rate, p.batch_size, p.batch_every_ms),
    };
    let (status, reason) = if storage_hold {
        (
            "paused".to_string(),
            Some("storage fault (see alerts)".to_string()),
        )
    } else {
        (p.status.to_string(), p.status_reason.clone())
    };
    PushSummary {
        id: p.id,
        name: p.name.clone(),
        status,
        status_reason: reason,
        audience: p.audience.clone(),
        template: p.template.clone(),
        start_at: fmt_ms(p.start_at),
        started_at: p.started_at.map(fmt_ms),
        finished_at: p.finished_at.map(fmt_ms),
        recipients: c.sent + c.failed + c.pending + c.sending,
        sent: c.sent,
        failed: c.failed,
        skipped: c.skipped,
        cancelled: c.cancelled,
        remaining,
        current_rate: current,
        rate_limit: p.rate_per_minute,
        eta: eta_secs.map(|s| {
            let base = if p.status == PushStatus::Scheduled {
                p.start_at.max(now_ms())
            } else {
                now_ms()
            };
            format!("{} (at {})", human_secs(s), fmt_ms(base + s as i64 * 1000))
        }),
        eta_secs,
        generation: p.generation,
        retry_of,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eta_with_rate_and_batches() {
        assert_eq!(effective_rate(100, None), Some(100.0));
        assert_eq!(effective_rate(100, Some(30)), Some(30.0));
        assert_eq!(effective_rate(0, None), None);
        // 6000 at 100/min = 60 minutes.
        assert_eq!(eta_secs(6000, Some(100.0), None, None), Some(3600));
        // 250 in batches of 100 every hour at 100/min: 2 waits of 1h + 50 sends (30s).
        assert_eq!(
            eta_secs(250, Some(100.0), Some(100), Some(3_600_000)),
            Some(7230)
        );
        assert_eq!(eta_secs(0, Some(100.0), None, None), Some(0));
        assert_eq!(eta_secs(10, None, None, None), None);
    }
}
