//! A/B variants in the store: the groups frozen with the audience (SQL a
//! resolution inserts with), per-variant counts, and the winner decision —
//! one transaction that records the winner and releases the members who
//! waited for it, so a crash decides once or not at all.

use super::pushes::Counts;
use super::{Result, StoreError};
use crate::model::{DeliveryState, Millis, PushId};
use crate::variants::{self, HOLDOUT, Metric, Plan, REST_HELD, Score};
use rusqlite::functions::FunctionFlags;
use rusqlite::{Connection, params};

const PENDING: i64 = DeliveryState::Pending as i64;
const SKIPPED: i64 = DeliveryState::Skipped as i64;

/// `pushd_bucket(push, member, salt, modulus)`: [`variants::bucket`] in SQL,
/// for resolutions that freeze groups in one INSERT … SELECT.
pub fn register_functions(conn: &Connection) -> rusqlite::Result<()> {
    conn.create_scalar_function(
        "pushd_bucket",
        4,
        FunctionFlags::SQLITE_UTF8 | FunctionFlags::SQLITE_DETERMINISTIC,
        |ctx| {
            let (push, member): (i64, i64) = (ctx.get(0)?, ctx.get(1)?);
            let (salt, modulus): (i64, i64) = (ctx.get(2)?, ctx.get(3)?);
            Ok(variants::bucket(push, member, salt as u64, modulus.max(0) as u64) as i64)
        },
    )
}

/// The column values of a new delivery row, as SQL over a member id
/// expression and its `subscribed` expression: (state, skip_reason,
/// variant, next_attempt_at). Without a plan: pending or unsubscribed.
pub struct Columns {
    pub state: String,
    pub skip_reason: String,
    pub variant: String,
    pub next_attempt_at: String,
}

pub fn columns(push: PushId, plan: Option<&Plan>, id: &str, subscribed: &str) -> Columns {
    let Some(plan) = plan else {
        return Columns {
            state: format!("CASE WHEN {subscribed} THEN {PENDING} ELSE {SKIPPED} END"),
            skip_reason: format!("CASE WHEN {subscribed} THEN NULL ELSE 'unsubscribed' END"),
            variant: "NULL".into(),
            next_attempt_at: "NULL".into(),
        };
    };
    let b = |salt: u64, modulus: u64| format!("pushd_bucket({push}, {id}, {salt}, {modulus})");
    let held = format!(
        "{} < {}",
        b(variants::SALT_HOLDOUT, variants::BUCKETS),
        plan.holdout_bp()
    );
    let rest = match plan.share_bp() {
        Some(share) => format!("{} >= {share}", b(variants::SALT_TEST, variants::BUCKETS)),
        None => "0".into(),
    };
    let variant = if plan.variants.is_empty() {
        "NULL".to_string()
    } else {
        let arms: String = plan
            .variants
            .iter()
            .enumerate()
            .map(|(i, v)| format!(" WHEN {i} THEN '{}'", v.replace('\'', "''")))
            .collect();
        format!(
            "CASE {}{arms} END",
            b(variants::SALT_VARIANT, plan.variants.len() as u64)
        )
    };
    Columns {
        state: format!("CASE WHEN NOT {subscribed} OR {held} THEN {SKIPPED} ELSE {PENDING} END"),
        skip_reason: format!(
            "CASE WHEN NOT {subscribed} THEN 'unsubscribed' WHEN {held} THEN '{HOLDOUT}' END"
        ),
        variant: format!(
            "CASE WHEN NOT {subscribed} OR {held} OR {rest} THEN NULL ELSE {variant} END"
        ),
        next_attempt_at: format!(
            "CASE WHEN {subscribed} AND NOT {held} AND {rest} THEN {REST_HELD} END"
        ),
    }
}

/// A push's plan as stored (JSON), or None.
pub fn parse_plan(json: Option<&str>) -> Result<Option<Plan>> {
    json.map(|j| {
        serde_json::from_str(j)
            .map_err(|e| StoreError::Invalid(format!("the push's variant plan is unreadable: {e}")))
    })
    .transpose()
}

/// A push's plan, read from its row.
pub fn plan_of(conn: &Connection, push: PushId) -> Result<Option<Plan>> {
    let json: Option<String> = conn
        .prepare_cached("SELECT ab FROM pushes WHERE id = ?1")?
        .query_row([push], |r| r.get(0))?;
    parse_plan(json.as_deref())
}

