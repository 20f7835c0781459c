//! The push's clocks: its send window (hours of the day, in each member's
//! timezone) and its batch pacing (at most `size` sends per `every`).

use super::Control;
use super::slots::wait_stop;
use crate::config::{ConfigValueError, DailyHours};
use crate::store::pushes::PushRow;
use std::time::Duration;
use tokio::sync::watch;

/// `send_window = { from, to }` in each member's timezone.
pub(super) type Window = DailyHours;

/// The push's send window, if it has one.
pub(super) fn send_window(push: &PushRow) -> Result<Option<Window>, ConfigValueError> {
    match (&push.window_from, &push.window_to) {
        (Some(f), Some(t)) => DailyHours::parse(&format!("{f}-{t}")).map(Some),
        _ => Ok(None),
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
    use super::super::policy::window_opens;
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn send_window_defers_to_the_members_morning() {
        let w = DailyHours::parse("09:00-21:00").unwrap();
        let tz = |name: &str| name.parse::<chrono_tz::Tz>().unwrap();
        // 2026-11-25 23:30 UTC = 07:30 next day in Hong Kong (UTC+8): deferred to 09:00 HKT.
        let now = chrono::Utc
            .with_ymd_and_hms(2026, 11, 25, 23, 30, 0)
            .unwrap()
            .timestamp_millis();
        let until = window_opens(&w, tz("Asia/Hong_Kong"), now).unwrap();
        let expect = chrono::Utc
            .with_ymd_and_hms(2026, 11, 26, 1, 0, 0)
            .unwrap()
            .timestamp_millis();
        assert_eq!(until, expect);
        // 23:30 in London is outside too: next 09:00 London = 09:00 UTC the next day.
        let until = window_opens(&w, tz("Europe/London"), now).unwrap();
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
        assert_eq!(window_opens(&w, tz("Europe/London"), noon), None);
    }
}
