//! push.recipients and audience.from_push: who exactly read, who did not,
//! who failed — a page at a time with each recipient's timeline — and the
//! same selection saved as an audience to push again to.

use super::{Actor, CommandError, CommandResult};
use crate::model::fmt_ms;
use crate::protocol::{
    AudienceFromPushArgs, PushRecipientsArgs, RecipientError, RecipientFilter, RecipientInfo,
    RecipientsData, RetryAudienceData, Timeline,
};
use crate::script::Scripts;
use crate::store::recipients::{self, Filter, Outcome, RecipientRow};
use crate::store::{Store, pushes};
use base64::Engine;

/// Default and largest page.
const PAGE: u32 = 50;
const MAX_PAGE: u32 = 1000;

/// The store's filter for a request's, or why it is not one.
fn filter(f: &RecipientFilter<'_>) -> Result<Filter, CommandError> {
    let outcome = match f.outcome {
        None => None,
        Some(o) => Some(Outcome::parse(o).ok_or_else(|| {
            let valid: Vec<&str> = Outcome::ALL.iter().map(|o| o.as_str()).collect();
            CommandError::Invalid(format!("outcome {o:?} is not one of: {}", valid.join(", ")))
        })?),
    };
    let own = |v: Option<&str>| v.map(str::trim).filter(|v| !v.is_empty()).map(String::from);
    Ok(Filter {
        outcome,
        channel: own(f.channel),
        locale: own(f.locale),
        error_class: own(f.error_class),
        error_code: own(f.error_code),
        variant: own(f.variant),
        retryable_only: false,
    })
}

/// The opaque `next` cursor: which push, and the last delivery listed.
fn cursor(push: i64, delivery: i64) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("r1:{push}:{delivery}"))
}

fn parse_cursor(text: &str, push: i64, push_name: &str) -> Result<i64, CommandError> {
    let bad = || {
        CommandError::Invalid(format!(
            "cursor {text:?} is not one this command returned (use the `next` value of the previous page)"
        ))
    };
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(text.trim())
        .map_err(|_| bad())?;
    let raw = String::from_utf8(raw).map_err(|_| bad())?;
    let mut parts = raw.split(':');
    let (Some("r1"), Some(p), Some(d), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(bad());
    };
    let (p, d): (i64, i64) = (p.parse().map_err(|_| bad())?, d.parse().map_err(|_| bad())?);
    if p != push {
        return Err(CommandError::Invalid(format!(
            "cursor {text:?} belongs to another push (id {p}), not {push_name:?}; start this push's listing without --after"
        )));
    }
    Ok(d)
}

/// One page of a push's recipients with their timelines.
pub async fn list(store: &Store, a: PushRecipientsArgs) -> CommandResult<RecipientsData> {
    let f = filter(&a.filter())?;
    let limit = a.limit.unwrap_or(PAGE).clamp(1, MAX_PAGE);
    let reference = a.push.clone();
    let push = store.read(move |c| pushes::find(c, &reference)).await?;
    let after = match &a.after {
        Some(t) => parse_cursor(t, push.id, &push.name)?,
        None => 0,
    };
    let id = push.id;
    let (mut rows, total) = store
        .read(move |c| {
            let rows = recipients::page(c, id, &f, after, limit + 1)?;
            Ok((rows, recipients::count(c, id, &f)?))
        })
        .await?;
    let next = (rows.len() > limit as usize).then(|| {
        rows.truncate(limit as usize);
        cursor(id, rows.last().map_or(after, |r| r.delivery_id))
    });
    let queued = push.started_at.map(fmt_ms);
    Ok(RecipientsData {
        push: push.name,
        total,
        recipients: rows.into_iter().map(|r| info(r, &queued)).collect(),
        next,
    })
}

fn info(r: RecipientRow, queued: &Option<String>) -> RecipientInfo {
    let outcome = r.outcome().map(|o| o.as_str().to_string());
    let error = r.error_class.as_ref().map(|class| RecipientError {
        class: class.clone(),
        code: r.error_code.clone().unwrap_or_default(),
        message: r.error_message.clone().unwrap_or_default(),
    });
    RecipientInfo {
        delivery_id: r.delivery_id,
        member_id: r.member.id,
        channel: r.channel,
        channel_user_id: r.member.channel_user_id,
        name: r.member.name,
        locale: r.member.locale,
        outcome,
        state: r.state.as_str().to_string(),
        attempts: r.attempts,
        timeline: Timeline {
            queued: queued.clone(),
            sent: r.sent_at.map(fmt_ms),
            delivered: r.delivered_at.map(fmt_ms),
            read: r.read_at.map(fmt_ms),
            interacted: r.interacted_at.map(fmt_ms),
            interaction: r.interaction,
            failed: r.failed_at.map(fmt_ms),
        },
        error: if r.state == crate::model::DeliveryState::Failed {
            error
        } else {
            None
        },
        skip_reason: r.skip_reason,
        variant: r.variant,
    }
}

/// The columns of the recipients CSV (the CLI's `--format csv` and the
/// panel's download write the same bytes through [`csv`]).
pub const CSV_HEADER: &[&str] = &[
    "delivery_id",
    "member_id",
    "channel",
    "channel_user_id",
    "name",
    "locale",
    "outcome",
    "state",
    "attempts",
    "queued_at",
    "sent_at",
    "delivered_at",
    "read_at",
    "interacted_at",
    "interaction",
    "failed_at",
    "error_class",
    "error_code",
    "error_message",
    "skip_reason",
];

/// Recipients as CSV rows, after the header when `header`.
pub fn csv(rows: &[RecipientInfo], header: bool) -> String {
    let mut w = csv::WriterBuilder::new().from_writer(Vec::new());
    if header {
        let _ = w.write_record(CSV_HEADER);
    }
    let opt = |v: &Option<String>| v.clone().unwrap_or_default();
    for r in rows {
        let e = r.error.clone().unwrap_or_default();
        let t = &r.timeline;
        let _ = w.write_record([
            r.delivery_id.to_string(),
            r.member_id.to_string(),
            r.channel.clone(),
            r.channel_user_id.clone(),
            r.name.clone(),
            r.locale.clone(),
            opt(&r.outcome),
            r.state.clone(),
            r.attempts.to_string(),
            opt(&t.queued),
            opt(&t.sent),
            opt(&t.delivered),
            opt(&t.read),
            opt(&t.interacted),
            opt(&t.interaction),
            opt(&t.failed),
            e.class,
            e.code,
            e.message,
            opt(&r.skip_reason),
        ]);
    }
    String::from_utf8(w.into_inner().unwrap_or_default()).unwrap_or_default()
}

/// Saves the recipients a filter selects as a static audience with lineage
/// (members who have unsubscribed since are left out).
pub async fn from_push(
    store: &Store,
    scripts: &Scripts,
    actor: &Actor,
    a: AudienceFromPushArgs,
) -> CommandResult<RetryAudienceData> {
    let f = filter(&a.filter())?;
    let name = a.name.trim().to_string();
    super::audience::check_new_name(scripts, &name)?;
    let (uid, push) = (actor.uid, a.push.clone());
    let data = store
        .write(move |c| {
            let p = pushes::find(c, &push)?;
            let audience = recipients::save_audience(c, p.id, &f, &name, uid)?;
            Ok(RetryAudienceData {
                audience: super::audience::info(audience),
                source_push: p.name,
            })
        })
        .await?;
    tracing::info!(audience = %data.audience.name, members = data.audience.members, source = %data.source_push, "audience created from a push");
    Ok(data)
}
