//! The message log: inbound events (kept for `event_retention`) and the sends
//! recorded in deliveries, newest first.

use super::Result;
use crate::model::{DeliveryState, MemberId, Millis, PushId, fmt_ms};
use rusqlite::{Connection, params};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogEntry {
    pub at: String,
    pub at_ms: Millis,
    /// "in" (webhook / receipt) or "out" (a send).
    pub direction: String,
    pub channel: String,
    pub kind: String,
    pub member_id: Option<MemberId>,
    pub push_id: Option<PushId>,
    pub delivery_id: Option<i64>,
    pub detail: String,
}

/// Newest first: sends (from deliveries) merged with inbound events.
pub fn list(
    conn: &Connection,
    push: Option<PushId>,
    member: Option<MemberId>,
    limit: u32,
) -> Result<Vec<LogEntry>> {
    let sent = DeliveryState::Sent as i64;
    let failed = DeliveryState::Failed as i64;
    let sending = DeliveryState::Sending as i64;
    // In-flight first attempts are `sending` through their group's claim.
    let state = super::deliveries::STATE_SQL;
    // Each side is limited first (by index order), so the log stays fast on
    // a million deliveries; sends are walked newest id first, which is the
    // order a push sends them in.
    let sql = format!(
        "SELECT at, dir, channel, kind, member_id, push_id, delivery_id, detail FROM (
            SELECT * FROM (
              SELECT coalesce(d.sent_at, d.failed_at, d.sending_at,
                              (SELECT c.at FROM claims c WHERE c.push_id = d.push_id AND d.id BETWEEN c.first_id AND c.last_id)) AS at,
                     'out' AS dir, coalesce(d.channel, '') AS channel,
                     CASE d.state WHEN {sent} THEN 'sent' WHEN {failed} THEN 'failed' ELSE 'sending' END AS kind,
                     d.member_id, d.push_id, d.id AS delivery_id,
                     CASE WHEN d.state = {failed} THEN d.error_class || ' ' || coalesce(d.error_code, '') || ': ' || coalesce(d.error_message, '')
                          ELSE coalesce(d.provider_message_id, '') END AS detail
                FROM deliveries d
               WHERE (d.sending_at IS NOT NULL OR {state} = {sending}) AND (?1 IS NULL OR d.push_id = ?1) AND (?2 IS NULL OR d.member_id = ?2)
               ORDER BY d.id DESC LIMIT ?3)
            UNION ALL
            SELECT * FROM (
              SELECT e.at, 'in', e.channel, e.kind, e.member_id, e.push_id, e.delivery_id, coalesce(e.summary, '')
                FROM events e
               WHERE (?1 IS NULL OR e.push_id = ?1) AND (?2 IS NULL OR e.member_id = ?2)
               ORDER BY e.at DESC LIMIT ?3)
         ) ORDER BY at DESC LIMIT ?3"
    );
    let mut stmt = conn.prepare_cached(&sql)?;
    let rows = stmt.query_map(params![push, member, limit], |r| {
        let at: Millis = r.get(0)?;
        Ok(LogEntry {
            at: fmt_ms(at),
            at_ms: at,
            direction: r.get(1)?,
            channel: r.get(2)?,
            kind: r.get(3)?,
            member_id: r.get(4)?,
            push_id: r.get(5)?,
            delivery_id: r.get(6)?,
            detail: r.get(7)?,
        })
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// Deletes raw events older than the retention.
pub fn prune(conn: &Connection, older_than: Millis) -> Result<u64> {
    Ok(conn.execute("DELETE FROM events WHERE at < ?1", [older_than])? as u64)
}
