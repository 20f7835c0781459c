//! The delivery policy (`[policy]`) as the walk applies it to one recipient
//! at one moment: the member's calendar day and week (what a frequency cap
//! counts in), when quiet hours or a push's send window release a held
//! recipient, and which rules a push follows (`policy = "bypass"` skips the
//! checks). Pure functions of (timezone, instant), so the calendar is
//! tested with an injected clock; the counting itself is one write in the
//! store (`store::policy`), inside the transaction that claims the send.

use crate::config::{DailyHours, PolicyConfig};
use crate::model::{Millis, PushId, now_ms};
use crate::store::policy::{CapItem, CapLimits};
use chrono::{Datelike, LocalResult, NaiveDate, NaiveDateTime, NaiveTime, TimeZone};
use chrono_tz::Tz;
use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

/// A member's calendar day, and the Monday its week starts on, as days
/// since 1970-01-01 in the member's timezone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LocalDay {
    pub day: i64,
    pub week_start: i64,
}

/// The calendar day (and week) of instant `at` in `tz`: it turns at local
/// midnight, whatever the clocks did that day.
pub fn local_day(tz: Tz, at: Millis) -> LocalDay {
    let date = chrono::DateTime::from_timestamp_millis(at)
        .unwrap_or_default()
        .with_timezone(&tz)
        .date_naive();
    let day = date.signed_duration_since(NaiveDate::default()).num_days();
    LocalDay {
        day,
        week_start: day - date.weekday().num_days_from_monday() as i64,
    }
}

/// The instant local time `at` happens in `tz`, at or after `after`. A
/// time the clocks skip (spring forward) happens at the first minute after
/// the gap; a time that happens twice (fall back), at the first of the two
/// that is not in the past.
fn instant(tz: Tz, at: NaiveDateTime, after: Millis) -> Option<Millis> {
    for skipped in 0..=24 * 60 {
        let local = at + chrono::Duration::minutes(skipped);
        match tz.from_local_datetime(&local) {
            LocalResult::Single(t) => return Some(t.timestamp_millis().max(after)),
            LocalResult::Ambiguous(a, b) => {
                let (a, b) = (a.timestamp_millis(), b.timestamp_millis());
                return Some(if a >= after { a } else { b.max(after) });
            }
            LocalResult::None => {}
        }
    }
    None
}

/// The next instant after `now` at which the local clock in `tz` reads `t`
/// (today if it is still ahead, else tomorrow).
fn next_local(tz: Tz, now: Millis, t: NaiveTime) -> Option<Millis> {
    let local = chrono::DateTime::from_timestamp_millis(now)?
        .with_timezone(&tz)
        .naive_local();
    let mut date = local.date();
    if local.time() >= t {
        date = date.succ_opt()?;
    }
    instant(tz, date.and_time(t), now + 1)
}

fn local_time(tz: Tz, now: Millis) -> Option<NaiveTime> {
    Some(
        chrono::DateTime::from_timestamp_millis(now)?
            .with_timezone(&tz)
            .time(),
    )
}

/// None when `now` is outside quiet hours; else when they end for `tz`.
pub fn quiet_ends(quiet: &DailyHours, tz: Tz, now: Millis) -> Option<Millis> {
    quiet
        .contains(local_time(tz, now)?)
        .then(|| next_local(tz, now, quiet.to))
        .flatten()
}

/// None when `now` is inside the send window; else when it next opens.
pub fn window_opens(window: &DailyHours, tz: Tz, now: Millis) -> Option<Millis> {
    (!window.contains(local_time(tz, now)?))
        .then(|| next_local(tz, now, window.from))
        .flatten()
}

