//! `store.backup`: a consistent copy of the live database while pushes run
//! (admin only, audited by `execute`). The copy itself is the store's
//! (`store::backup`); restoring is done with the daemon stopped
//! (docs/OPERATIONS.md, "Restore").

use super::{CommandError, CommandResult};
use crate::protocol::{BackupData, StoreBackupArgs};
use crate::store::Store;
use std::path::PathBuf;

pub async fn backup(store: &Store, args: StoreBackupArgs) -> CommandResult<BackupData> {
    if args.path.trim().is_empty() {
        return Err(CommandError::Invalid(
            "store.backup needs a path: the file the copy is written to".into(),
        ));
    }
    let report = store.backup(PathBuf::from(&args.path), args.force).await?;
    tracing::info!(path = %report.path, bytes = report.bytes, elapsed_ms = report.elapsed_ms, "database backed up");
    Ok(report)
}
