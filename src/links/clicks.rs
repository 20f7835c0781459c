//! Batches click writes: the clicks that arrive while one batch is handed
//! to the writer go to it together, in one store job (the pattern of
//! `receipts::batch`). Each click's redirect waits until its own record is
//! committed, so a crash loses at most the clicks not yet answered, and
//! never counts one twice. If a batch fails, its clicks are written again
//! one job each, so one click's failure never costs the others theirs.

use crate::store::links::{self, Click};
use crate::store::{Result, Store, StoreError};
use crate::util::next_batch;
use tokio::sync::{mpsc, oneshot};

/// Most clicks folded into one store job.
const MAX_BATCH: usize = 512;

type Item = (Click, oneshot::Sender<Result<Option<String>>>);

/// Handle to the batching task; the task ends when every handle is gone.
#[derive(Clone)]
pub(super) struct Queue {
    tx: mpsc::UnboundedSender<Item>,
}

impl Queue {
    /// Starts the batching task (needs a tokio runtime).
    pub(super) fn start(store: Store) -> Queue {
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(run(store, rx));
        Queue { tx }
    }

    /// Records one click; the registered URL (None: no such link), once committed.
    pub(super) async fn record(&self, click: Click) -> Result<Option<String>> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send((click, reply))
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
        let (clicks, replies): (Vec<Click>, Vec<_>) = queued.into_iter().unzip();
        // Not waited for: the next batch queues while this one is written.
        let store = store.clone();
        tokio::spawn(async move {
            for (reply, r) in replies.into_iter().zip(write(&store, clicks).await) {
                let _ = reply.send(r);
            }
        });
    }
}

/// One store job for the batch; on failure, one job per click.
async fn write(store: &Store, clicks: Vec<Click>) -> Vec<Result<Option<String>>> {
    let n = clicks.len();
    let clicks = std::sync::Arc::new(clicks);
    let all = clicks.clone();
    match store.write(move |c| links::record(c, &all)).await {
        Ok(urls) => urls.into_iter().map(Ok).collect(),
        Err(e) if n == 1 => vec![Err(e)],
        Err(_) => {
            let mut out = Vec::with_capacity(n);
            for i in 0..n {
                let clicks = clicks.clone();
                let one = store
                    .write(move |c| links::record(c, std::slice::from_ref(&clicks[i])))
                    .await
                    .map(|mut urls| urls.pop().flatten());
                out.push(one);
            }
            out
        }
    }
}
