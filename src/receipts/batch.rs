//! Batches the writes of concurrent webhooks: the webhooks that arrive while
//! one batch is being handed over are applied in one store job, instead of
//! one job each.
//!
//! Every store job runs under its own savepoint, and SQLite copies each page
//! a savepoint touches first (the statement journal). With one job per
//! webhook, those copies — the tail of `events` and of its indexes, again
//! for every webhook — were a quarter of the writer's time during a receipt
//! storm. If a batch fails, its webhooks are applied again one job each, so
//! one webhook's failure never costs the others their write; each caller
//! still waits until its own events are committed.

use super::apply::{self, Applied, ApplyContext, Prepared};
use crate::model::InboundEvent;
use crate::store::{Result, Store, StoreError};
use crate::util::next_batch;
use rusqlite::Connection;
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot};

/// Most webhooks folded into one store job.
const MAX_BATCH: usize = 512;

/// One verified webhook's events, with the raw payload kept alongside them.
struct Webhook {
    ctx: Arc<ApplyContext>,
    events: Vec<Prepared>,
    raw: String,
}

type Item = (Webhook, oneshot::Sender<Result<Applied>>);

/// Handle to the batching task; the task ends when every handle is gone.
#[derive(Clone)]
pub struct Applier {
    tx: mpsc::UnboundedSender<Item>,
}

impl Applier {
    pub fn start(store: Store) -> Applier {
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(run(store, rx));
        Applier { tx }
    }

    /// [`apply::apply`] for one webhook, committed before it returns.
    pub async fn apply(
        &self,
        ctx: Arc<ApplyContext>,
        events: Vec<InboundEvent>,
        raw: String,
    ) -> Result<Applied> {
        let (reply, rx) = oneshot::channel();
        let events = events.into_iter().map(Prepared::new).collect();
        let webhook = Webhook { ctx, events, raw };
        self.tx
            .send((webhook, reply))
            .map_err(|_| StoreError::Closed)?;
        rx.await.map_err(|_| StoreError::Closed)?
    }
}

fn apply_webhook(c: &Connection, w: &Webhook) -> Result<Applied> {
    apply::apply_prepared(c, &w.ctx, &w.events, Some(&w.raw))
}

async fn run(store: Store, mut rx: mpsc::UnboundedReceiver<Item>) {
    loop {
        let queued = next_batch(&mut rx, MAX_BATCH).await;
        if queued.is_empty() {
            return;
        }
        let (webhooks, replies): (Vec<Webhook>, Vec<_>) = queued.into_iter().unzip();
        // Not waited for: the next batch queues while this one is written.
        let store = store.clone();
        tokio::spawn(async move {
            let results = write_all(&store, webhooks, apply_webhook).await;
            for (reply, r) in replies.into_iter().zip(results) {
                let _ = reply.send(r);
            }
        });
    }
}

/// Runs `f` over every item in one store job; if that job fails, once more
/// per item in a job of its own. One result per item, in order.
async fn write_all<T, R>(
    store: &Store,
    items: Vec<T>,
    f: fn(&Connection, &T) -> Result<R>,
) -> Vec<Result<R>>
where
    T: Send + Sync + 'static,
    R: Send + 'static,
{
    let items = Arc::new(items);
    let all = items.clone();
    let together = store
        .write(move |c| {
            all.iter()
                .map(|item| f(c, item))
                .collect::<Result<Vec<R>>>()
        })
        .await;
    match together {
        Ok(results) => results.into_iter().map(Ok).collect(),
        Err(e) if items.len() == 1 => vec![Err(e)],
        Err(_) => {
            let mut results = Vec::with_capacity(items.len());
            for i in 0..items.len() {
                let items = items.clone();
                results.push(store.write(move |c| f(c, &items[i])).await);
            }
            results
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn insert(c: &Connection, n: &i64) -> Result<i64> {
        c.execute("INSERT INTO members (id, channel, channel_user_id, name, locale, tags, created_at, updated_at)
                   VALUES (?1, 'sim', ?1, '', 'en', '', 0, 0)", [n])?;
        if *n == 13 {
            // Fails after writing: its own write must be undone, nobody else's.
            return Err(StoreError::Invalid("unlucky".into()));
        }
        Ok(*n)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failing_item_fails_alone_and_the_rest_commit() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("b.db")).unwrap();
        let ok = write_all(&store, vec![1i64, 2, 3], insert).await;
        assert_eq!(
            ok.into_iter().map(|r| r.unwrap()).collect::<Vec<_>>(),
            vec![1, 2, 3]
        );
        let mixed = write_all(&store, vec![11i64, 12, 13, 14], insert).await;
        let flags: Vec<bool> = mixed.iter().map(|r| r.is_ok()).collect();
        assert_eq!(flags, vec![true, true, false, true]);
        let ids: Vec<i64> = store
            .read(|c| {
                Ok(c.prepare("SELECT id FROM members ORDER BY id")?
                    .query_map([], |r| r.get(0))?
                    .collect::<rusqlite::Result<_>>()?)
            })
            .await
            .unwrap();
        assert_eq!(ids, vec![1, 2, 3, 11, 12, 14]);
        store.close();
    }
}
