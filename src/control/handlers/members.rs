use super::{CommandError, CommandResult, Reply, ok};
use crate::control::protocol::MembersImportArgs;
use crate::control::protocol::{ErrorBody, Response};
use crate::daemon::Daemon;
use crate::store::members::{self, ImportSource};
use std::path::PathBuf;

pub async fn import(daemon: &Daemon, args: MembersImportArgs) -> CommandResult {
    let store = daemon.store.clone();
    let report = tokio::task::spawn_blocking(move || match (&args.path, &args.data) {
        (Some(p), None) => {
            let path = PathBuf::from(p);
            if !path.is_absolute() {
                return Err(CommandError::Invalid(format!(
                    "path {p:?} must be absolute (the daemon's working folder is not yours)"
                )));
            }
            Ok(members::import(
                &store,
                ImportSource::File(&path),
                args.skip_invalid,
            )?)
        }
        (None, Some(data)) => Ok(members::import(
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
    ok(report)
}
