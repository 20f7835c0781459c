//! Freezing a push's audience into delivery rows, once, at start. Audiences
//! given purely as SQL are frozen by `INSERT … SELECT` in chunks of members
//! in id order, and the walk starts sending the first chunk while the rest
//! are frozen (a large audience no longer holds every send back for the
//! whole resolution, with the other core idle); a member is taken as it is
//! when its chunk is frozen, a fraction of a second after the start. A
//! restart carries on after the last committed chunk. A Lua `filter` refines
//! candidates streamed in pages (memory stays flat) and saved static
//! audiences (retry audiences) are copied; those are frozen whole before
//! anything is sent, and redone from scratch if the daemon died half-way.

use crate::model::{MemberId, PushId, SqlValue};
use crate::script::Generation;
use crate::store::members;
use crate::store::{
    Store, StoreError, audiences, deliveries,
    pushes::{self, PushRow},
};
use std::sync::Arc;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// Candidates per round trip through a Lua filter.
const FILTER_PAGE: usize = 2000;

/// A resolution still freezing its audience in the background.
#[derive(Debug, Clone)]
pub enum Progress {
    Running,
    Done,
    Failed(StoreError),
}

/// How a resolution went.
pub enum Resolution {
    /// Frozen whole: this many delivery rows.
    Done(u64),
    /// The first chunk is frozen; the rest follow (watch it to know when
    /// more rows exist, and when there will be no more).
    InChunks(watch::Receiver<Progress>),
}

#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0}")]
    Setup(String),
}

pub async fn resolve(
    store: &Store,
    shutdown: &CancellationToken,
    push: &PushRow,
    generation: &Arc<Generation>,
) -> Result<Resolution, ResolveError> {
    let id = push.id;
    let scripted = generation.audiences.get(&push.audience);
    if let Some(aud) = scripted
        && !aud.has_filter
    {
        let (sql, args) = (aud.filter_sql.sql.clone(), aud.filter_sql.params.clone());
        return in_chunks(store, shutdown, push, sql, args).await;
    }
    // Begun in chunks and stopped (a restart) with its audience no longer
    // plain SQL: starting over would forget who was already sent to.
    if store
        .read(move |c| deliveries::resolved_through(c, id))
        .await?
        .is_some()
    {
        return Err(ResolveError::Setup(format!(
            "audience {:?} was partly frozen as an SQL audience and is now defined otherwise; \
             restore its SQL definition and resume, or cancel the push",
            push.audience
        )));
    }
    store
        .write(move |c| deliveries::restart_resolution(c, id))
        .await?;
    let inserted = if let Some(aud) = scripted {
        let sql = aud.filter_sql.sql.clone();
        let args = aud.filter_sql.params.clone();
        resolve_filtered(store, id, &push.audience, generation, sql, args).await?
    } else {
        let name = push.audience.clone();
        let found = store.read(move |c| audiences::find(c, &name)).await?;
        match found {
            Some(a) => {
                let aid = a.id;
                store
                    .write(move |c| audiences::insert_deliveries(c, aid, id))
                    .await?
            }
            None => {
                return Err(ResolveError::Setup(format!(
                    "audience {:?} is defined neither in the scripts (generation {}) nor as a saved audience",
                    push.audience, generation.number
                )));
            }
        }
    };
    store
        .write(move |c| {
            deliveries::count_resolved(c, id)?;
            pushes::mark_resolved(c, id)
        })
        .await?;
    Ok(Resolution::Done(inserted))
}

/// Freezes an SQL audience in chunks: the first one now, the rest in a task
/// of their own (ordinary writer jobs, so sends' claims go first).
async fn in_chunks(
    store: &Store,
    shutdown: &CancellationToken,
    push: &PushRow,
    sql: String,
    args: Vec<SqlValue>,
) -> Result<Resolution, ResolveError> {
    let id = push.id;
    let chunk = {
        let (sql, args) = (sql.clone(), args.clone());
        store
            .write(move |c| {
                // Not begun (or begun by the whole-audience path of an
                // older pushd): start clean. Begun: carry on.
                if deliveries::resolved_through(c, id)?.is_none() {
                    deliveries::restart_resolution(c, id)?;
                }
                deliveries::resolve_chunk(c, id, &sql, &args, deliveries::RESOLVE_CHUNK)
            })
            .await?
    };
    if chunk.done {
        return Ok(Resolution::Done(chunk.rows));
    }
    let (tx, rx) = watch::channel(Progress::Running);
    let (store, shutdown, name) = (store.clone(), shutdown.clone(), push.name.clone());
    tokio::spawn(async move {
        let mut total = chunk.rows;
        loop {
            let (sql, args) = (sql.clone(), args.clone());
            let r = tokio::select! {
                r = store.write(move |c| deliveries::resolve_chunk(c, id, &sql, &args, deliveries::RESOLVE_CHUNK)) => r,
                // Carried on after the restart, or by the walk that
                // replaces this one (it stopped on an error and retries).
                _ = shutdown.cancelled() => return,
                _ = tx.closed() => return,
            };
            match r {
                Ok(chunk) => {
                    total += chunk.rows;
                    if chunk.done {
                        tracing::info!(push = id, %name, recipients = total, "audience frozen");
                        let _ = tx.send(Progress::Done);
                        return;
                    }
                    let _ = tx.send(Progress::Running);
                }
                Err(e) => {
                    let _ = tx.send(Progress::Failed(e));
                    return;
                }
            }
        }
    });
    Ok(Resolution::InChunks(rx))
}

async fn resolve_filtered(
    store: &Store,
    push: PushId,
    audience: &str,
    generation: &Arc<Generation>,
    sql: String,
    args: Vec<SqlValue>,
) -> Result<u64, ResolveError> {
    let mut after: MemberId = 0;
    let mut total = 0;
    loop {
        let (sql, args) = (sql.clone(), args.clone());
        let page = store
            .read(move |c| members::page_where(c, &sql, &args, after, FILTER_PAGE))
            .await?;
        let Some(last) = page.last() else { break };
        after = last.id;
        let keep = generation
            .filter(audience, page.clone())
            .await
            .map_err(|e| ResolveError::Setup(format!("audience filter failed: {e}")))?;
        let chosen: Vec<(MemberId, bool)> = page
            .iter()
            .zip(keep)
            .filter(|(_, k)| *k)
            .map(|(m, _)| (m.id, m.subscribed))
            .collect();
        total += store
            .write(move |c| deliveries::insert_members(c, push, &chosen))
            .await?;
    }
    Ok(total)
}