/// When a member in `tz` may be messaged, if not now: the first instant
/// at or after `now` outside quiet hours and inside the send window.
pub fn held_until(
    window: Option<&DailyHours>,
    quiet: Option<&DailyHours>,
    tz: Tz,
    now: Millis,
) -> Option<Millis> {
    let mut t = now;
    // Each step moves to an edge of one of the two; two days of edges are
    // enough unless the window lies wholly inside quiet hours, which
    // `never_open` refuses before the walk starts.
    for _ in 0..8 {
        let next = window
            .and_then(|w| window_opens(w, tz, t))
            .max(quiet.and_then(|q| quiet_ends(q, tz, t)));
        match next {
            Some(next) => t = next,
            None => return (t > now).then_some(t),
        }
    }
    Some(t)
}

/// True when no minute of the day is both inside the send window and
/// outside quiet hours (nothing could ever be sent).
pub fn never_open(window: &DailyHours, quiet: &DailyHours) -> bool {
    (0..24 * 60).all(|m| {
        let t = NaiveTime::from_num_seconds_from_midnight_opt(m * 60, 0).unwrap_or_default();
        !window.contains(t) || quiet.contains(t)
    })
}

/// What `[policy]` asks of one push's sends right now.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rules {
    /// Quiet hours the push keeps (None: none configured, or bypassed).
    pub quiet: Option<DailyHours>,
    /// Caps in force; sends are counted whenever there are any.
    pub caps: Option<CapLimits>,
    /// The push is held to the caps (not `policy = "bypass"`).
    pub check_caps: bool,
    /// For members without a (valid) timezone.
    pub default_tz: Tz,
}

impl Rules {
    /// The rules for a push under `policy`; `bypass` (transactional pushes)
    /// ignores quiet hours and caps, but its sends still count toward the
    /// caps of the pushes that keep them.
    pub fn for_push(policy: &PolicyConfig, bypass: bool) -> Rules {
        let caps = policy.max_per_member;
        Rules {
            quiet: policy.quiet_hours.filter(|_| !bypass),
            caps: caps.is_some().then_some(CapLimits {
                day: caps.day,
                week: caps.week,
            }),
            check_caps: !bypass,
            default_tz: policy.default_timezone,
        }
    }

    /// The walk needs each member's timezone (quiet hours, caps, a window).
    pub fn needs_timezone(&self, window: bool) -> bool {
        window || self.quiet.is_some() || self.caps.is_some()
    }

    /// The count (and check) of a first attempt to a member in `tz`,
    /// claimed at `at`.
    pub fn cap_item(&self, delivery: i64, member: i64, tz: Tz, at: Millis, fresh: bool) -> CapItem {
        let d = local_day(tz, at);
        CapItem {
            delivery,
            member,
            day: d.day,
            week_start: d.week_start,
            check: self.check_caps,
            fresh,
        }
    }
}

/// Held recipients by the time they are held until.
pub type Held = BTreeMap<Millis, u64>;

/// What each running push holds (quiet hours, send windows), as its walk
/// last saw it, for `status` and the ETA. A walk's pass sees every held
/// recipient, so its tally is exact once the pass ends; while a pass runs,
/// a smaller partial tally does not replace the last whole one.
#[derive(Default)]
pub struct HeldBoard(Mutex<HashMap<PushId, Held>>);

impl HeldBoard {
    /// Records a pass's tally (`whole`: the pass has ended).
    pub(super) fn publish(&self, push: PushId, tally: &Held, whole: bool) {
        let mut board = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let total = |h: &Held| h.values().sum::<u64>();
        let known = board.get(&push).map(total).unwrap_or(0);
        if whole || total(tally) >= known {
            if tally.is_empty() {
                board.remove(&push);
            } else {
                board.insert(push, tally.clone());
            }
        }
    }

    pub(super) fn clear(&self, push: PushId) {
        let mut board = self.0.lock().unwrap_or_else(|p| p.into_inner());
        board.remove(&push);
    }

