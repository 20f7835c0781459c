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
    let mut stmt = conn.prepare_cached(&list_sql(push.is_some(), member.is_some()))?;
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

/// The log's query (parameters: push, member, limit), for the filters given.
fn list_sql(push: bool, member: bool) -> String {
    let sent = DeliveryState::Sent as i64;
    let failed = DeliveryState::Failed as i64;
    let sending = DeliveryState::Sending as i64;
    // In-flight first attempts are `sending` through their group's claim.
    let state = super::deliveries::STATE_SQL;
    // Each side is limited first (by index order), so the log stays fast on
    // a million deliveries; sends are walked newest id first, which is the
    // order a push sends them in. Inbound events are too (they are inserted
    // as they are applied, stamped with that time: see schema migration 5),
    // or, filtered, their push or member index newest first.
    let inbound = match (push, member) {
        (false, false) => "ORDER BY e.id DESC",
        (true, false) => "WHERE e.push_id = ?1 ORDER BY e.at DESC",
        (false, true) => "WHERE e.member_id = ?2 ORDER BY e.at DESC",
        (true, true) => "WHERE e.member_id = ?2 AND e.push_id = ?1 ORDER BY e.at DESC",
    };
    format!(
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
                FROM events e {inbound} LIMIT ?3)
         ) ORDER BY at DESC LIMIT ?3"
    )
}

/// Deletes raw events older than the retention: the rowids below the
/// first event recorded at or after `older_than` (events are inserted in
/// time order), found by walking up from the oldest, so a prune reads about
/// what it deletes rather than the whole table. Never deletes a newer event.
pub fn prune(conn: &Connection, older_than: Millis) -> Result<u64> {
    Ok(conn.execute(
        "DELETE FROM events WHERE at < ?1 AND id < coalesce(
            (SELECT id FROM events WHERE at >= ?1 ORDER BY id LIMIT 1),
            (SELECT max(id) + 1 FROM events))",
        [older_than],
    )? as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Store;

    /// Events 1..=6 at 10, 20, …, alternating between two pushes and members.
    fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("e.db")).unwrap();
        store
            .write_blocking(|c| {
                for i in 1..=6i64 {
                    c.execute(
                        "INSERT INTO events (id, at, channel, kind, dedupe_key, member_id, push_id, summary)
                         VALUES (?1, ?1 * 10, 'wa', 'status_read', 'k' || ?1, 100 + ?1 % 2, 200 + ?1 % 2, 's' || ?1)",
                        [i],
                    )?;
                }
                Ok(())
            })
            .unwrap();
        (dir, store)
    }

    fn times(
        store: &Store,
        push: Option<PushId>,
        member: Option<MemberId>,
        limit: u32,
    ) -> Vec<i64> {
        store
            .read_blocking(move |c| list(c, push, member, limit))
            .unwrap()
            .iter()
            .map(|e| {
                assert_eq!(e.direction, "in");
                e.at_ms
            })
            .collect()
    }

    #[test]
    fn inbound_events_are_listed_newest_first_with_and_without_filters() {
        let (_dir, store) = store();
        assert_eq!(times(&store, None, None, 50), vec![60, 50, 40, 30, 20, 10]);
        assert_eq!(times(&store, None, None, 2), vec![60, 50]);
        assert_eq!(times(&store, Some(201), None, 50), vec![50, 30, 10]);
        assert_eq!(times(&store, None, Some(100), 2), vec![60, 40]);
        assert_eq!(times(&store, Some(200), Some(100), 50), vec![60, 40, 20]);
        assert_eq!(times(&store, Some(200), Some(101), 50), Vec::<i64>::new());
        store.close();
    }

    /// The inbound side reads an index or the rowids in order, never
    /// scanning or sorting the whole table (there may be millions of events).
    #[test]
    fn the_log_reads_events_in_index_order() {
        let (_dir, store) = store();
        for (push, member) in [(false, false), (true, false), (false, true), (true, true)] {
            let plan: Vec<String> = store
                .read_blocking(move |c| {
                    let sql = format!("EXPLAIN QUERY PLAN {}", list_sql(push, member));
                    let mut stmt = c.prepare(&sql)?;
                    let rows = stmt.query_map(params![1, 2, 50], |r| r.get::<_, String>(3))?;
                    Ok(rows.collect::<rusqlite::Result<_>>()?)
                })
                .unwrap();
            let events: Vec<&String> = plan.iter().filter(|s| s.contains(" e")).collect();
            assert_eq!(events.len(), 1, "{plan:?}");
            let step = events[0].as_str();
            match (push, member) {
                (false, false) => assert_eq!(step, "SCAN e", "{plan:?}"),
                _ => assert!(step.starts_with("SEARCH e USING INDEX"), "{plan:?}"),
            }
            // Only the merge of the two limited sides is sorted.
            let sorts = plan.iter().filter(|s| s.contains("TEMP B-TREE")).count();
            assert_eq!(sorts, 1, "{plan:?}");
        }
        store.close();
    }

    fn left(store: &Store) -> Vec<i64> {
        store
            .read_blocking(|c| {
                Ok(c.prepare("SELECT at FROM events ORDER BY id")?
                    .query_map([], |r| r.get(0))?
                    .collect::<rusqlite::Result<_>>()?)
            })
            .unwrap()
    }

    #[test]
    fn pruning_deletes_the_events_older_than_the_cutoff() {
        let (_dir, store) = store();
        let prune = |older_than| store.write_blocking(move |c| prune(c, older_than)).unwrap();
        assert_eq!(prune(5), 0);
        assert_eq!(prune(25), 2);
        assert_eq!(left(&store), vec![30, 40, 50, 60]);
        assert_eq!(prune(30), 0);
        assert_eq!(prune(1000), 4, "all of them");
        assert_eq!(left(&store), Vec::<i64>::new());
        store.close();
    }

    #[test]
    fn pruning_never_deletes_an_event_newer_than_the_cutoff() {
        // The clock stepped back after event 2: events are then not quite in
        // time order, and the ones past the first newer event wait.
        let (_dir, store) = store();
        store
            .write_blocking(|c| Ok(c.execute("UPDATE events SET at = 15 WHERE id = 3", [])?))
            .unwrap();
        assert_eq!(store.write_blocking(|c| prune(c, 18)).unwrap(), 1);
        assert_eq!(left(&store), vec![20, 15, 40, 50, 60]);
        assert_eq!(store.write_blocking(|c| prune(c, 45)).unwrap(), 3);
        assert_eq!(left(&store), vec![50, 60]);
        store.close();
    }
}
