//! The push's clocks: its send window (hours of the day, in each member's
//! timezone) and its batch pacing (at most `size` sends per `every`).

use super::Control;
use super::slots::wait_stop;
use crate::model::Millis;
use crate::store::pushes::PushRow;
use chrono::{NaiveTime, TimeZone};
use std::time::Duration;
use tokio::sync::watch;

/// `send_window = { from, to }` in each member's timezone.
pub(super) struct Window {
    from: NaiveTime,
    to: NaiveTime,
}

/// The push's send window, if it has one.
pub(super) fn send_window(push: &PushRow) -> Result<Option<Window>, String> {
    match (&push.window_from, &push.window_to) {
        (Some(f), Some(t)) => {
            let parse = |s: &str| {
                NaiveTime::parse_from_str(s, "%H:%M")
                    .map_err(|_| format!("send window time {s:?} is not HH:MM"))
            };
            Ok(Some(Window {
                from: parse(f)?,
                to: parse(t)?,
            }))
        }
        _ => Ok(None),
    }
}

impl Window {
    fn contains(&self, t: NaiveTime) -> bool {
        if self.from <= self.to {
            t >= self.from && t < self.to
        } else {
            t >= self.from || t < self.to // wraps past midnight
        }
    }

    /// None when the member may be messaged now; else when their window opens.
    pub(super) fn defer_until(&self, timezone: &str, now: Millis) -> Option<Millis> {
        let tz: chrono_tz::Tz = timezone.parse().unwrap_or(chrono_tz::UTC);
        let utc = chrono::DateTime::from_timestamp_millis(now)?;
        let local = utc.with_timezone(&tz);
        if self.contains(local.time()) {
            return None;
        }
        let mut day = local.date_naive();
        if local.time() >= self.from {
            day = day.succ_opt()?;
        }
        let start = tz
            .from_local_datetime(&day.and_time(self.from))
            .earliest()?;
        Some(start.timestamp_millis())
    }
}

/// `batch = { size, every }`: at most `size` sends per `every`.
pub(super) struct BatchClock {
    size: Option<u32>,
    every: Duration,
    sent: u32,
    started: tokio::time::Instant,
}

impl BatchClock {
    pub(super) fn new(push: &PushRow) -> BatchClock {
        BatchClock {
            size: push.batch_size.filter(|s| *s > 0),
            every: Duration::from_millis(push.batch_every_ms.unwrap_or(0).max(0) as u64),
            sent: 0,
            started: tokio::time::Instant::now(),
        }
    }

    /// True when the next send has to wait for the next batch.
    pub(super) fn full(&self) -> bool {
        self.size.is_some_and(|size| self.sent >= size)
    }

    pub(super) async fn wait_turn(&mut self, ctl: &mut watch::Receiver<Control>) -> bool {
        let Some(size) = self.size else { return true };
        if self.sent < size {
            return true;
        }
        let next = self.started + self.every;
        tokio::select! {
            _ = tokio::time::sleep_until(next) => {}
            _ = wait_stop(ctl) => return false,
        }
        self.started = tokio::time::Instant::now();
        self.sent = 0;
        true
    }

    pub(super) fn count(&mut self) {
        if self.sent == 0 {
            self.started = tokio::time::Instant::now();
        }
        self.sent += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn send_window_defers_to_the_members_morning() {
        let w = Window {
            from: NaiveTime::from_hms_opt(9, 0, 0).unwrap(),
            to: NaiveTime::from_hms_opt(21, 0, 0).unwrap(),
        };
        // 2026-11-25 23:30 UTC = 07:30 next day in Hong Kong (UTC+8): deferred to 09:00 HKT.
        let now = chrono::Utc
            .with_ymd_and_hms(2026, 11, 25, 23, 30, 0)
            .unwrap()
            .timestamp_millis();
        let until = w.defer_until("Asia/Hong_Kong", now).unwrap();
        let expect = chrono::Utc
            .with_ymd_and_hms(2026, 11, 26, 1, 0, 0)
            .unwrap()
            .timestamp_millis();
        assert_eq!(until, expect);
        // 23:30 in London is outside too: next 09:00 London = 09:00 UTC the next day.
        let until = w.defer_until("Europe/London", now).unwrap();
        let expect = chrono::Utc
            .with_ymd_and_hms(2026, 11, 26, 9, 0, 0)
            .unwrap()
            .timestamp_millis();
        assert_eq!(until, expect);
        // 12:00 UTC is inside for London.
        let noon = chrono::Utc
            .with_ymd_and_hms(2026, 11, 25, 12, 0, 0)
            .unwrap()
            .timestamp_millis();
        assert_eq!(w.defer_until("Europe/London", noon), None);
    }
}