/// Members still waiting for the winner.
pub fn waiting(conn: &Connection, push: PushId) -> Result<u64> {
    let n: i64 = conn
        .prepare_cached(&format!(
            "SELECT count(*) FROM deliveries INDEXED BY deliveries_waiting
             WHERE push_id = ?1 AND state = {PENDING} AND next_attempt_at = {REST_HELD}"
        ))?
        .query_row([push], |r| r.get(0))?;
    Ok(n.max(0) as u64)
}

/// The control group: members held out of the push.
pub fn holdout(conn: &Connection, push: PushId) -> Result<u64> {
    let n: i64 = conn
        .prepare_cached(&format!(
            "SELECT count(*) FROM deliveries INDEXED BY deliveries_skipped
             WHERE push_id = ?1 AND state = {SKIPPED} AND skip_reason = '{HOLDOUT}'"
        ))?
        .query_row([push], |r| r.get(0))?;
    Ok(n.max(0) as u64)
}

/// One variant's counters (the report's cells) and its clickers.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct VariantCounts {
    pub variant: String,
    pub counts: Counts,
    /// Recipients who clicked a tracked link.
    pub clicked: u64,
    /// The same, of the recipients sent before the winner was chosen (the
    /// test share): what the variants are compared on, as the winner's
    /// rest would otherwise weigh in with receipts still to come.
    pub test: Counts,
    pub test_clicked: u64,
}

impl VariantCounts {
    /// Its score on `metric`: recipients who read (interacted, clicked) of
    /// those sent successfully.
    pub fn score(&self, metric: Metric) -> Score {
        let c = &self.test;
        Score {
            variant: self.variant.clone(),
            hits: match metric {
                Metric::Read => c.read_and_interacted + c.read_only,
                Metric::Interacted => c.read_and_interacted + c.interacted_only,
                Metric::Clicked => self.test_clicked,
            },
            sent: c.sent,
        }
    }
}

/// Each variant's counters, in the plan's order (a variant nobody got
/// yet has zeros). One scan of the push's delivery rows.
pub fn counts(conn: &Connection, push: PushId, plan: &Plan) -> Result<Vec<VariantCounts>> {
    let mut out: Vec<VariantCounts> = plan
        .variants
        .iter()
        .map(|v| VariantCounts {
            variant: v.clone(),
            ..Default::default()
        })
        .collect();
    let at = |v: &str, out: &mut Vec<VariantCounts>| -> usize {
        match out.iter().position(|c| c.variant == v) {
            Some(i) => i,
            None => {
                out.push(VariantCounts {
                    variant: v.to_string(),
                    ..Default::default()
                });
                out.len() - 1
            }
        }
    };
    // Sent before the decision: the test share (all of it while undecided).
    let decided: Option<Millis> = conn
        .prepare_cached("SELECT ab_decided_at FROM pushes WHERE id = ?1")?
        .query_row([push], |r| r.get(0))?;
    const IN_TEST: &str = "(?2 IS NULL OR coalesce(d.sending_at, d.sent_at, 0) < ?2)";
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT d.variant, CASE WHEN d.state <= 1 THEN 0 ELSE d.state END s,
                d.read_at IS NOT NULL, d.interacted_at IS NOT NULL, {IN_TEST}, count(*)
         FROM deliveries d INDEXED BY deliveries_push
         WHERE d.push_id = ?1 AND d.variant IS NOT NULL GROUP BY 1, 2, 3, 4, 5"
    ))?;
    let mut rows = stmt.query(params![push, decided])?;
    while let Some(r) = rows.next()? {
        let v: String = r.get(0)?;
        let i = at(&v, &mut out);
        let n = r.get::<_, i64>(5)?.max(0) as u64;
        let (s, rd, ia, in_test) = (r.get(1)?, r.get(2)?, r.get(3)?, r.get::<_, bool>(4)?);
        out[i].counts.add(s, rd, ia, n);
        if in_test {
            out[i].test.add(s, rd, ia, n);
        }
    }
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT d.variant, {IN_TEST}, count(DISTINCT lc.delivery_id)
         FROM link_clicks lc JOIN deliveries d ON d.id = lc.delivery_id
         WHERE lc.push_id = ?1 AND d.variant IS NOT NULL GROUP BY 1, 2"
    ))?;
    let mut rows = stmt.query(params![push, decided])?;
    while let Some(r) = rows.next()? {
        let v: String = r.get(0)?;
        let i = at(&v, &mut out);
        let n = r.get::<_, i64>(2)?.max(0) as u64;
        out[i].clicked += n;
        if r.get::<_, bool>(1)? {
            out[i].test_clicked += n;
        }
    }
    Ok(out)
}

