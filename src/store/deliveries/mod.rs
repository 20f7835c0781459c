//! Deliveries: one row per (push, member), moved through the state machine
//! `pending → sending → sent | failed | skipped` (+ `cancelled`). Every
//! transition is guarded by the state it leaves, so a delivery can never be
//! sent twice by accident, whatever order things happen in.
//!
//! `sending` is stored two ways. A *fresh* delivery (never attempted, not
//! deferred) is claimed with the rest of its group by one row in `claims`,
//! committed before any request of the group leaves: while that claim
//! lives, the fresh row is `sending` ([`STATE_SQL`]). Everything else
//! (retries, deferred recipients) is marked `sending` (state 1) row by row.
//! Outcomes accept either, so the common first attempt costs one row write.

mod claims;
mod resolve;
mod sent;

pub use claims::{Mark, claim, has_claims, mark_sending, mark_sending_many, release_claims};
pub use resolve::{
    Chunk, RESOLVE_CHUNK, clear, count_resolved, insert_from_sql, insert_members, resolve_chunk,
    resolved_through, restart_resolution,
};
pub use sent::{SentRow, mark_sent_many, register_functions};

use super::members::{MEMBER_COLUMNS, member_from_row};
use super::{Result, StoreError};
use crate::model::{DeliveryId, DeliveryState, ErrorClass, Member, Millis, PushId, now_ms};
use crate::variants::REST_HELD;
use rusqlite::{Connection, params};

/// A recipient waiting to be sent.
#[derive(Debug, Clone)]
pub struct Pending {
    pub delivery_id: DeliveryId,
    pub attempts: u32,
    pub next_attempt_at: Option<Millis>,
    /// The A/B variant the member was assigned (None: no variants, or
    /// waiting for the winner).
    pub variant: Option<String>,
    pub member: Member,
}

/// A group of fresh deliveries claimed for sending (a row of `claims`).
pub type ClaimId = i64;

/// Fresh: pending, never attempted, not deferred — claimed by range, not marked.
macro_rules! fresh {
    () => {
        "d.state = 0 AND d.attempts = 0 AND d.next_attempt_at IS NULL"
    };
}

/// Inside a live claim of its push.
macro_rules! claimed {
    () => {
        "EXISTS (SELECT 1 FROM claims c WHERE c.push_id = d.push_id AND d.id BETWEEN c.first_id AND c.last_id)"
    };
}

/// A delivery's state as the state machine sees it, over `deliveries d`: a
/// fresh row inside a live claim is `sending` (1), anything else its column.
pub const STATE_SQL: &str = concat!(
    "(CASE WHEN ",
    fresh!(),
    " AND ",
    claimed!(),
    " THEN 1 ELSE d.state END)"
);

const PENDING: i64 = DeliveryState::Pending as i64;
const SENDING: i64 = DeliveryState::Sending as i64;
const SENT: i64 = DeliveryState::Sent as i64;
const FAILED: i64 = DeliveryState::Failed as i64;
const SKIPPED: i64 = DeliveryState::Skipped as i64;
const CANCELLED: i64 = DeliveryState::Cancelled as i64;