    /// (held until, recipients) of `push` still ahead, earliest first.
    pub fn of(&self, push: PushId) -> Vec<(Millis, u64)> {
        let board = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let now = now_ms();
        board
            .get(&push)
            .map(|h| h.range(now + 1..).map(|(t, n)| (*t, *n)).collect())
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;

    fn utc(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> Millis {
        Utc.with_ymd_and_hms(y, mo, d, h, mi, 0)
            .unwrap()
            .timestamp_millis()
    }

    fn hours(s: &str) -> DailyHours {
        DailyHours::parse(s).unwrap()
    }

    #[test]
    fn the_day_turns_at_local_midnight() {
        let tokyo: Tz = "Asia/Tokyo".parse().unwrap();
        // 14:59 UTC is 23:59 in Tokyo; a minute later it is tomorrow there.
        let before = local_day(tokyo, utc(2026, 11, 25, 14, 59));
        let after = local_day(tokyo, utc(2026, 11, 25, 15, 0));
        assert_eq!(after.day, before.day + 1);
        // ... and still the same day in London.
        let london: Tz = "Europe/London".parse().unwrap();
        assert_eq!(
            local_day(london, utc(2026, 11, 25, 14, 59)).day,
            local_day(london, utc(2026, 11, 25, 15, 0)).day
        );
        // 2026-11-25 is a Wednesday: its week started on Monday the 23rd.
        let monday = NaiveDate::from_ymd_opt(2026, 11, 23).unwrap();
        let days = monday
            .signed_duration_since(NaiveDate::default())
            .num_days();
        assert_eq!(before.week_start, days);
        assert_eq!(before.day, days + 2);
        // Sunday 23:59 and Monday 00:00 local are in different weeks.
        let sun = local_day(tokyo, utc(2026, 11, 29, 14, 59));
        let mon = local_day(tokyo, utc(2026, 11, 29, 15, 0));
        assert_eq!(sun.week_start, days);
        assert_eq!(mon.week_start, days + 7);
    }

    #[test]
    fn days_and_quiet_hours_across_dst_changes() {
        let ny: Tz = "America/New_York".parse().unwrap();
        // 2026-03-08: clocks go 02:00 -> 03:00 in New York (a 23-hour day).
        // 04:59 UTC is 23:59 EST on the 7th; 05:00 UTC is midnight, the 8th.
        let sat = local_day(ny, utc(2026, 3, 8, 4, 59));
        let sun = local_day(ny, utc(2026, 3, 8, 5, 0));
        assert_eq!(sun.day, sat.day + 1);
        // 03:59 UTC on the 9th is 23:59 EDT on the 8th: still Sunday.
        assert_eq!(local_day(ny, utc(2026, 3, 9, 3, 59)).day, sun.day);
        assert_eq!(local_day(ny, utc(2026, 3, 9, 4, 0)).day, sun.day + 1);
        // Quiet hours that end at 02:30, a time that does not exist that
        // day, end when the clocks jump (03:00 EDT = 07:00 UTC).
        let q = hours("23:00-02:30");
        assert_eq!(
            quiet_ends(&q, ny, utc(2026, 3, 8, 5, 30)),
            Some(utc(2026, 3, 8, 7, 0))
        );
        // 2026-11-01: 01:30 happens twice; quiet hours ending then end at
        // the first one (05:30 UTC), and for someone already past it (the
        // second 01:00, 06:00 UTC) at the second one (06:30 UTC).
        let q = hours("22:00-01:30");
        assert_eq!(
            quiet_ends(&q, ny, utc(2026, 11, 1, 4, 0)),
            Some(utc(2026, 11, 1, 5, 30))
        );
        assert_eq!(
            quiet_ends(&q, ny, utc(2026, 11, 1, 6, 0)),
            Some(utc(2026, 11, 1, 6, 30))
        );
    }

    #[test]
    fn quiet_hours_hold_until_they_end_in_the_members_timezone() {
        let q = hours("21:00-08:00");
        let hk: Tz = "Asia/Hong_Kong".parse().unwrap();
        let la: Tz = "America/Los_Angeles".parse().unwrap();
        // 01:00 UTC = 09:00 in Hong Kong (free), 17:00 the day before in LA (free).
        let now = utc(2026, 11, 25, 1, 0);
        assert_eq!(quiet_ends(&q, hk, now), None);
        assert_eq!(quiet_ends(&q, la, now), None);
        // 10:00 UTC = 02:00 in LA: held until 08:00 PST = 16:00 UTC.
        let now = utc(2026, 11, 25, 10, 0);
        assert_eq!(quiet_ends(&q, la, now), Some(utc(2026, 11, 25, 16, 0)));
        // 13:30 UTC = 21:30 in Hong Kong: held until 08:00 HKT tomorrow.
        let now = utc(2026, 11, 25, 13, 30);
        assert_eq!(quiet_ends(&q, hk, now), Some(utc(2026, 11, 26, 0, 0)));
        // One minute before they end: held exactly one minute.
        let now = utc(2026, 11, 25, 23, 59);
        assert_eq!(quiet_ends(&q, hk, now), Some(utc(2026, 11, 26, 0, 0)));
        assert_eq!(held_until(None, Some(&q), hk, now), Some(now + 60_000));
        assert_eq!(held_until(None, Some(&q), hk, now + 60_000), None);
    }

    #[test]
    fn a_window_and_quiet_hours_together() {
        let utc_tz = chrono_tz::UTC;
        let window = hours("07:00-10:00");
        let quiet = hours("21:00-08:00");
        // 06:00: the window opens at 07:00, but quiet hours last until 08:00.
        let now = utc(2026, 11, 25, 6, 0);
        assert_eq!(
            held_until(Some(&window), Some(&quiet), utc_tz, now),
            Some(utc(2026, 11, 25, 8, 0))
        );
        // 11:00: past the window; tomorrow 08:00 (07:00 is still quiet).
        let now = utc(2026, 11, 25, 11, 0);
        assert_eq!(
            held_until(Some(&window), Some(&quiet), utc_tz, now),
            Some(utc(2026, 11, 26, 8, 0))
        );
        assert_eq!(
            held_until(Some(&window), Some(&quiet), utc_tz, utc(2026, 11, 25, 9, 0)),
            None
        );
        assert!(!never_open(&window, &quiet));
        assert!(never_open(&hours("22:00-23:00"), &quiet));
    }

    #[test]
    fn the_held_board_keeps_the_last_whole_tally_while_a_pass_runs() {
        let board = HeldBoard::default();
        let later = now_ms() + 3_600_000;
        let whole: Held = [(later, 10), (later + 60_000, 5)].into();
        board.publish(7, &whole, true);
        assert_eq!(board.of(7), vec![(later, 10), (later + 60_000, 5)]);
        // A pass under way has seen fewer so far: the last whole tally stays.
        board.publish(7, &[(later, 3)].into(), false);
        assert_eq!(board.of(7).len(), 2);
        // Once the pass ends its tally is the truth; released ones are gone.
        board.publish(7, &[(later, 4), (now_ms() - 1, 2)].into(), true);
        assert_eq!(board.of(7), vec![(later, 4)]);
        board.clear(7);
        assert!(board.of(7).is_empty());
    }

    #[test]
    fn bypass_keeps_counting_but_not_checking() {
        let policy = PolicyConfig {
            max_per_member: crate::config::Caps {
                day: Some(1),
                week: None,
            },
            quiet_hours: Some(hours("21:00-08:00")),
            default_timezone: chrono_tz::UTC,
        };
        let kept = Rules::for_push(&policy, false);
        assert!(kept.quiet.is_some() && kept.check_caps && kept.caps.is_some());
        let bypass = Rules::for_push(&policy, true);
        assert!(bypass.quiet.is_none() && !bypass.check_caps && bypass.caps.is_some());
        let none = Rules::for_push(&PolicyConfig::default(), false);
        assert!(!none.needs_timezone(false) && none.needs_timezone(true));
    }
}
