//! The rows of the detailed report: every recipient of a push in delivery
//! order, read in one pass (the CSV is written by `analytics::export`).

use super::{Result, deliveries, links};
use crate::model::{DeliveryState, Millis, PushId};
use rusqlite::Connection;

/// One recipient's row of the detailed report.
#[derive(Debug, Clone, PartialEq)]
pub struct ExportRow {
    pub delivery_id: i64,
    pub member_id: i64,
    pub channel: String,
    pub channel_user_id: String,
    pub name: String,
    /// The state's name (or its code, should an unknown one be stored).
    pub state: String,
    pub attempts: i64,
    pub error_class: String,
    pub error_code: String,
    pub error_message: String,
    pub skip_reason: String,
    pub provider_message_id: String,
    pub sent_at: Option<Millis>,
    pub delivered_at: Option<Millis>,
    pub read_at: Option<Millis>,
    pub interacted_at: Option<Millis>,
    pub failed_at: Option<Millis>,
    /// The recipient's first click on a tracked link.
    pub clicked_at: Option<Millis>,
    /// The A/B variant sent ("holdout" for the control group).
    pub variant: String,
}

/// Calls `each` with every recipient of `push` in delivery id order until it
/// returns false; returns the rows handed over.
pub fn for_each_row(
    conn: &Connection,
    push: PushId,
    mut each: impl FnMut(ExportRow) -> Result<bool>,
) -> Result<u64> {
    // Walk the push's id range in rowid order rather than its (push, state)
    // index: through the index the rows come grouped by state, and putting
    // a million of them back in id order is an in-memory sort the size of
    // the export. A push's deliveries are inserted together, so its range
    // holds few rows of other pushes.
    let (first, last): (Option<i64>, Option<i64>) = conn
        .prepare_cached("SELECT min(id), max(id) FROM deliveries WHERE push_id = ?1")?
        .query_row([push], |r| Ok((r.get(0)?, r.get(1)?)))?;
    let mut stmt = conn.prepare(&format!(
        "SELECT d.id, d.member_id, coalesce(d.channel, m.channel), m.channel_user_id, m.name, {}, d.attempts,
                d.error_class, d.error_code, d.error_message, d.skip_reason, d.provider_message_id,
                d.sent_at, d.delivered_at, d.read_at, d.interacted_at, d.failed_at,
                coalesce(d.variant, CASE WHEN d.skip_reason = '{HOLDOUT}' THEN '{HOLDOUT}' END)
         FROM deliveries d NOT INDEXED JOIN members m ON m.id = d.member_id
         WHERE d.id BETWEEN ?2 AND ?3 AND d.push_id = ?1 ORDER BY d.id",
        deliveries::STATE_SQL,
        HOLDOUT = crate::variants::HOLDOUT,
    ))?;
    let mut rows = stmt.query(rusqlite::params![
        push,
        first.unwrap_or(0),
        last.unwrap_or(-1)
    ])?;
    // First clicks, walked beside the deliveries (both in delivery order)
    // rather than looked up row by row.
    let mut clicks_stmt = conn.prepare(links::FIRST_CLICKS_SQL)?;
    let mut clicks = clicks_stmt.query([push])?;
    let mut next_click: Option<(i64, Millis)> = match clicks.next()? {
        Some(r) => Some((r.get(0)?, r.get(1)?)),
        None => None,
    };
    let mut n = 0u64;
    while let Some(r) = rows.next()? {
        let opt = |i: usize| -> rusqlite::Result<String> {
            Ok(r.get::<_, Option<String>>(i)?.unwrap_or_default())
        };
        let state: i64 = r.get(5)?;
        let id: i64 = r.get(0)?;
        let mut clicked_at = None;
        while let Some((d, at)) = next_click
            && d <= id
        {
            if d == id {
                clicked_at = Some(at);
            }
            next_click = match clicks.next()? {
                Some(c) => Some((c.get(0)?, c.get(1)?)),
                None => None,
            };
        }
        let row = ExportRow {
            delivery_id: id,
            member_id: r.get(1)?,
            channel: opt(2)?,
            channel_user_id: opt(3)?,
            name: opt(4)?,
            state: DeliveryState::from_code(state)
                .map(|s| s.as_str().to_string())
                .unwrap_or_else(|| state.to_string()),
            attempts: r.get(6)?,
            error_class: opt(7)?,
            error_code: opt(8)?,
            error_message: opt(9)?,
            skip_reason: opt(10)?,
            provider_message_id: opt(11)?,
            sent_at: r.get(12)?,
            delivered_at: r.get(13)?,
            read_at: r.get(14)?,
            interacted_at: r.get(15)?,
            failed_at: r.get(16)?,
            clicked_at,
            variant: opt(17)?,
        };
        n += 1;
        if !each(row)? {
            break;
        }
    }
    Ok(n)
}
