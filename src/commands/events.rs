//! events.list: the message log, newest first.

use super::CommandResult;
use crate::protocol::{EventsData, EventsListArgs, LogEntry};
use crate::store::{Store, StoreError, events, members, pushes};

pub async fn list(store: &Store, a: EventsListArgs) -> CommandResult<EventsData> {
    let limit = a.limit.unwrap_or(50).min(10_000);
    let rows = store
        .read(move |c| {
            let push = match &a.push {
                Some(p) => Some(pushes::find(c, p)?.id),
                None => None,
            };
            let member = match &a.member {
                None => None,
                Some(m) => Some(match m.split_once(':') {
                    Some((channel, user)) => {
                        members::find(c, channel, user)?
                            .ok_or_else(|| StoreError::NotFound(format!("no member {m:?}")))?
                            .id
                    }
                    None => m.parse::<i64>().map_err(|_| {
                        StoreError::Invalid(format!(
                            "--member {m:?} must be a member id or channel:channel_user_id"
                        ))
                    })?,
                }),
            };
            events::list(c, push, member, limit)
        })
        .await?;
    let events = rows
        .into_iter()
        .map(|e| LogEntry {
            at: e.at,
            at_ms: e.at_ms,
            direction: e.direction,
            channel: e.channel,
            kind: e.kind,
            member_id: e.member_id,
            push_id: e.push_id,
            delivery_id: e.delivery_id,
            detail: e.detail,
        })
        .collect();
    Ok(EventsData { events })
}