/// The next pending recipients after `after` (by delivery id), with members:
/// all of them (through the push index), or with `waiting` only those given
/// a time to wait for (retries, deferrals: their own small index).
/// `skip_claimed` leaves out fresh rows inside a live claim (they are
/// `sending`); a walk that knows its push has no claims saves the check.
pub fn pending_page(
    conn: &Connection,
    push: PushId,
    after: DeliveryId,
    limit: u32,
    waiting: bool,
    skip_claimed: bool,
) -> Result<Vec<Pending>> {
    let unclaimed = if skip_claimed {
        concat!(" AND NOT (", fresh!(), " AND ", claimed!(), ")")
    } else {
        ""
    };
    let (index, only) = if waiting {
        ("deliveries_waiting", " AND d.next_attempt_at IS NOT NULL")
    } else {
        ("deliveries_push", "")
    };
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT d.id, d.attempts, d.next_attempt_at, d.variant, {MEMBER_COLUMNS}
         FROM deliveries d INDEXED BY {index} JOIN members m ON m.id = d.member_id
         WHERE d.push_id = ?1 AND d.state = {PENDING}{only} AND d.id > ?2{unclaimed}
           AND d.next_attempt_at IS NOT {REST_HELD}
         ORDER BY d.id LIMIT {limit}"
    ))?;
    // (The limit is spelled out: SQLite re-prepares a statement whenever a
    // bound LIMIT is bound again, which was a parse and plan per page.)
    let rows = stmt.query_map(params![push, after], |r| {
        Ok(Pending {
            delivery_id: r.get(0)?,
            attempts: r.get(1)?,
            next_attempt_at: r.get(2)?,
            variant: r.get(3)?,
            member: member_from_row(r, 4)?,
        })
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// Ids (or rows) as one JSON array, for `json_each` in set-based statements.
pub(super) fn encode<T: serde::Serialize>(v: &T) -> Result<String> {
    serde_json::to_string(v)
        .map_err(|e| StoreError::Invalid(format!("cannot encode deliveries: {e}")))
}

pub(super) fn expect_one(changed: usize, id: DeliveryId, what: &str) -> Result<()> {
    if changed == 1 {
        Ok(())
    } else {
        Err(StoreError::Invalid(format!(
            "delivery {id} is not in the state {what} expects"
        )))
    }
}

/// Where and when an attempt went out. Recorded with its outcome, because a
/// claimed first attempt was not marked row by row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    pub channel: String,
    pub sending_at: Millis,
}

/// `sending → failed` (permanent error, or attempts exhausted).
pub fn mark_failed(
    conn: &Connection,
    id: DeliveryId,
    attempt: &Attempt,
    class: ErrorClass,
    code: &str,
    message: &str,
    at: Millis,
) -> Result<()> {
    let n = conn
        .prepare_cached(&format!(
            "UPDATE deliveries SET state = {FAILED}, attempts = attempts + (state = {PENDING}),
                channel = ?6, sending_at = coalesce(sending_at, ?7),
                error_class = ?2, error_code = ?3, error_message = ?4, failed_at = ?5, updated_at = ?5
             WHERE id = ?1 AND state <= {SENDING}"
        ))?
        .execute(params![
            id,
            class.as_str(),
            code,
            message,
            at,
            attempt.channel,
            attempt.sending_at
        ])?;
    expect_one(n, id, "mark_failed")
}

/// `sending → pending` to be tried again at `next_at` (transient error), or
/// without counting the attempt (`refund`: the push paused before it could
/// really be tried, e.g. bad credentials). Either way the row is no longer
/// fresh (it has a time to wait for), so its next attempt is marked.
#[allow(clippy::too_many_arguments)]
pub fn mark_retry(
    conn: &Connection,
    id: DeliveryId,
    attempt: &Attempt,
    class: ErrorClass,
    code: &str,
    message: &str,
    next_at: Millis,
    refund: bool,
) -> Result<()> {
    let n = conn
        .prepare_cached(&format!(
            "UPDATE deliveries SET state = {PENDING}, attempts = attempts + (state = {PENDING}) - ?6,
                channel = ?8, sending_at = coalesce(sending_at, ?9),
                error_class = ?2, error_code = ?3, error_message = ?4,
                next_attempt_at = ?5, updated_at = ?7
             WHERE id = ?1 AND state <= {SENDING}"
        ))?
        .execute(params![
            id,
            class.as_str(),
            code,
            message,
            next_at,
            refund as i64,
            now_ms(),
            attempt.channel,
            attempt.sending_at
        ])?;
    expect_one(n, id, "mark_retry")
}

/// `pending → skipped` with the reason (route skip, channel not configured).
pub fn mark_skipped(conn: &Connection, id: DeliveryId, reason: &str) -> Result<()> {
    let n = conn
        .prepare_cached(&format!(
            "UPDATE deliveries SET state = {SKIPPED}, skip_reason = ?2, updated_at = ?3
             WHERE id = ?1 AND state = {PENDING}"
        ))?
        .execute(params![id, reason, now_ms()])?;
    expect_one(n, id, "mark_skipped")
}

/// Defers a pending recipient (send window) without counting an attempt.
pub fn defer(conn: &Connection, id: DeliveryId, until: Millis) -> Result<()> {
    conn.prepare_cached(&format!(
        "UPDATE deliveries SET next_attempt_at = ?2 WHERE id = ?1 AND state = {PENDING}"
    ))?
    .execute(params![id, until])?;
    Ok(())
}

/// Everything still pending in a cancelled push ends `cancelled`, but for
/// claimed rows: they are `sending`, and end as the platform answers.
pub fn cancel_pending(conn: &Connection, push: PushId) -> Result<u64> {
    Ok(conn
        .prepare_cached(&format!(
            concat!(
                "UPDATE deliveries AS d SET state = {CANCELLED}, updated_at = ?2
                 WHERE d.push_id = ?1 AND d.state = {PENDING} AND NOT (",
                fresh!(),
                " AND ",
                claimed!(),
                ")"
            ),
            CANCELLED = CANCELLED,
            PENDING = PENDING
        ))?
        .execute(params![push, now_ms()])? as u64)
}

const INTERRUPTED: &str = "error_class = 'interrupted', error_code = 'interrupted',
    error_message = 'pushd stopped while this send was in flight; it may or may not have arrived, so it is not resent automatically'";

/// After a crash: rows left `sending` (marked, or fresh inside a claim) may
/// or may not have reached the platform. They are never resent
/// automatically; they end failed with class `interrupted`, so a retry
/// audience can pick them up deliberately. The claims go with them.
pub fn interrupt_sending(conn: &Connection) -> Result<u64> {
    let now = now_ms();
    let marked = conn
        .prepare_cached(&format!(
            "UPDATE deliveries SET state = {FAILED}, {INTERRUPTED}, failed_at = ?1, updated_at = ?1
             WHERE state = {SENDING}"
        ))?
        .execute([now])?;
    let claims: Vec<(PushId, DeliveryId, DeliveryId, Millis)> = conn
        .prepare_cached("SELECT push_id, first_id, last_id, at FROM claims")?
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?
        .collect::<rusqlite::Result<_>>()?;
    let mut claimed = 0;
    let mut stmt = conn.prepare_cached(&format!(
        concat!(
            "UPDATE deliveries AS d SET state = {FAILED}, attempts = 1, sending_at = ?4, {INTERRUPTED},
                failed_at = ?5, updated_at = ?5
             WHERE d.push_id = ?1 AND d.id BETWEEN ?2 AND ?3 AND ",
            fresh!()
        ),
        FAILED = FAILED,
        INTERRUPTED = INTERRUPTED
    ))?;
    for (push, first, last, at) in claims {
        claimed += stmt.execute(params![push, first, last, at, now])?;
    }
    conn.prepare_cached("DELETE FROM claims")?.execute([])?;
    Ok((marked + claimed) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::MemberId;
    use crate::store::{pushes, schema};

    /// A push named `name`, started.
    fn started_push(c: &Connection, name: &str) -> PushId {
        let p = pushes::create(
            c,
            &pushes::NewPush {
                name: name.into(),
                origin: "cli".into(),
                audience: "a".into(),
                template: "t".into(),
                ..Default::default()
            },
        )
        .unwrap()
        .id;
        pushes::mark_started(c, p, None, None).unwrap();
        p
    }

    /// A running push with five pending deliveries, ids 1..=5.
    fn running_push() -> (tempfile::TempDir, Connection, PushId) {
        let dir = tempfile::tempdir().unwrap();
        let mut c = Connection::open(dir.path().join("d.db")).unwrap();
        schema::migrate(&mut c).unwrap();
        register_functions(&c).unwrap();
        let p = started_push(&c, "p");
        for m in 1..=5 {
            c.execute(
                "INSERT INTO members (id, channel, channel_user_id, created_at, updated_at)
                 VALUES (?1, 'sim', 'u' || ?1, 0, 0)",
                [m],
            )
            .unwrap();
            c.execute(
                "INSERT INTO deliveries (id, push_id, member_id, state) VALUES (?1, ?2, ?1, 0)",
                params![m, p],
            )
            .unwrap();
        }
        count_resolved(&c, p).unwrap();
        (dir, c, p)
    }

    fn states(c: &Connection) -> Vec<i64> {
        c.prepare(&format!(
            "SELECT {STATE_SQL} FROM deliveries d ORDER BY d.id"
        ))
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<rusqlite::Result<_>>()
        .unwrap()
    }

    #[test]
    fn claimed_fresh_rows_are_sending_and_outcomes_settle_them() {
        let (_dir, c, p) = running_push();
        // Row 3 waits for a retry: inside the range, but not fresh, so not claimed.
        let attempt = Attempt {
            channel: "sim".into(),
            sending_at: 9,
        };
        mark_retry(
            &c,
            3,
            &attempt,
            ErrorClass::Transient,
            "503",
            "busy",
            50,
            false,
        )
        .unwrap();
        let claim = claim(&c, p, 1, 4, 10).unwrap().expect("running push");
        assert_eq!(states(&c), vec![1, 1, 0, 1, 0]);
        assert!(has_claims(&c, p).unwrap());
        // The walk steps over claimed rows only when told to.
        let page = |skip| -> Vec<DeliveryId> {
            pending_page(&c, p, 0, 10, false, skip)
                .unwrap()
                .iter()
                .map(|p| p.delivery_id)
                .collect()
        };
        assert_eq!(page(true), vec![3, 5]);
        assert_eq!(page(false), vec![1, 2, 3, 4, 5]);
        // A later pass reads only the recipients with a time to wait for.
        let waiting: Vec<DeliveryId> = pending_page(&c, p, 0, 10, true, true)
            .unwrap()
            .iter()
            .map(|p| p.delivery_id)
            .collect();
        assert_eq!(waiting, vec![3]);
        // A cancel leaves claimed rows to their outcome.
        assert_eq!(cancel_pending(&c, p).unwrap(), 2);
        assert_eq!(states(&c), vec![1, 1, 5, 1, 5]);
        let sent = mark_sent_many(
            &c,
            p,
            "sim",
            &[SentRow {
                id: 1,
                provider_id: "pm-1",
                at: 12,
                sending_at: 10,
            }],
        )
        .unwrap();
        assert!(sent.contains(&1));
        mark_failed(&c, 2, &attempt, ErrorClass::Blocked, "b", "blocked", 13).unwrap();
        let row = |id: i64| -> (i64, i64, Option<String>, Option<i64>) {
            c.query_row(
                "SELECT state, attempts, channel, sending_at FROM deliveries WHERE id = ?1",
                [id],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
            )
            .unwrap()
        };
        assert_eq!(row(1), (2, 1, Some("sim".into()), Some(10)));
        assert_eq!(row(2), (3, 1, Some("sim".into()), Some(9)));
        // A crash now: row 4 is still in flight under the claim.
        assert_eq!(interrupt_sending(&c).unwrap(), 1);
        assert_eq!(states(&c), vec![2, 3, 5, 3, 5]);
        let (class, attempts, sending_at): (String, i64, i64) = c
            .query_row(
                "SELECT error_class, attempts, sending_at FROM deliveries WHERE id = 4",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .unwrap();
        assert_eq!(
            (class.as_str(), attempts, sending_at),
            ("interrupted", 1, 10)
        );
        assert!(!has_claims(&c, p).unwrap());
        release_claims(&c, &[claim]).unwrap();
        // The counters kept up with every move.
        let counts = pushes::counts(&c, p).unwrap();
        assert_eq!(
            (counts.sent, counts.failed, counts.cancelled, counts.pending),
            (1, 2, 2, 0)
        );
    }

    #[test]
    fn a_push_that_is_not_running_cannot_be_claimed() {
        let (_dir, c, p) = running_push();
        pushes::set_status(&c, p, pushes::PushStatus::Paused, Some("operator")).unwrap();
        assert_eq!(claim(&c, p, 1, 5, 1).unwrap(), None);
        assert!(!has_claims(&c, p).unwrap());
        assert_eq!(states(&c), vec![0; 5]);
    }

    /// Members 1..=n on two channels, every third one unsubscribed, and two
    /// started pushes over them.
    fn members_and_two_pushes(n: i64) -> (tempfile::TempDir, Connection, PushId, PushId) {
        let dir = tempfile::tempdir().unwrap();
        let mut c = Connection::open(dir.path().join("d.db")).unwrap();
        schema::migrate(&mut c).unwrap();
        register_functions(&c).unwrap();
        for m in 1..=n {
            c.execute(
                "INSERT INTO members (id, channel, channel_user_id, subscribed, created_at, updated_at)
                 VALUES (?1, CASE WHEN ?1 % 4 = 0 THEN 'wa' ELSE 'sim' END, 'u' || ?1, ?1 % 3 <> 0, 0, 0)",
                [m],
            )
            .unwrap();
        }
        let (a, b) = (started_push(&c, "whole"), started_push(&c, "chunked"));
        (dir, c, a, b)
    }

    fn frozen(c: &Connection, p: PushId) -> Vec<(i64, i64, Option<String>)> {
        c.prepare("SELECT member_id, state, skip_reason FROM deliveries WHERE push_id = ?1 ORDER BY member_id")
            .unwrap()
            .query_map([p], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap()
    }

    /// The counters as a recount of the rows.
    fn recount(c: &Connection, p: PushId) -> Vec<(i64, i64)> {
        c.prepare(
            "SELECT CASE WHEN state <= 1 THEN 0 ELSE state END s, count(*) FROM deliveries
             WHERE push_id = ?1 GROUP BY s ORDER BY s",
        )
        .unwrap()
        .query_map([p], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .collect::<rusqlite::Result<_>>()
        .unwrap()
    }

    fn counters(c: &Connection, p: PushId) -> Vec<(i64, i64)> {
        c.prepare(
            "SELECT state, sum(n) FROM push_counts WHERE push_id = ?1 AND n > 0 GROUP BY state ORDER BY state",
        )
        .unwrap()
        .query_map([p], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .collect::<rusqlite::Result<_>>()
        .unwrap()
    }

    fn resolved(c: &Connection, p: PushId) -> (bool, Option<MemberId>) {
        c.query_row(
            "SELECT resolved, resolved_through FROM pushes WHERE id = ?1",
            [p],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap()
    }

    #[test]
    fn chunks_freeze_what_one_statement_does_and_resume_after_a_crash() {
        let (dir, c, whole, chunked) = members_and_two_pushes(23);
        let args = [crate::model::SqlValue::Text("sim".into())];
        insert_from_sql(&c, whole, "m.channel = ?1", &args).unwrap();
        count_resolved(&c, whole).unwrap();
        // 23 members, 18 on "sim": chunks of 4, 4, 4, 4, 2.
        let mut c = c;
        let mut sizes = vec![];
        loop {
            let chunk = resolve_chunk(&c, chunked, "m.channel = ?1", &args, 4).unwrap();
            sizes.push(chunk.rows);
            if sizes.len() == 2 {
                // A crash between chunks: the next connection carries on
                // from what was committed.
                assert_eq!(resolved(&c, chunked), (false, Some(10)));
                drop(c);
                c = Connection::open(dir.path().join("d.db")).unwrap();
                register_functions(&c).unwrap();
            }
            if chunk.done {
                break;
            }
        }
        assert_eq!(sizes, vec![4, 4, 4, 4, 2]);
        assert_eq!(frozen(&c, chunked), frozen(&c, whole));
        assert_eq!(frozen(&c, chunked).len(), 18);
        assert_eq!(counters(&c, chunked), counters(&c, whole));
        assert_eq!(counters(&c, chunked), recount(&c, chunked));
        assert_eq!(resolved(&c, chunked), (true, Some(23)));
        // Once done, there is nothing more to freeze.
        assert_eq!(
            resolve_chunk(&c, chunked, "m.channel = ?1", &args, 4).unwrap(),
            Chunk {
                rows: 0,
                done: true
            }
        );
        assert_eq!(frozen(&c, chunked).len(), 18);
    }

    #[test]
    fn outcomes_between_chunks_keep_the_counters_exact() {
        let (_dir, c, _, p) = members_and_two_pushes(30);
        let first = resolve_chunk(&c, p, "1", &[], 8).unwrap();
        assert_eq!(
            first,
            Chunk {
                rows: 8,
                done: false
            }
        );
        // Sends of the first chunk end while the rest is frozen.
        let ids: Vec<DeliveryId> = pending_page(&c, p, 0, 100, false, false)
            .unwrap()
            .iter()
            .map(|r| r.delivery_id)
            .collect();
        let attempt = Attempt {
            channel: "sim".into(),
            sending_at: 5,
        };
        mark_failed(&c, ids[0], &attempt, ErrorClass::Rejected, "400", "bad", 6).unwrap();
        mark_skipped(&c, ids[1], "no channel").unwrap();
        assert_eq!(counters(&c, p), recount(&c, p));
        while !resolve_chunk(&c, p, "1", &[], 8).unwrap().done {}
        assert_eq!(frozen(&c, p).len(), 30);
        assert_eq!(counters(&c, p), recount(&c, p));
        let counts = pushes::counts(&c, p).unwrap();
        assert_eq!((counts.failed, counts.skipped, counts.total()), (1, 11, 30));
    }

    #[test]
    fn a_cancelled_push_freezes_no_more_chunks() {
        let (_dir, c, _, p) = members_and_two_pushes(30);
        resolve_chunk(&c, p, "1", &[], 8).unwrap();
        pushes::set_status(&c, p, pushes::PushStatus::Cancelled, None).unwrap();
        assert_eq!(
            resolve_chunk(&c, p, "1", &[], 8).unwrap(),
            Chunk {
                rows: 0,
                done: true
            }
        );
        assert_eq!(frozen(&c, p).len(), 8);
        assert_eq!(resolved(&c, p), (false, Some(8)));
    }
}
