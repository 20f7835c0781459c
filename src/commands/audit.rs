//! audit.list: who changed what, when — newest first, filtered by action
//! and actor, a page at a time down the entry ids.

use super::CommandResult;
use crate::protocol::{AuditData, AuditEntry, AuditListArgs};
use crate::store::Store;
use crate::store::audit::{self, ActorFilter, Query};

pub async fn list(store: &Store, args: AuditListArgs) -> CommandResult<AuditData> {
    let limit = args.limit.unwrap_or(50).clamp(1, 10_000);
    let q = Query {
        action: args
            .action
            .map(|a| a.trim().to_string())
            .filter(|a| !a.is_empty()),
        actor: args.actor.as_deref().and_then(ActorFilter::parse),
        before: args.before,
    };
    // One more than asked: whether an older page exists.
    let mut rows = store.read(move |c| audit::list(c, limit + 1, &q)).await?;
    let next = (rows.len() > limit as usize).then(|| {
        rows.truncate(limit as usize);
        rows.last().map_or(0, |e| e.id)
    });
    let entries = rows
        .into_iter()
        .map(|e| AuditEntry {
            id: e.id,
            at: e.at,
            uid: e.uid,
            actor: e.actor,
            action: e.action,
            target: e.target,
            ok: e.ok,
            detail: e.detail,
        })
        .collect();
    Ok(AuditData { entries, next })
}