/// Records that the test share has all been sent: the winner is due at
/// `decide_at`. Only the first call sets it (a restart keeps the time).
pub fn mark_tested(conn: &Connection, push: PushId, decide_at: Millis) -> Result<Millis> {
    conn.prepare_cached(
        "UPDATE pushes SET ab_decide_at = ?2 WHERE id = ?1 AND ab_decide_at IS NULL",
    )?
    .execute(params![push, decide_at])?;
    Ok(conn
        .prepare_cached("SELECT ab_decide_at FROM pushes WHERE id = ?1")?
        .query_row([push], |r| r.get(0))?)
}

/// The decision: records `winner` (by `by`: "auto" or an admin) and
/// releases the members who waited, to be sent the winner. Decides once:
/// a push whose winner is chosen already is refused, and nothing changes.
/// Returns the members released.
pub fn decide(conn: &Connection, push: PushId, winner: &str, by: &str, at: Millis) -> Result<u64> {
    let changed = conn
        .prepare_cached(
            "UPDATE pushes SET ab_winner = ?2, ab_decided_at = ?3, ab_decided_by = ?4,
                ab_decide_at = coalesce(ab_decide_at, ?3)
             WHERE id = ?1 AND ab_winner IS NULL",
        )?
        .execute(params![push, winner, at, by])?;
    if changed == 0 {
        let (winner, by): (Option<String>, Option<String>) = conn
            .prepare_cached("SELECT ab_winner, ab_decided_by FROM pushes WHERE id = ?1")?
            .query_row([push], |r| Ok((r.get(0)?, r.get(1)?)))?;
        return Err(StoreError::Invalid(format!(
            "the winner of this push is chosen already: {} (by {})",
            winner.unwrap_or_default(),
            by.unwrap_or_default()
        )));
    }
    release(conn, push, winner)
}

/// Gives the members waiting for the winner `winner` and makes them due.
pub fn release(conn: &Connection, push: PushId, winner: &str) -> Result<u64> {
    Ok(conn
        .prepare_cached(&format!(
            "UPDATE deliveries INDEXED BY deliveries_waiting
             SET variant = ?2, next_attempt_at = NULL
             WHERE push_id = ?1 AND state = {PENDING} AND next_attempt_at = {REST_HELD}"
        ))?
        .execute(params![push, winner])? as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::variants::{Group, Test, WinnerMode};

    #[test]
    fn sql_groups_match_the_rust_groups() {
        let c = Connection::open_in_memory().unwrap();
        register_functions(&c).unwrap();
        c.execute_batch(
            "CREATE TABLE m (id INTEGER PRIMARY KEY, subscribed INTEGER);
             WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 3000)
             INSERT INTO m SELECT i, i % 10 != 0 FROM n;",
        )
        .unwrap();
        let plan = Plan {
            variants: vec!["a".into(), "b'c".into(), "d".into()],
            test: Some(Test {
                share: 0.3,
                wait_ms: 1,
                metric: Metric::Read,
                winner: WinnerMode::Auto,
            }),
            holdout: 0.1,
        };
        let k = columns(9, Some(&plan), "m.id", "m.subscribed");
        let sql = format!(
            "SELECT id, subscribed, {}, {}, {}, {} FROM m ORDER BY id",
            k.state, k.skip_reason, k.variant, k.next_attempt_at
        );
        let mut stmt = c.prepare(&sql).unwrap();
        let rows = stmt
            .query_map([], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, bool>(1)?,
                    r.get::<_, i64>(2)?,
                    r.get::<_, Option<String>>(3)?,
                    r.get::<_, Option<String>>(4)?,
                    r.get::<_, Option<i64>>(5)?,
                ))
            })
            .unwrap();
        for row in rows {
            let (id, sub, state, reason, variant, next) = row.unwrap();
            if !sub {
                assert_eq!(
                    (state, reason.as_deref(), &variant, next),
                    (SKIPPED, Some("unsubscribed"), &None, None)
                );
                continue;
            }
            match plan.group(9, id) {
                Group::Holdout => {
                    assert_eq!(
                        (state, reason.as_deref(), &variant, next),
                        (SKIPPED, Some(HOLDOUT), &None, None)
                    )
                }
                Group::Rest => {
                    assert_eq!((state, &variant, next), (PENDING, &None, Some(REST_HELD)))
                }
                Group::Variant(i) => assert_eq!(
                    (state, variant, next),
                    (PENDING, i.map(|i| plan.variants[i].clone()), None)
                ),
            }
        }
    }
}
