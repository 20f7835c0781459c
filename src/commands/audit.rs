//! audit.list: who changed what, when.

use super::CommandResult;
use crate::protocol::{AuditData, AuditEntry, AuditListArgs};
use crate::store::{Store, audit};

pub async fn list(store: &Store, args: AuditListArgs) -> CommandResult<AuditData> {
    let limit = args.limit.unwrap_or(50).min(10_000);
    let rows = store
        .read(move |c| audit::list(c, limit, args.action.as_deref()))
        .await?;
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
    Ok(AuditData { entries })
}
