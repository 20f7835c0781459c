//! Frequency caps across pushes: every first attempt to a member is one row
//! of `member_sends` (member, the member's local calendar day, delivery),
//! written by the same transaction that claims or marks the send, after a
//! check of that member's rows of the day and week. The store's one writer
//! runs those transactions one after another, so two pushes claiming the
//! same member at once are checked in turn: the second sees the first's
//! count, and no member gets past a cap. A recipient over a cap ends
//! `skipped` with reason [`CAPPED`] in that same transaction.
//!
//! A row per send (rather than a counter per day) makes the count
//! idempotent: a delivery counted once is never counted again, whatever
//! happens to its attempts. A member's rows from earlier weeks are deleted
//! when they are next counted.

use super::Result;
use super::deliveries::encode;
use crate::model::{DeliveryId, DeliveryState, MemberId, PushId, now_ms};
use rusqlite::{Connection, params};
use std::collections::{HashMap, HashSet};

/// The skip reason of a recipient over a frequency cap.
pub const CAPPED: &str = "capped";

/// Caps in force when a group is claimed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CapLimits {
    pub day: Option<u32>,
    pub week: Option<u32>,
}

impl CapLimits {
    /// Over a cap with this many messages already counted today / this week.
    pub fn reached(&self, today: u64, this_week: u64) -> bool {
        self.day.is_some_and(|d| today >= d as u64)
            || self.week.is_some_and(|w| this_week >= w as u64)
    }
}

/// One first attempt to count (and check) when its group is claimed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CapItem {
    pub delivery: DeliveryId,
    pub member: MemberId,
    /// The member's local calendar day at claim time (days since 1970-01-01).
    pub day: i64,
    /// The Monday that day's week starts on.
    pub week_start: i64,
    /// Held to the caps (false: a bypassing push, counted only).
    pub check: bool,
    /// Claimed with its group's range (else marked `sending` on its own).
    pub fresh: bool,
}

/// The caps a group's claim checks, and the first attempts it counts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CapCheck {
    pub limits: CapLimits,
    pub items: Vec<CapItem>,
}

/// Checks each item against `limits` in turn and counts those under them.
/// Returns the deliveries over a cap (not counted): the caller skips them
/// as [`CAPPED`] in the same transaction ([`mark_capped`]).
pub fn reserve<'a>(
    conn: &Connection,
    limits: &CapLimits,
    items: impl IntoIterator<Item = &'a CapItem>,
) -> Result<HashSet<DeliveryId>> {
    let mut counted = conn.prepare_cached(
        "SELECT coalesce(sum(day = ?2), 0), coalesce(sum(day >= ?3), 0), count(*)
         FROM member_sends WHERE member_id = ?1 AND delivery_id <> ?4",
    )?;
    let mut insert = conn.prepare_cached(
        "INSERT OR IGNORE INTO member_sends (member_id, day, delivery_id) VALUES (?1, ?2, ?3)",
    )?;
    let mut prune =
        conn.prepare_cached("DELETE FROM member_sends WHERE member_id = ?1 AND day < ?2")?;
    let mut capped = HashSet::new();
    for it in items {
        let (today, week, all): (i64, i64, i64) = counted.query_row(
            params![it.member, it.day, it.week_start, it.delivery],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )?;
        if it.check && limits.reached(today as u64, week as u64) {
            capped.insert(it.delivery);
            continue;
        }
        insert.execute(params![it.member, it.day, it.delivery])?;
        if all > week {
            prune.execute(params![it.member, it.week_start])?;
        }
    }
    Ok(capped)
}

/// Takes back the counts of sends that were not made after all (a mark
/// that found its row no longer pending).
pub fn unreserve<'a>(
    conn: &Connection,
    items: impl IntoIterator<Item = &'a CapItem>,
) -> Result<()> {
    let mut stmt = conn.prepare_cached(
        "DELETE FROM member_sends WHERE member_id = ?1 AND day = ?2 AND delivery_id = ?3",
    )?;
    for it in items {
        stmt.execute(params![it.member, it.day, it.delivery])?;
    }
    Ok(())
}

