//! Applying normalized inbound events to deliveries and members.
//!
//! Idempotent: every event is first recorded in `events` under a unique key,
//! so a duplicated webhook changes nothing. Order-independent: timestamps are
//! only ever filled in (`coalesce`), never moved back; a status that arrives
//! before we recorded the send is kept and applied when the send is recorded.

use crate::model::{
    DeliveryId, DeliveryState, ErrorClass, InboundEvent, Millis, Platform, StatusUpdate, now_ms,
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

/// Applies a batch (one webhook, or a run of simulator receipts) in the
/// caller's transaction. `raw` is stored with the first event.
pub fn apply(
    conn: &Connection,
    ctx: &ApplyContext,
    events: &[InboundEvent],
    raw: Option<&str>,
) -> Result<Applied> {
    let mut out = Applied::default();
    let mut raw = raw;
    for e in events {
        let key = dedupe_key(e);
        let seen = conn
            .prepare_cached(
                "SELECT 1 FROM events WHERE channel = ?1 AND dedupe_key = ?2 AND kind = ?3",
            )?
            .exists(params![ctx.channel, key, e.kind()])?;
        if seen {
            out.duplicates += 1;
            continue;
        }
        out.events += 1;
        let link = match e {
            InboundEvent::Status {
                provider_message_id,
                update,
                ..
            } => apply_status(
                conn,
                ctx,
                provider_message_id,
                update,
                event_at(e),
                &mut out,
            )?,
            InboundEvent::Watermark {
                user,
                read,
                watermark,
                mids,
                at,
            } => apply_watermark(conn, ctx, user, *read, *watermark, mids, *at, &mut out)?,
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
                &mut out,
            )?,
            InboundEvent::Unsubscribed { user, at } => {
                let member = upsert_member(conn, ctx, user, None, *at, false, &mut out)?;
                conn.prepare_cached(
                    "UPDATE members SET subscribed = 0, updated_at = ?2 WHERE id = ?1",
                )?
                .execute(params![member, now_ms()])?;
                Link {
                    member: Some(member),
                    delivery: None,
                }
            }
        };
        // Recorded once, with what it touched (the message log links it).
        let summary = serde_json::to_string(e).unwrap_or_default();
        conn.prepare_cached(
            "INSERT INTO events (at, channel, kind, dedupe_key, member_id, delivery_id, push_id, summary, raw)
             VALUES (?1, ?2, ?3, ?4,
                     coalesce(?5, (SELECT member_id FROM deliveries WHERE id = ?6)), ?6,
                     (SELECT push_id FROM deliveries WHERE id = ?6), ?7, ?8)",
        )?
        .execute(params![
            now_ms(),
            ctx.channel,
            e.kind(),
            key,
            link.member,
            link.delivery,
            summary,
            raw
        ])?;
        raw = None;
    }
    Ok(out)
}

fn event_at(e: &InboundEvent) -> Millis {
    match e {
        InboundEvent::Status { at, .. }
        | InboundEvent::Watermark { at, .. }
        | InboundEvent::Message { at, .. }
        | InboundEvent::Unsubscribed { at, .. } => *at,
    }
}

/// Which member/delivery an event touched, for the message log.
#[derive(Default)]
struct Link {
    member: Option<i64>,
    delivery: Option<DeliveryId>,
}

impl Link {
    fn save(&self, conn: &Connection, event_id: i64) -> Result<()> {
        if self.member.is_none() && self.delivery.is_none() {
            return Ok(());
        }
        conn.prepare_cached(
            "UPDATE events SET member_id = coalesce(?2, (SELECT member_id FROM deliveries WHERE id = ?3)),
                delivery_id = ?3, push_id = (SELECT push_id FROM deliveries WHERE id = ?3)
             WHERE id = ?1",
        )?
        .execute(params![event_id, self.member, self.delivery])?;
        Ok(())
    }
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

fn apply_status(
    conn: &Connection,
    ctx: &ApplyContext,
    provider_id: &str,
    update: &StatusUpdate,
    at: Millis,
    out: &mut Applied,
) -> Result<Link> {
    let found: Option<DeliveryId> = conn
        .prepare_cached(
            "SELECT id FROM deliveries WHERE provider_message_id = ?1 AND channel = ?2 LIMIT 1",
        )?
        .query_row(params![provider_id, ctx.channel], |r| r.get(0))
        .optional()?;
    let Some(id) = found else {
        // Not (yet) ours: kept in `events`; applied if the send gets recorded.
        return Ok(Link::default());
    };
    out.deliveries_changed += status_update(conn, ctx, id, update, at)? as u64;
    Ok(Link {
        member: None,
        delivery: Some(id),
    })
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
            Link {
                member: None,
                delivery: Some(delivery),
            }
            .save(conn, event_id)?;
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
        delivery: None,
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
                "INSERT INTO members (channel, channel_user_id, name, locale, subscribed, last_interaction_at, created_at, updated_at)
                 VALUES (?1, ?2, ?3, ?4, 1, ?5, ?6, ?6)",
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
            delivery: None,
        });
    }
    if !is_click && ctx.opt_in.contains(&keyword) {
        conn.prepare_cached("UPDATE members SET subscribed = 1, updated_at = ?2 WHERE id = ?1")?
            .execute(params![member, now_ms()])?;
    }
    // The reply/click counts for the delivery it answers, else the latest
    // push delivery to this member within the attribution window.
    let by_context: Option<DeliveryId> = match context_id {
        Some(cid) => conn
            .prepare_cached(&format!(
                "SELECT id FROM deliveries WHERE provider_message_id = ?1 AND channel = ?2 AND state = {SENT} LIMIT 1"
            ))?
            .query_row(params![cid, ctx.channel], |r| r.get(0))
            .optional()?,
        None => None,
    };
    let target = match by_context {
        Some(id) => Some(id),
        None => conn
            .prepare_cached(&format!(
                "SELECT id FROM deliveries WHERE member_id = ?1 AND state = {SENT}
                   AND sent_at >= ?2 AND sent_at <= ?3
                 ORDER BY sent_at DESC LIMIT 1"
            ))?
            .query_row(
                params![member, at - ctx.attribution_window_ms, at + 60_000],
                |r| r.get(0),
            )
            .optional()?,
    };
    if let Some(id) = target {
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
        delivery: target,
    })
}
