use super::{CommandResult, ok};
use crate::control::protocol::{AuditData, AuditListArgs};
use crate::daemon::Daemon;
use crate::store::audit;

pub async fn list(daemon: &Daemon, args: AuditListArgs) -> CommandResult {
    let limit = args.limit.unwrap_or(50).min(10_000);
    let entries = daemon
        .store
        .read(move |c| audit::list(c, limit, args.action.as_deref()))
        .await?;
    ok(AuditData { entries })
}
