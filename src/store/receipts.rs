//! Applying normalized inbound events to deliveries and members.
//!
//! Idempotent: every event is first recorded in `events` under a unique key,
//! so a duplicated webhook changes nothing. Order-independent: timestamps are
//! only ever filled in (`coalesce`), never moved back; a status that arrives
//! before we recorded the send is kept and applied when the send is recorded.

use crate::model::{
    DeliveryId, DeliveryState, ErrorClass, InboundEvent, Millis, Platform, PushId, StatusUpdate,
    now_ms,
};
use crate::store::{Result, StoreError};
use rusqlite::{Connection, OptionalExtension, params};
use serde::{Deserialize, Serialize};

const SENT: i64 = DeliveryState::Sent as i64;
const FAILED: i64 = DeliveryState::Failed as i64;

/// What applying needs to know about the channel the events came from.
#[derive(Debug, Clone)]
pub struct ApplyContext {
    pub channel: String,
    pub platform: Platform,
    pub attribution_window_ms: i64,
    /// Upper-cased.
    pub opt_out: Vec<String>,
    pub opt_in: Vec<String>,
    pub default_locale: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Applied {
    pub events: u64,
    pub duplicates: u64,
    pub deliveries_changed: u64,
    pub members_created: u64,
}

fn dedupe_key(e: &InboundEvent) -> String {
    match e {
        InboundEvent::Status {
            provider_message_id,
            ..
        } => provider_message_id.clone(),
        InboundEvent::Watermark {
            user, watermark, ..
        } => format!("{user}:{watermark}"),
        InboundEvent::Message { id, .. } => id.clone(),
        InboundEvent::Unsubscribed { user, at } => format!("{user}:{at}"),
    }
}

/// An event with what recording it takes besides the database (its dedupe
/// key, its summary for the message log), worked out before it is queued:
/// the writer is the one thread every webhook waits on.
#[derive(Debug, Clone, PartialEq)]
pub struct Prepared {
    pub event: InboundEvent,
    key: String,
    summary: String,
}

impl Prepared {
    pub fn new(event: InboundEvent) -> Prepared {
        Prepared {
            key: dedupe_key(&event),
            summary: serde_json::to_string(&event).unwrap_or_default(),
            event,
        }
    }
}

/// One verified webhook's events (or a run of simulator receipts from one
/// channel), with the raw payload kept alongside them.
pub struct Webhook {
    pub ctx: std::sync::Arc<ApplyContext>,
    pub events: Vec<Prepared>,
    pub raw: Option<String>,
}

/// [`apply_prepared`] for one webhook (for [`crate::store::Store::write_each`]).
pub fn apply_webhook(conn: &Connection, w: &Webhook) -> Result<Applied> {
    apply_prepared(conn, &w.ctx, &w.events, w.raw.as_deref())
}

/// Applies a batch (one webhook, or a run of simulator receipts) in the
/// caller's transaction. `raw` is stored with the first event recorded.
pub fn apply(
    conn: &Connection,
    ctx: &ApplyContext,
    events: &[InboundEvent],
    raw: Option<&str>,
) -> Result<Applied> {
    let prepared: Vec<Prepared> = events.iter().cloned().map(Prepared::new).collect();
    apply_prepared(conn, ctx, &prepared, raw)
}

/// [`apply`] for events prepared beforehand.
pub fn apply_prepared(
    conn: &Connection,
    ctx: &ApplyContext,
    events: &[Prepared],
    raw: Option<&str>,
) -> Result<Applied> {
    let mut out = Applied::default();
    let mut raw = raw;
    for e in events {
        if apply_one(conn, ctx, e, raw, &mut out)? {
            raw = None;
        }
    }
    Ok(out)
}

/// Applies one event unless it was seen before; true when it was recorded.
fn apply_one(
    conn: &Connection,
    ctx: &ApplyContext,
    prepared: &Prepared,
    raw: Option<&str>,
    out: &mut Applied,
) -> Result<bool> {
    let e = &prepared.event;
    let link = match e {
        InboundEvent::Status {
            provider_message_id,
            update,
            at,
            ..
        } => {
            // The commonest event by far: one lookup, and the unique index
            // of `events` decides whether it is new (no separate query).
            let link = find_delivery(conn, &ctx.channel, provider_message_id)?;
            if !record(conn, ctx, prepared, &link, raw)? {
                out.duplicates += 1;
                return Ok(false);
            }
            out.events += 1;
            if let Some(id) = link.delivery {
                out.deliveries_changed += status_update(conn, ctx, id, update, *at)? as u64;
            }
            return Ok(true);
        }
        // Other events change members before they know what they link to,
        // so they ask first.
        _ if seen(conn, ctx, prepared)? => {
            out.duplicates += 1;
            return Ok(false);
        }
        InboundEvent::Watermark {
            user,
            read,
            watermark,
            mids,
            at,
        } => apply_watermark(conn, ctx, user, *read, *watermark, mids, *at, out)?,
        InboundEvent::Message {
            user,
            name,
            text,
            payload,
            context_id,
            at,
            ..
        } => apply_message(
            conn,
            ctx,
            user,
            name.as_deref(),
            text.as_deref(),
            payload.is_some(),
            context_id.as_deref(),
            *at,
            out,
        )?,
        InboundEvent::Unsubscribed { user, at } => {
            let member = upsert_member(conn, ctx, user, None, *at, false, out)?;
            conn.prepare_cached(
                "UPDATE members SET subscribed = 0, updated_at = ?2 WHERE id = ?1",
            )?
            .execute(params![member, now_ms()])?;
            Link {
                member: Some(member),
                ..Link::default()
            }
        }
    };
    out.events += 1;
    record(conn, ctx, prepared, &link, raw)?;
    Ok(true)
}

fn seen(conn: &Connection, ctx: &ApplyContext, e: &Prepared) -> Result<bool> {
    Ok(conn
        .prepare_cached(
            "SELECT 1 FROM events WHERE channel = ?1 AND dedupe_key = ?2 AND kind = ?3",
        )?
        .exists(params![ctx.channel, e.key, e.event.kind()])?)
}

/// Records the event, with what it touched (the message log links it),
/// unless one with the same key was recorded before: false for a duplicate.
fn record(
    conn: &Connection,
    ctx: &ApplyContext,
    e: &Prepared,
    link: &Link,
    raw: Option<&str>,
) -> Result<bool> {
    let n = conn
        .prepare_cached(
            "INSERT INTO events (at, channel, kind, dedupe_key, member_id, delivery_id, push_id, summary, raw)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
             ON CONFLICT (channel, dedupe_key, kind) WHERE dedupe_key IS NOT NULL DO NOTHING",
        )?
        .execute(params![
            now_ms(),
            ctx.channel,
            e.event.kind(),
            e.key,
            link.member,
            link.delivery,
            link.push,
            e.summary,
            raw
        ])?;
    Ok(n == 1)
}

/// The delivery a provider message id names on this channel, with its
/// member and push; an empty link when it is not (yet) ours.
fn find_delivery(conn: &Connection, channel: &str, provider_id: &str) -> Result<Link> {
    Ok(conn
        .prepare_cached(
            "SELECT id, member_id, push_id FROM deliveries
              WHERE provider_message_id = ?1 AND channel = ?2 LIMIT 1",
        )?
        .query_row(params![provider_id, channel], |r| {
            Ok(Link {
                delivery: Some(r.get(0)?),
                member: Some(r.get(1)?),
                push: Some(r.get(2)?),
            })
        })
        .optional()?
        .unwrap_or_default())
}

/// Which member, delivery and push an event touched, for the message log.
#[derive(Default)]
struct Link {
    member: Option<i64>,
    delivery: Option<DeliveryId>,
    push: Option<PushId>,
}

/// Links an early status to the delivery it turned out to be for.
fn link_early(conn: &Connection, event_id: i64, delivery: DeliveryId) -> Result<()> {
    conn.prepare_cached(
        "UPDATE events SET delivery_id = ?2,
                member_id = (SELECT member_id FROM deliveries WHERE id = ?2),
                push_id = (SELECT push_id FROM deliveries WHERE id = ?2)
          WHERE id = ?1",
    )?
    .execute(params![event_id, delivery])?;
    Ok(())
}

/// Async failures reported by webhooks, classified like synchronous ones.
pub fn classify_async_failure(platform: Platform, code: &str) -> ErrorClass {
    match (platform, code) {
        (Platform::Whatsapp, "131047") => ErrorClass::OutsideWindow,
        (Platform::Whatsapp, "131026" | "131030" | "131051") => ErrorClass::InvalidRecipient,
        (Platform::Whatsapp, "130429" | "131056" | "131049" | "131048") => ErrorClass::RateLimited,
        (Platform::Whatsapp, "190") => ErrorClass::Auth,
        (Platform::Whatsapp, "131000" | "131016" | "2") => ErrorClass::Transient,
        (Platform::Wechat, c) if c.contains("block") => ErrorClass::Blocked,
        (_, c) if c.contains("block") => ErrorClass::Blocked,
        _ => ErrorClass::Rejected,
    }
}

/// A status for one message id (from a watermark's list).
fn apply_status(
    conn: &Connection,
    ctx: &ApplyContext,
    provider_id: &str,
    update: &StatusUpdate,
    at: Millis,
    out: &mut Applied,
) -> Result<()> {
    // Not (yet) ours: nothing to change.
    if let Some(id) = find_delivery(conn, &ctx.channel, provider_id)?.delivery {
        out.deliveries_changed += status_update(conn, ctx, id, update, at)? as u64;
    }
    Ok(())
}

fn status_update(
    conn: &Connection,
    ctx: &ApplyContext,
    id: DeliveryId,
    update: &StatusUpdate,
    at: Millis,
) -> Result<usize> {
    let now = now_ms();
    Ok(match update {
        StatusUpdate::Sent => 0,
        StatusUpdate::Delivered => conn
            .prepare_cached(&format!(
                "UPDATE deliveries SET delivered_at = coalesce(delivered_at, ?2), updated_at = ?3
                 WHERE id = ?1 AND state = {SENT} AND delivered_at IS NULL"
            ))?
            .execute(params![id, at, now])?,
        StatusUpdate::Read => conn
            .prepare_cached(&format!(
                "UPDATE deliveries SET read_at = coalesce(read_at, ?2), delivered_at = coalesce(delivered_at, ?2), updated_at = ?3
                 WHERE id = ?1 AND state = {SENT} AND read_at IS NULL"
            ))?
            .execute(params![id, at, now])?,
        StatusUpdate::Failed { code, message } => {
            // Only a message not yet seen by the user can turn into a failure:
            // statuses never go backwards.
            let class = classify_async_failure(ctx.platform, code);
            conn.prepare_cached(&format!(
                "UPDATE deliveries SET state = {FAILED}, error_class = ?2, error_code = ?3, error_message = ?4,
                    failed_at = ?5, updated_at = ?6
                 WHERE id = ?1 AND state = {SENT} AND delivered_at IS NULL AND read_at IS NULL AND interacted_at IS NULL"
            ))?
            .execute(params![id, class.as_str(), code, message, at, now])?
        }
    })
}

/// Applies statuses that arrived before their sends were recorded (called
/// in the transaction that records the sends). `sent` pairs each provider
/// message id with its delivery; one indexed lookup finds every early status
/// among them (normally none).
pub fn apply_early_statuses(
    conn: &Connection,
    ctx_channel: &str,
    platform: Platform,
    sent: &[(&str, DeliveryId)],
) -> Result<()> {
    if sent.is_empty() {
        return Ok(());
    }
    // The terms of the `events_early` partial index, which both queries use.
    const EARLY: &str = "e.delivery_id IS NULL
        AND e.kind IN ('status_sent', 'status_delivered', 'status_read', 'status_failed')";
    let any: bool = conn
        .prepare_cached(&format!(
            "SELECT EXISTS (SELECT 1 FROM events e INDEXED BY events_early WHERE e.channel = ?1 AND {EARLY})"
        ))?
        .query_row([ctx_channel], |r| r.get(0))?;
    if !any {
        return Ok(());
    }
    let json = serde_json::to_string(sent)
        .map_err(|e| StoreError::Invalid(format!("cannot encode sends: {e}")))?;
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT e.id, e.summary, j.value ->> 1 FROM json_each(?2) j
           CROSS JOIN events e INDEXED BY events_early
             ON e.channel = ?1 AND e.dedupe_key = j.value ->> 0
          WHERE {EARLY}"
    ))?;
    let early: Vec<(i64, String, DeliveryId)> = stmt
        .query_map(params![ctx_channel, json], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })?
        .collect::<rusqlite::Result<_>>()?;
    if early.is_empty() {
        return Ok(());
    }
    let ctx = ApplyContext {
        channel: ctx_channel.to_string(),
        platform,
        attribution_window_ms: 0,
        opt_out: vec![],
        opt_in: vec![],
        default_locale: String::new(),
    };
    for (event_id, summary, delivery) in early {
        if let Ok(InboundEvent::Status { update, at, .. }) = serde_json::from_str(&summary) {
            status_update(conn, &ctx, delivery, &update, at)?;
            link_early(conn, event_id, delivery)?;
        }
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn apply_watermark(
    conn: &Connection,
    ctx: &ApplyContext,
    user: &str,
    read: bool,
    watermark: Millis,
    mids: &[String],
    at: Millis,
    out: &mut Applied,
) -> Result<Link> {
    let now = now_ms();
    let member: Option<i64> = conn
        .prepare_cached("SELECT id FROM members WHERE channel = ?1 AND channel_user_id = ?2")?
        .query_row(params![ctx.channel, user], |r| r.get(0))
        .optional()?;
    if let Some(m) = member {
        let n = conn
            .prepare_cached(&format!(
                "UPDATE deliveries SET delivered_at = coalesce(delivered_at, ?3),
                    read_at = CASE WHEN ?4 THEN coalesce(read_at, ?3) ELSE read_at END, updated_at = ?5
                 WHERE member_id = ?1 AND channel = ?2 AND state = {SENT} AND sent_at <= ?3
                   AND (delivered_at IS NULL OR (?4 AND read_at IS NULL))"
            ))?
            .execute(params![m, ctx.channel, watermark, read, now])?;
        out.deliveries_changed += n as u64;
    }
    let update = if read {
        StatusUpdate::Read
    } else {
        StatusUpdate::Delivered
    };
    for mid in mids {
        apply_status(conn, ctx, mid, &update, at, out)?;
    }
    Ok(Link {
        member,
        ..Link::default()
    })
}

/// Finds or creates the member an inbound message comes from, refreshing
/// `last_interaction_at` (which opens the service window).
fn upsert_member(
    conn: &Connection,
    ctx: &ApplyContext,
    user: &str,
    name: Option<&str>,
    at: Millis,
    interaction: bool,
    out: &mut Applied,
) -> Result<i64> {
    let found: Option<i64> = conn
        .prepare_cached("SELECT id FROM members WHERE channel = ?1 AND channel_user_id = ?2")?
        .query_row(params![ctx.channel, user], |r| r.get(0))
        .optional()?;
    let now = now_ms();
    let last = interaction.then_some(at);
    match found {
        Some(id) => {
            conn.prepare_cached(
                "UPDATE members SET
                    last_interaction_at = CASE WHEN ?2 IS NULL THEN last_interaction_at
                                               ELSE max(coalesce(last_interaction_at, 0), ?2) END,
                    name = CASE WHEN name = '' AND ?3 IS NOT NULL THEN ?3 ELSE name END,
                    updated_at = ?4
                 WHERE id = ?1",
            )?
            .execute(params![id, last, name, now])?;
            Ok(id)
        }
        None => {
            conn.prepare_cached(
                // Timezone unknown: '' ([policy] default_timezone applies).
                "INSERT INTO members (channel, channel_user_id, name, locale, timezone, subscribed, last_interaction_at, created_at, updated_at)
                 VALUES (?1, ?2, ?3, ?4, '', 1, ?5, ?6, ?6)",
            )?
            .execute(params![ctx.channel, user, name.unwrap_or(""), ctx.default_locale, last, now])?;
            out.members_created += 1;
            Ok(conn.last_insert_rowid())
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn apply_message(
    conn: &Connection,
    ctx: &ApplyContext,
    user: &str,
    name: Option<&str>,
    text: Option<&str>,
    is_click: bool,
    context_id: Option<&str>,
    at: Millis,
    out: &mut Applied,
) -> Result<Link> {
    let member = upsert_member(conn, ctx, user, name, at, true, out)?;
    let keyword = text.map(|t| t.trim().to_uppercase()).unwrap_or_default();
    if !is_click && ctx.opt_out.contains(&keyword) {
        conn.prepare_cached("UPDATE members SET subscribed = 0, updated_at = ?2 WHERE id = ?1")?
            .execute(params![member, now_ms()])?;
        return Ok(Link {
            member: Some(member),
            ..Link::default()
        });
    }
    if !is_click && ctx.opt_in.contains(&keyword) {
        conn.prepare_cached("UPDATE members SET subscribed = 1, updated_at = ?2 WHERE id = ?1")?
            .execute(params![member, now_ms()])?;
    }
    // The reply/click counts for the delivery it answers, else the latest
    // push delivery to this member within the attribution window.
    let by_context: Option<(DeliveryId, PushId)> = match context_id {
        Some(cid) => conn
            .prepare_cached(&format!(
                "SELECT id, push_id FROM deliveries WHERE provider_message_id = ?1 AND channel = ?2 AND state = {SENT} LIMIT 1"
            ))?
            .query_row(params![cid, ctx.channel], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?,
        None => None,
    };
    let target = match by_context {
        Some(id) => Some(id),
        None => conn
            .prepare_cached(&format!(
                "SELECT id, push_id FROM deliveries WHERE member_id = ?1 AND state = {SENT}
                   AND sent_at >= ?2 AND sent_at <= ?3
                 ORDER BY sent_at DESC LIMIT 1"
            ))?
            .query_row(
                params![member, at - ctx.attribution_window_ms, at + 60_000],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?,
    };
    if let Some((id, _)) = target {
        let n = conn
            .prepare_cached(&format!(
                "UPDATE deliveries SET interacted_at = coalesce(interacted_at, ?2), updated_at = ?3
                 WHERE id = ?1 AND state = {SENT} AND interacted_at IS NULL"
            ))?
            .execute(params![id, at, now_ms()])?;
        out.deliveries_changed += n as u64;
    }
    Ok(Link {
        member: Some(member),
        delivery: target.map(|(id, _)| id),
        push: target.map(|(_, push)| push),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Store;

    fn ctx() -> ApplyContext {
        ApplyContext {
            channel: "wa".into(),
            platform: Platform::Whatsapp,
            attribution_window_ms: 72 * 3600 * 1000,
            opt_out: vec!["STOP".into()],
            opt_in: vec![],
            default_locale: "en".into(),
        }
    }

    fn status(pid: &str, update: StatusUpdate, at: Millis) -> InboundEvent {
        InboundEvent::Status {
            provider_message_id: pid.into(),
            update,
            user: Some("u1".into()),
            at,
        }
    }

    /// Push 7 sent `wamid.1` to member 3 (delivery 5); `wamid.2` is not ours.
    fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("a.db")).unwrap();
        store
            .write_blocking(|c| {
                c.execute_batch(&format!(
                    "INSERT INTO members (id, channel, channel_user_id, name, locale, tags, created_at, updated_at)
                     VALUES (3, 'wa', 'u1', 'A', 'en', '', 0, 0);
                     INSERT INTO deliveries (id, push_id, member_id, state, channel, attempts, provider_message_id, sent_at)
                     VALUES (5, 7, 3, {SENT}, 'wa', 1, 'wamid.1', 100);"
                ))?;
                Ok(())
            })
            .unwrap();
        (dir, store)
    }

    /// (delivered_at, read_at) of delivery 5, and every event as
    /// (kind, dedupe_key, member, delivery, push, raw).
    type Events = Vec<(
        String,
        String,
        Option<i64>,
        Option<i64>,
        Option<i64>,
        Option<String>,
    )>;

    fn state(store: &Store) -> ((Option<i64>, Option<i64>), Events) {
        store
            .read_blocking(|c| {
                let d = c.query_row(
                    "SELECT delivered_at, read_at FROM deliveries WHERE id = 5",
                    [],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )?;
                let e = c
                    .prepare(
                        "SELECT kind, dedupe_key, member_id, delivery_id, push_id, raw FROM events ORDER BY id",
                    )?
                    .query_map([], |r| {
                        Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?))
                    })?
                    .collect::<rusqlite::Result<_>>()?;
                Ok((d, e))
            })
            .unwrap()
    }

    #[test]
    fn a_duplicate_in_the_same_batch_changes_nothing() {
        let (_dir, store) = store();
        let delivered = status("wamid.1", StatusUpdate::Delivered, 200);
        let read = status("wamid.1", StatusUpdate::Read, 300);
        let applied = store
            .write_blocking(move |c| {
                // Two webhooks in one store job, the second repeating the first.
                let first = apply(c, &ctx(), &[delivered.clone(), read.clone()], Some("one"))?;
                let again = apply(c, &ctx(), &[read, delivered], Some("two"))?;
                Ok((first, again))
            })
            .unwrap();
        assert_eq!(
            applied.0,
            Applied {
                events: 2,
                duplicates: 0,
                deliveries_changed: 2,
                members_created: 0
            }
        );
        assert_eq!(
            applied.1,
            Applied {
                events: 0,
                duplicates: 2,
                deliveries_changed: 0,
                members_created: 0
            }
        );
        let (times, events) = state(&store);
        assert_eq!(times, (Some(200), Some(300)));
        let linked = |kind: &str, raw: Option<&str>| {
            (
                kind.to_string(),
                "wamid.1".to_string(),
                Some(3),
                Some(5),
                Some(7),
                raw.map(str::to_string),
            )
        };
        // The raw payload goes with the first event recorded.
        assert_eq!(
            events,
            vec![
                linked("status_delivered", Some("one")),
                linked("status_read", None)
            ]
        );
        store.close();
    }

    #[test]
    fn a_repeated_status_within_one_webhook_counts_once() {
        let (_dir, store) = store();
        let delivered = status("wamid.1", StatusUpdate::Delivered, 200);
        let later = status("wamid.1", StatusUpdate::Delivered, 250);
        let applied = store
            .write_blocking(move |c| apply(c, &ctx(), &[delivered, later], Some("raw")))
            .unwrap();
        assert_eq!((applied.events, applied.duplicates), (1, 1));
        let (times, events) = state(&store);
        assert_eq!(times, (Some(200), None), "the first one counts");
        assert_eq!(events.len(), 1);
        store.close();
    }

    #[test]
    fn an_early_status_is_kept_unlinked_and_applied_when_the_send_is_recorded() {
        let (_dir, store) = store();
        let early = status("wamid.2", StatusUpdate::Read, 400);
        let applied = store
            .write_blocking({
                let early = early.clone();
                move |c| apply(c, &ctx(), &[early], Some("early"))
            })
            .unwrap();
        assert_eq!((applied.events, applied.deliveries_changed), (1, 0));
        let (_, events) = state(&store);
        assert_eq!(
            events,
            vec![(
                "status_read".into(),
                "wamid.2".into(),
                None,
                None,
                None,
                Some("early".into())
            )]
        );
        // Its duplicate is still a duplicate while it waits.
        let again = store
            .write_blocking(move |c| apply(c, &ctx(), &[early], None))
            .unwrap();
        assert_eq!(again.duplicates, 1);
        // The send is recorded: delivery 6 of push 7 to member 3.
        store
            .write_blocking(|c| {
                c.execute_batch(&format!(
                    "INSERT INTO deliveries (id, push_id, member_id, state, channel, attempts, provider_message_id, sent_at)
                     VALUES (6, 7, 3, {SENT}, 'wa', 1, 'wamid.2', 100);"
                ))?;
                apply_early_statuses(c, "wa", Platform::Whatsapp, &[("wamid.2", 6)])
            })
            .unwrap();
        type Linked = (Option<i64>, Option<i64>, Option<i64>);
        let (read_at, linked): (Option<i64>, Linked) = store
            .read_blocking(|c| {
                Ok(c.query_row(
                    "SELECT d.read_at, e.member_id, e.delivery_id, e.push_id
                       FROM deliveries d, events e WHERE d.id = 6 AND e.dedupe_key = 'wamid.2'",
                    [],
                    |r| Ok((r.get(0)?, (r.get(1)?, r.get(2)?, r.get(3)?))),
                )?)
            })
            .unwrap();
        assert_eq!(read_at, Some(400));
        assert_eq!(linked, (Some(3), Some(6), Some(7)));
        store.close();
    }

    #[test]
    fn a_reply_links_the_delivery_it_answers_and_its_push() {
        let (_dir, store) = store();
        let reply = InboundEvent::Message {
            user: "u1".into(),
            id: "wamid.IN".into(),
            name: None,
            text: Some("thanks".into()),
            payload: None,
            context_id: Some("wamid.1".into()),
            at: 500,
        };
        let applied = store
            .write_blocking(move |c| {
                let once = apply(c, &ctx(), std::slice::from_ref(&reply), None)?;
                let twice = apply(c, &ctx(), &[reply], None)?;
                Ok((once, twice))
            })
            .unwrap();
        assert_eq!((applied.0.events, applied.0.deliveries_changed), (1, 1));
        assert_eq!(applied.1.duplicates, 1);
        let (_, events) = state(&store);
        assert_eq!(
            events,
            vec![(
                "message".into(),
                "wamid.IN".into(),
                Some(3),
                Some(5),
                Some(7),
                None
            )]
        );
        store.close();
    }
}
