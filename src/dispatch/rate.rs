//! Rate limits: GCRA (governor) over tokio's clock, so waiting uses tokio
//! timers and tests run on the paused clock deterministically.

use governor::clock::{Clock, Reference};
use governor::middleware::NoOpMiddleware;
use governor::state::{InMemoryState, NotKeyed};
use governor::{Quota, RateLimiter};
use rand::RngExt;
use std::num::NonZeroU32;
use std::time::{Duration, Instant};

/// governor's clock, read from tokio (virtual under `start_paused`).
#[derive(Clone, Copy, Debug, Default)]
pub struct TokioClock;

impl Clock for TokioClock {
    type Instant = Instant;
    fn now(&self) -> Instant {
        tokio::time::Instant::now().into_std()
    }
}

type Gcra = RateLimiter<NotKeyed, InMemoryState, TokioClock, NoOpMiddleware<Instant>>;

/// One rate limit. Unlimited when built from a zero rate.
pub struct Rate {
    limiter: Option<Gcra>,
    per_second: f64,
}

/// GCRA cells per send: the limiter counts in 1/16ths of a send, so it can
/// hold a tolerance of a fraction of one send (see [`Rate::per_second`]).
const CELLS: u32 = 16;

/// At most this much of a send's lateness is won back by the next one.
const CATCH_UP: Duration = Duration::from_millis(25);

fn cells(n: u32) -> NonZeroU32 {
    NonZeroU32::new(n).unwrap_or(NonZeroU32::MIN)
}

impl Rate {
    pub fn unlimited() -> Rate {
        Rate {
            limiter: None,
            per_second: 0.0,
        }
    }

    pub fn per_minute(n: u32) -> Rate {
        if n == 0 {
            return Rate::unlimited();
        }
        Rate::per_second(n as f64 / 60.0)
    }

    /// The bucket holds 50 ms worth of sends (at least one): enough to absorb
    /// timer overshoot at high rates so the long-run rate stays exact, never a
    /// visible burst (100/min → 1, 6000/min → 5). On top of it, a tolerance
    /// of up to a quarter of a send (at most [`CATCH_UP`]): a send that went
    /// out late is caught up by the next, which a bucket of one send alone
    /// never does (channels under 30/s held 0.983× of their limit). It
    /// starts spent, so sends on time are spaced exactly one period apart;
    /// it never lets two sends closer than three quarters of a period.
    pub fn per_second(rate: f64) -> Rate {
        if !(rate > 0.0 && rate.is_finite()) {
            return Rate::unlimited();
        }
        let period = Duration::from_secs_f64(1.0 / rate).max(Duration::from_nanos(1));
        let cell = (period / CELLS).max(Duration::from_nanos(1));
        let burst = ((rate * 0.05).round() as u32).max(1);
        let tolerance =
            (CATCH_UP.as_nanos() / cell.as_nanos().max(1)).clamp(1, (CELLS / 4) as u128) as u32;
        let quota = Quota::with_period(cell)
            .map(|q| q.allow_burst(cells(burst.saturating_mul(CELLS).saturating_add(tolerance))));
        let limiter = quota.map(|q| RateLimiter::direct_with_clock(q, TokioClock));
        if let Some(l) = &limiter {
            let _ = l.check_n(cells(tolerance));
        }
        Rate {
            limiter,
            per_second: rate,
        }
    }

    pub fn per_second_limit(&self) -> Option<f64> {
        self.limiter.as_ref().map(|_| self.per_second)
    }

    /// Takes one send if it conforms now; false = it would have to wait.
    pub fn try_acquire(&self) -> bool {
        self.limiter
            .as_ref()
            .is_none_or(|l| matches!(l.check_n(cells(CELLS)), Ok(Ok(()))))
    }

    /// Waits until one send conforms, then takes it.
    pub async fn acquire(&self) {
        let Some(limiter) = &self.limiter else {
            return;
        };
        loop {
            match limiter.check_n(cells(CELLS)) {
                Ok(Ok(())) => return,
                Ok(Err(not_until)) => {
                    let wait = not_until.wait_time_from(TokioClock.now());
                    tokio::time::sleep(wait.max(Duration::from_micros(50))).await;
                }
                // (The bucket always holds a whole send.)
                Err(_) => return,
            }
        }
    }
}

