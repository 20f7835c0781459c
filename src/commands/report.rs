//! push.report, push.failures, push.export.

use super::CommandResult;
use crate::analytics::{self, export};
use crate::protocol::{ExportData, FailuresData, PushFailuresArgs, ReportData, Response};
use crate::store::pushes::{Counts, PushRow};
use crate::store::{Store, failures, links, policy, pushes, variants};
use tokio::sync::mpsc;

/// The key indicators of a push.
pub async fn report(store: &Store, push: &str) -> CommandResult<ReportData> {
    Ok(read(store, push).await?.3)
}

/// A push, its counters, the name of the push it retries and its report
/// (capped recipients and tracked links included), read in one snapshot:
/// `push.report` and `push.show` (the panel's push page) say the same.
pub(super) async fn read(
    store: &Store,
    push: &str,
) -> CommandResult<(PushRow, Counts, Option<String>, ReportData)> {
    let push = push.to_string();
    Ok(store
        .read(move |c| {
            let p = pushes::find(c, &push)?;
            let counts = pushes::counts(c, p.id)?;
            let retry_of = match p.retry_of {
                Some(id) => pushes::get(c, id)?.map(|s| s.name),
                None => None,
            };
            let (clicked, tracked) = links::stats(c, p.id)?;
            let mut report =
                analytics::build(&p, &counts, retry_of.clone()).with_links(clicked, tracked);
            if counts.skipped > 0 {
                report.capped = policy::capped(c, p.id)?;
            }
            if let Some(plan) = &p.ab {
                let per = variants::counts(c, p.id, plan)?;
                let control = variants::holdout(c, p.id)?;
                let (vs, ab) = analytics::ab::build(&p, plan, &per, control);
                report.variants = vs;
                report.ab = Some(ab);
            }
            Ok((p, counts, retry_of, report))
        })
        .await?)
}

/// Sent Fail grouped by error class and code, with samples.
pub async fn failures(store: &Store, a: PushFailuresArgs) -> CommandResult<FailuresData> {
    let samples = a.samples.unwrap_or(5).min(100);
    Ok(store
        .read(move |c| {
            let p = pushes::find(c, &a.push)?;
            let counts = pushes::counts(c, p.id)?;
            Ok(FailuresData {
                push: p.name.clone(),
                sent_fail: counts.failed,
                groups: failures::groups(c, p.id, samples)?,
            })
        })
        .await?)
}

/// Streams the CSV as chunk lines, then a final line with the row count.
pub async fn export(store: &Store, push: &str) -> CommandResult<mpsc::Receiver<Response>> {
    let r = push.to_string();
    let push = store.read(move |c| pushes::find(c, &r)).await?;
    let (tx, rx) = mpsc::channel::<Response>(4);
    let store = store.clone();
    tokio::task::spawn_blocking(move || {
        let result = export::stream(&store, push.id, |csv| {
            tx.blocking_send(Response::chunk(ExportData { csv, rows: None }))
                .is_ok()
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
    Ok(rx)
}