/// `pending → skipped` with reason [`CAPPED`] (claimed fresh rows included:
/// a skipped row is no longer fresh, so its claim no longer covers it).
pub fn mark_capped(conn: &Connection, ids: &HashSet<DeliveryId>) -> Result<()> {
    if ids.is_empty() {
        return Ok(());
    }
    let list = encode(&ids.iter().collect::<Vec<_>>())?;
    conn.prepare_cached(&format!(
        "UPDATE deliveries SET state = {}, skip_reason = ?2, updated_at = ?3
         WHERE id IN (SELECT value FROM json_each(?1)) AND state = {}",
        DeliveryState::Skipped as i64,
        DeliveryState::Pending as i64
    ))?
    .execute(params![list, CAPPED, now_ms()])?;
    Ok(())
}

/// The counted days since `since` of each of `members` (for the check made
/// when a page is read, before anything is routed or rate-limited).
pub fn days_counted(
    conn: &Connection,
    members: &[MemberId],
    since: i64,
) -> Result<HashMap<MemberId, Vec<i64>>> {
    let mut out: HashMap<MemberId, Vec<i64>> = HashMap::new();
    if members.is_empty() {
        return Ok(out);
    }
    let mut stmt = conn.prepare_cached(
        "SELECT member_id, day FROM member_sends
         WHERE member_id IN (SELECT value FROM json_each(?1)) AND day >= ?2",
    )?;
    let rows = stmt.query_map(params![encode(&members)?, since], |r| {
        Ok((r.get::<_, MemberId>(0)?, r.get::<_, i64>(1)?))
    })?;
    for row in rows {
        let (m, day) = row?;
        out.entry(m).or_default().push(day);
    }
    Ok(out)
}

/// Recipients of `push` skipped as over a cap (a partial index of its own).
pub fn capped(conn: &Connection, push: PushId) -> Result<u64> {
    let n: i64 = conn
        .prepare_cached(&format!(
            "SELECT count(*) FROM deliveries INDEXED BY deliveries_capped
             WHERE push_id = ?1 AND state = {} AND skip_reason = '{CAPPED}'",
            DeliveryState::Skipped as i64
        ))?
        .query_row([push], |r| r.get(0))?;
    Ok(n as u64)
}