/// Exponential backoff with jitter for attempt `attempt` (1 = the first try
/// failed), never shorter than the platform's retry-after.
pub fn backoff(
    attempt: u32,
    base: Duration,
    max: Duration,
    retry_after: Option<Duration>,
    jitter: f64,
) -> Duration {
    let exp = base.saturating_mul(1u32 << attempt.saturating_sub(1).min(20));
    let capped = exp.min(max);
    // Full jitter in [50%, 100%]: spreads a crowd of retries, keeps a floor.
    let jittered = capped.mul_f64(0.5 + 0.5 * jitter.clamp(0.0, 1.0));
    match retry_after {
        Some(ra) => jittered.max(ra),
        None => jittered,
    }
}

/// A jitter draw for [`backoff`].
pub fn jitter() -> f64 {
    rand::rng().random::<f64>()
}

#[allow(dead_code)]
fn _assert_reference<T: Reference>() {}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn per_minute_spaces_sends_exactly() {
        let rate = Rate::per_minute(100);
        let start = tokio::time::Instant::now();
        for _ in 0..101 {
            rate.acquire().await;
        }
        // 101 sends at 100/min: the first at 0, then one every 600 ms.
        assert_eq!(start.elapsed(), Duration::from_millis(60_000));
    }

    /// A sender that can only look every 7 ms (a coarse timer, a busy
    /// worker) is late for most sends; the tolerance wins that back, so a
    /// 10/s limit still gives 10/s, and never two sends closer than 3/4 of
    /// a period.
    #[tokio::test(start_paused = true)]
    async fn late_sends_are_caught_up_at_low_rates() {
        let rate = Rate::per_second(10.0);
        let start = tokio::time::Instant::now();
        let mut sent = Vec::new();
        while start.elapsed() < Duration::from_secs(20) {
            if rate.try_acquire() {
                sent.push(start.elapsed());
            }
            tokio::time::sleep(Duration::from_millis(7)).await;
        }
        // 20 s at 10/s: 200 periods, the first send at 0.
        assert!((200..=201).contains(&sent.len()), "{} sends", sent.len());
        let min_gap = sent.windows(2).map(|w| w[1] - w[0]).min().unwrap();
        assert!(min_gap >= Duration::from_millis(75), "{min_gap:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn high_rate_keeps_its_long_run_average() {
        let rate = Rate::per_minute(6000);
        let start = tokio::time::Instant::now();
        for _ in 0..6000 {
            rate.acquire().await;
        }
        let secs = start.elapsed().as_secs_f64();
        // 6000 at 100/s: ~60 s minus the 5-send bucket, within 1 %.
        assert!((59.4..=60.6).contains(&secs), "{secs}");
    }

    #[tokio::test(start_paused = true)]
    async fn no_burst_over_the_bucket() {
        let rate = Rate::per_minute(6000); // bucket of 5
        let start = tokio::time::Instant::now();
        for _ in 0..5 {
            rate.acquire().await;
        }
        assert_eq!(start.elapsed(), Duration::ZERO);
        rate.acquire().await;
        assert_eq!(start.elapsed(), Duration::from_millis(10));
    }

    #[tokio::test(start_paused = true)]
    async fn unlimited_never_waits() {
        let rate = Rate::per_minute(0);
        let start = tokio::time::Instant::now();
        for _ in 0..10_000 {
            rate.acquire().await;
        }
        assert_eq!(start.elapsed(), Duration::ZERO);
        assert_eq!(rate.per_second_limit(), None);
    }

    #[test]
    fn backoff_grows_caps_and_honours_retry_after() {
        let (b, m) = (Duration::from_secs(2), Duration::from_secs(60));
        assert_eq!(backoff(1, b, m, None, 1.0), Duration::from_secs(2));
        assert_eq!(backoff(2, b, m, None, 1.0), Duration::from_secs(4));
        assert_eq!(backoff(3, b, m, None, 1.0), Duration::from_secs(8));
        assert_eq!(backoff(10, b, m, None, 1.0), Duration::from_secs(60));
        assert_eq!(backoff(3, b, m, None, 0.0), Duration::from_secs(4));
        assert_eq!(
            backoff(1, b, m, Some(Duration::from_secs(30)), 0.0),
            Duration::from_secs(30)
        );
        assert_eq!(backoff(40, b, m, None, 1.0), Duration::from_secs(60));
    }
}
