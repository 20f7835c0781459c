//! members.import: CSV or JSON lines, upserted by (channel, channel_user_id).

use super::{CommandError, CommandResult, Reply};
use crate::import::{self, ImportSource};
use crate::protocol::{ErrorBody, MembersImportArgs, Response};
use crate::store::Store;
use std::path::PathBuf;

/// Imports members; when invalid rows abort the import the reply is an
/// error that still carries the report (which rows, and why).
pub async fn import(store: &Store, args: MembersImportArgs) -> CommandResult<Reply> {
    let store = store.clone();
    let report = tokio::task::spawn_blocking(move || match (&args.path, &args.data) {
        (Some(p), None) => {
            let path = PathBuf::from(p);
            if !path.is_absolute() {
                return Err(CommandError::Invalid(format!(
                    "path {p:?} must be absolute (the daemon's working folder is not yours)"
                )));
            }
            Ok(import::import(
                &store,
                ImportSource::File(&path),
                args.skip_invalid,
            )?)
        }
        (None, Some(data)) => Ok(import::import(
            &store,
            ImportSource::Inline(data),
            args.skip_invalid,
        )?),
        _ => Err(CommandError::Invalid(
            "members.import takes exactly one of \"path\" or \"data\"".into(),
        )),
    })
    .await
    .map_err(|e| CommandError::Internal(format!("import task failed: {e}")))??;
    if report.aborted {
        let listed: Vec<String> = report
            .errors
            .iter()
            .take(5)
            .map(|e| format!("line {}: {}", e.line, e.reason))
            .collect();
        let message = format!(
            "{} invalid row(s), nothing imported (fix them, or pass --skip-invalid): {}",
            report.rejected,
            listed.join("; ")
        );
        return Ok(Reply::One(Response {
            ok: false,
            data: serde_json::to_value(&report).ok(),
            error: Some(ErrorBody {
                code: "invalid_rows".into(),
                message,
            }),
            more: false,
        }));
    }
    Ok(Reply::One(Response::ok(report)))
}
