//! Batches the writes of concurrent webhooks: the webhooks that arrive while
//! one batch is being handed over are applied in one store job, instead of
//! one job each.
//!
//! Every store job runs under its own savepoint, and SQLite copies each page
//! a savepoint touches first (the statement journal). With one job per
//! webhook, those copies — the tail of `events` and of its indexes, again
//! for every webhook — were a quarter of the writer's time during a receipt
//! storm. If a batch fails, its webhooks are applied again one job each
//! (`Store::write_each`), so one webhook's failure never costs the others
//! their write; each caller still waits until its own events are committed.

use crate::model::InboundEvent;
use crate::store::receipts::{self, Applied, ApplyContext, Prepared, Webhook};
use crate::store::{Result, Store, StoreError};
use crate::util::next_batch;
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot};

/// Most webhooks folded into one store job.
const MAX_BATCH: usize = 512;

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

    /// Applies one webhook's events (see `store::receipts`), committed
    /// before it returns.
    pub async fn apply(
        &self,
        ctx: Arc<ApplyContext>,
        events: Vec<InboundEvent>,
        raw: Option<String>,
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
            let results = store.write_each(webhooks, receipts::apply_webhook).await;
            for (reply, r) in replies.into_iter().zip(results) {
                let _ = reply.send(r);
            }
        });
    }
}
