//! Progress of a push as operators see it: sent / failed / remaining, the
//! current rate, and an ETA that accounts for rate limits, batches and the
//! time recipients are held (quiet hours, send windows).

use crate::model::{Millis, fmt_ms, now_ms};
use crate::protocol::{AbSummary, PushSummary};
use crate::store::pushes::{Counts, PushRow, PushStatus};
use crate::util::duration::human_secs;
use crate::variants::{self, WinnerMode};

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

/// Seconds to send `remaining` recipients of which some are held: `held`
/// is (seconds from now until released, recipients), and held recipients
/// go once released, after whatever is ahead of them. Without holds this is
/// [`eta_secs`].
pub fn eta_with_holds(
    remaining: u64,
    per_minute: Option<f64>,
    batch_size: Option<u32>,
    batch_every_ms: Option<i64>,
    held: &[(u64, u64)],
) -> Option<u64> {
    let held_total: u64 = held.iter().map(|(_, n)| n).sum();
    if per_minute.is_none() {
        // Unlimited rate: sending takes no time to speak of; the holds do.
        return held.iter().map(|(opens, _)| *opens).max().or(eta_secs(
            remaining,
            per_minute,
            batch_size,
            batch_every_ms,
        ));
    }
    let mut t = eta_secs(
        remaining.saturating_sub(held_total),
        per_minute,
        batch_size,
        batch_every_ms,
    )?;
    let mut held = held.to_vec();
    held.sort_unstable();
    for (opens, n) in held {
        t = t.max(opens) + eta_secs(n, per_minute, batch_size, batch_every_ms)?;
    }
    Some(t)
}

/// What the dispatcher knows of a push right now (see `Dispatcher::live`).
#[derive(Debug, Clone, PartialEq)]
pub struct Live {
    /// `dispatch.rate_per_minute` in force.
    pub global_per_minute: u32,
    /// Sends per minute over the last minute.
    pub current_rate: f64,
    /// The store refuses writes: running pushes are held.
    pub storage_fault: bool,
    /// Recipients held (quiet hours, send window): (until, how many),
    /// earliest first.
    pub held: Vec<(Millis, u64)>,
}

/// `held` (until, recipients) as seconds from `base`.
pub fn held_from(base: Millis, held: &[(Millis, u64)]) -> Vec<(u64, u64)> {
    held.iter()
        .map(|(t, n)| (((t - base).max(0) as u64).div_ceil(1000), *n))
        .collect()
}

pub fn summary(p: &PushRow, c: &Counts, live: &Live, retry_of: Option<String>) -> PushSummary {
    let rate = effective_rate(live.global_per_minute, p.rate_per_minute);
    let current = live.current_rate;
    let remaining = c.remaining();
    let storage_hold = live.storage_fault && p.status == PushStatus::Running;
    let now = now_ms();
    let held = held_from(now, &live.held);
    let eta_secs = match p.status {
        PushStatus::Completed | PushStatus::Cancelled => None,
        PushStatus::Scheduled if !p.resolved => None,
        _ => eta_with_holds(remaining, rate, p.batch_size, p.batch_every_ms, &held),
    };
    let held_count: u64 = live.held.iter().map(|(_, n)| n).sum();
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
        policy: p.policy.clone(),
        held: held_count,
        resumes_at: (held_count > 0 && held_count >= remaining)
            .then(|| live.held.first().map(|(t, _)| fmt_ms(*t)))
            .flatten(),
        held_until: live.held.last().map(|(t, _)| fmt_ms(*t)),
        ab: ab_summary(p),
    }
}

/// The push's A/B plan and phase, for status and `push show`.
pub fn ab_summary(p: &PushRow) -> Option<AbSummary> {
    let plan = p.ab.as_ref()?;
    Some(AbSummary {
        plan: plan.describe(),
        variants: plan.variants.clone(),
        phase: variants::phase(plan, p.ab_winner.as_deref(), p.ab_decide_at).to_string(),
        // (A manual test records when its share was sent; nothing is due.)
        decide_at: p
            .ab_decide_at
            .filter(|_| p.ab_winner.is_none())
            .filter(|_| plan.test.is_some_and(|t| t.winner == WinnerMode::Auto))
            .map(fmt_ms),
        winner_mode: plan.test.map(|t| t.winner.as_str().to_string()),
        winner: p.ab_winner.clone(),
        decided_by: p.ab_decided_by.clone(),
    })
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

    #[test]
    fn eta_counts_the_time_recipients_are_held() {
        // 100 at 100/min, none held: one minute.
        assert_eq!(eta_with_holds(100, Some(100.0), None, None, &[]), Some(60));
        // All 100 held for an hour: an hour, then a minute of sending.
        assert_eq!(
            eta_with_holds(100, Some(100.0), None, None, &[(3600, 100)]),
            Some(3660)
        );
        // 50 now (30 s), 50 held for 10 s: they queue behind the first 50.
        assert_eq!(
            eta_with_holds(100, Some(100.0), None, None, &[(10, 50)]),
            Some(60)
        );
        // Unlimited rate: the wait is the ETA.
        assert_eq!(eta_with_holds(100, None, None, None, &[(90, 40)]), Some(90));
        assert_eq!(eta_with_holds(100, None, None, None, &[]), None);
        // Two timezones opening at 1h and 2h.
        assert_eq!(
            eta_with_holds(200, Some(100.0), None, None, &[(7200, 100), (3600, 100)]),
            Some(7260)
        );
    }
}