/// An audience's subscribed members by timezone (for the ETA of a push
/// whose recipients will be held: each timezone opens at its own time).
/// `filter_sql` is a script audience's compiled `where` over `members m`;
/// `saved` names a saved audience instead.
pub fn timezones(
    conn: &Connection,
    filter_sql: Option<(&str, &[crate::model::SqlValue])>,
    saved: Option<i64>,
) -> Result<Vec<(String, u64)>> {
    let mut out = Vec::new();
    let mut collect = |rows: &mut rusqlite::Rows<'_>| -> Result<()> {
        while let Some(r) = rows.next()? {
            out.push((r.get::<_, String>(0)?, r.get::<_, i64>(1)? as u64));
        }
        Ok(())
    };
    if let Some((sql, args)) = filter_sql {
        let q = format!(
            "SELECT m.timezone, count(*) FROM members m WHERE ({sql}) AND m.subscribed GROUP BY m.timezone"
        );
        let mut stmt = conn.prepare(&q)?;
        collect(&mut stmt.query(rusqlite::params_from_iter(args.iter()))?)?;
    } else if let Some(audience) = saved {
        let mut stmt = conn.prepare_cached(
            "SELECT m.timezone, count(*) FROM audience_members am JOIN members m ON m.id = am.member_id
             WHERE am.audience_id = ?1 AND m.subscribed GROUP BY m.timezone",
        )?;
        collect(&mut stmt.query([audience])?)?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{deliveries, pushes, schema};

    /// Members 1..=3 and two running pushes over them (deliveries 1..=3 and 4..=6).
    fn two_pushes() -> (tempfile::TempDir, Connection, PushId, PushId) {
        let dir = tempfile::tempdir().unwrap();
        let mut c = Connection::open(dir.path().join("p.db")).unwrap();
        schema::migrate(&mut c).unwrap();
        let mut ids = vec![];
        for name in ["a", "b"] {
            let p = pushes::create(
                &c,
                &pushes::NewPush {
                    name: name.into(),
                    origin: "cli".into(),
                    audience: "all".into(),
                    template: "t".into(),
                    ..Default::default()
                },
            )
            .unwrap()
            .id;
            pushes::mark_started(&c, p, None, None).unwrap();
            ids.push(p);
        }
        for m in 1..=3 {
            c.execute(
                "INSERT INTO members (id, channel, channel_user_id, created_at, updated_at)
                 VALUES (?1, 'sim', 'u' || ?1, 0, 0)",
                [m],
            )
            .unwrap();
        }
        for (p, first) in [(ids[0], 1), (ids[1], 4)] {
            for m in 1..=3 {
                c.execute(
                    "INSERT INTO deliveries (id, push_id, member_id, state) VALUES (?1, ?2, ?3, 0)",
                    params![first + m - 1, p, m],
                )
                .unwrap();
            }
            deliveries::count_resolved(&c, p).unwrap();
        }
        (dir, c, ids[0], ids[1])
    }

    fn item(delivery: i64, member: i64, day: i64) -> CapItem {
        CapItem {
            delivery,
            member,
            day,
            week_start: day - day.rem_euclid(7),
            check: true,
            fresh: true,
        }
    }

    #[test]
    fn the_second_push_finds_the_first_ones_count() {
        let (_dir, c, a, b) = two_pushes();
        let one_a_day = CapLimits {
            day: Some(1),
            week: None,
        };
        let day = 20_000;
        let first: Vec<CapItem> = (1..=3).map(|m| item(m, m, day)).collect();
        assert!(reserve(&c, &one_a_day, &first).unwrap().is_empty());
        // A retry of a counted delivery does not count (nor cap) it again.
        assert!(reserve(&c, &one_a_day, &first[..1]).unwrap().is_empty());
        let second: Vec<CapItem> = (1..=3).map(|m| item(m + 3, m, day)).collect();
        let capped = reserve(&c, &one_a_day, &second).unwrap();
        assert_eq!(capped, HashSet::from([4, 5, 6]));
        mark_capped(&c, &capped).unwrap();
        assert_eq!(super::capped(&c, b).unwrap(), 3);
        assert_eq!(super::capped(&c, a).unwrap(), 0);
        let reasons: Vec<(i64, Option<String>)> = c
            .prepare("SELECT state, skip_reason FROM deliveries WHERE push_id = ?1")
            .unwrap()
            .query_map([b], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap();
        assert!(reasons.iter().all(|r| *r == (4, Some(CAPPED.into()))));
        assert_eq!(pushes::counts(&c, b).unwrap().skipped, 3);
        // The next day, member 1 may be messaged again; a bypassing push
        // is counted without being checked.
        let tomorrow = [item(4, 1, day + 1)];
        assert!(reserve(&c, &one_a_day, &tomorrow).unwrap().is_empty());
        let bypass = CapItem {
            check: false,
            ..item(5, 2, day)
        };
        assert!(reserve(&c, &one_a_day, &[bypass]).unwrap().is_empty());
        let n: i64 = c
            .query_row(
                "SELECT count(*) FROM member_sends WHERE member_id = 2",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(n, 2);
        // A count taken back frees the member.
        unreserve(&c, &tomorrow).unwrap();
        let counted = days_counted(&c, &[1, 2, 3], day).unwrap();
        assert_eq!(counted[&1], vec![day]);
        assert_eq!(counted[&2], vec![day, day]);
    }

    #[test]
    fn weeks_cap_across_days_and_old_weeks_are_pruned() {
        let (_dir, c, _, _) = two_pushes();
        let twice_a_week = CapLimits {
            day: None,
            week: Some(2),
        };
        let start = 20_001 - 20_001i64.rem_euclid(7); // a week start, in this test's numbering
        assert!(
            reserve(&c, &twice_a_week, &[item(1, 1, start - 3)])
                .unwrap()
                .is_empty()
        );
        assert!(
            reserve(&c, &twice_a_week, &[item(2, 1, start)])
                .unwrap()
                .is_empty()
        );
        assert!(
            reserve(&c, &twice_a_week, &[item(3, 1, start + 2)])
                .unwrap()
                .is_empty()
        );
        // Two this week (the one of last week does not count, and is gone).
        assert_eq!(
            reserve(&c, &twice_a_week, &[item(4, 1, start + 6)]).unwrap(),
            HashSet::from([4])
        );
        assert_eq!(
            days_counted(&c, &[1], 0).unwrap()[&1],
            vec![start, start + 2]
        );
        // The next week starts afresh.
        assert!(
            reserve(&c, &twice_a_week, &[item(4, 1, start + 7)])
                .unwrap()
                .is_empty()
        );
    }
}
