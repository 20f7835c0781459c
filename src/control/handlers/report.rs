//! push.report, push.failures, push.export.

use super::{CommandResult, Reply, ok};
use crate::analytics::{self, export, failures};
use crate::control::protocol::{ExportData, FailuresData, PushFailuresArgs, PushRef, Response};
use crate::daemon::Daemon;
use crate::store::pushes;
use std::sync::Arc;
use tokio::sync::mpsc;

pub async fn report(d: &Arc<Daemon>, a: PushRef) -> CommandResult {
    let r = d
        .store
        .read(move |c| {
            let p = pushes::find(c, &a.push)?;
            let counts = pushes::counts(c, p.id)?;
            let retry_of = match p.retry_of {
                Some(id) => pushes::get(c, id)?.map(|s| s.name),
                None => None,
            };
            Ok(analytics::build(&p, &counts, retry_of))
        })
        .await?;
    ok(r)
}

pub async fn failures(d: &Arc<Daemon>, a: PushFailuresArgs) -> CommandResult {
    let samples = a.samples.unwrap_or(5).min(100);
    let data = d
        .store
        .read(move |c| {
            let p = pushes::find(c, &a.push)?;
            let counts = pushes::counts(c, p.id)?;
            Ok(FailuresData {
                push: p.name.clone(),
                sent_fail: counts.failed,
                groups: failures::groups(c, p.id, samples)?,
            })
        })
        .await?;
    ok(data)
}

/// Streams the CSV as chunk lines, then a final line with the row count.
pub async fn export(d: &Arc<Daemon>, a: PushRef) -> CommandResult {
    let r = a.push.clone();
    let push = d.store.read(move |c| pushes::find(c, &r)).await?;
    let (tx, rx) = mpsc::channel::<Response>(4);
    let store = d.store.clone();
    tokio::task::spawn_blocking(move || {
        let result = store.read_blocking(|c| {
            export::stream(c, push.id, |csv| {
                tx.blocking_send(Response::chunk(ExportData { csv, rows: None }))
                    .is_ok()
            })
        });
        let last = match result {
            Ok(rows) => Response::ok(ExportData {
                csv: String::new(),
                rows: Some(rows),
            }),
            Err(e) => Response::err("internal", format!("export failed: {e}")),
        };
        let _ = tx.blocking_send(last);
    });
    Ok(Reply::Stream(rx))
}
