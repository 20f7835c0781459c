//! events.list: the message log, newest first.

use super::{CommandResult, ok};
use crate::control::protocol::{EventsData, EventsListArgs};
use crate::daemon::Daemon;
use crate::store::{StoreError, events, members, pushes};
use std::sync::Arc;

pub async fn list(d: &Arc<Daemon>, a: EventsListArgs) -> CommandResult {
    let limit = a.limit.unwrap_or(50).min(10_000);
    let data = d
        .store
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
            Ok(EventsData {
                events: events::list(c, push, member, limit)?,
            })
        })
        .await?;
    ok(data)
}
