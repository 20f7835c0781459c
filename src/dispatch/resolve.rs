//! Freezing a push's audience into delivery rows, once, at start. Audiences
//! given purely as SQL become one `INSERT … SELECT`; a Lua `filter` refines
//! candidates streamed in pages (memory stays flat); saved static audiences
//! (retry audiences) are copied. The whole resolution is redone from scratch
//! if the daemon died half-way (nothing is sent before it completes).

use crate::daemon::Daemon;
use crate::model::{MemberId, PushId};
use crate::script::Generation;
use crate::store::members;
use crate::store::{
    StoreError, audiences, deliveries,
    pushes::{self, PushRow},
};
use std::sync::Arc;

/// Candidates per round trip through a Lua filter.
const FILTER_PAGE: usize = 2000;

#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0}")]
    Setup(String),
}

pub async fn resolve(
    d: &Arc<Daemon>,
    push: &PushRow,
    generation: &Arc<Generation>,
) -> Result<u64, ResolveError> {
    let id = push.id;
    d.store.write(move |c| deliveries::clear(c, id)).await?;
    let inserted = if let Some(aud) = generation.audiences.get(&push.audience) {
        let sql = aud.filter_sql.sql.clone();
        let args = aud.filter_sql.params.clone();
        if !aud.has_filter {
            d.store
                .write(move |c| deliveries::insert_from_sql(c, id, &sql, &args))
                .await?
        } else {
            resolve_filtered(d, id, &push.audience, generation, sql, args).await?
        }
    } else {
        let name = push.audience.clone();
        let found = d.store.read(move |c| audiences::find(c, &name)).await?;
        match found {
            Some(a) => {
                let aid = a.id;
                d.store
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
    d.store
        .write(move |c| {
            deliveries::count_resolved(c, id)?;
            pushes::mark_resolved(c, id)
        })
        .await?;
    Ok(inserted)
}

async fn resolve_filtered(
    d: &Arc<Daemon>,
    push: PushId,
    audience: &str,
    generation: &Arc<Generation>,
    sql: String,
    args: Vec<rusqlite::types::Value>,
) -> Result<u64, ResolveError> {
    let mut after: MemberId = 0;
    let mut total = 0;
    loop {
        let (sql, args) = (sql.clone(), args.clone());
        let page = d
            .store
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
        total += d
            .store
            .write(move |c| deliveries::insert_members(c, push, &chosen))
            .await?;
    }
    Ok(total)
}
