//! Batches the delivery writes of one push's in-flight sends.
//!
//! Every send writes twice: `sending` before the request leaves, the outcome
//! after. As one store job and one UPDATE each, a busy push spends the
//! writer's time on overhead — a savepoint per job, and a statement journal
//! per UPDATE (the counters' trigger needs one), each copying every page it
//! touches — rather than on the rows. The recorder queues those writes and
//! hands everything queued to the store as one job, in which all `sending`
//! marks are one UPDATE and all `sent` outcomes another: a thousand sends
//! cost two statements. Each caller still waits until its own write is
//! committed, exactly as with `Store::write`.

use crate::model::{DeliveryId, Millis, Platform};
use crate::receipts::apply;
use crate::store::{Store, StoreError, deliveries};
use rusqlite::Connection;
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot};

/// Most writes folded into one store job.
const MAX_BATCH: usize = 2048;

type Write = Box<dyn FnOnce(&Connection) -> Result<(), StoreError> + Send>;

enum Op {
    /// `pending → sending` on `channel`.
    Sending {
        id: DeliveryId,
        channel: Arc<str>,
        at: Millis,
    },
    /// `sending → sent`, then any status that arrived before the send was recorded.
    Sent {
        id: DeliveryId,
        provider_id: String,
        at: Millis,
        channel: Arc<str>,
        platform: Platform,
    },
    /// Anything else (failures, retries, skips), run as given.
    Other(Write),
}

struct Item {
    op: Op,
    reply: oneshot::Sender<Result<(), StoreError>>,
}

/// Handle to a push's recorder task; the task ends when every handle is gone.
#[derive(Clone)]
pub(super) struct Recorder {
    tx: mpsc::UnboundedSender<Item>,
}

impl Recorder {
    pub fn start(store: Store) -> Recorder {
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(run(store, rx));
        Recorder { tx }
    }

    async fn submit(&self, op: Op) -> Result<(), StoreError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Item { op, reply })
            .map_err(|_| StoreError::Closed)?;
        rx.await.map_err(|_| StoreError::Closed)?
    }

    /// [`deliveries::mark_sending`], batched.
    pub async fn sending(
        &self,
        id: DeliveryId,
        channel: Arc<str>,
        at: Millis,
    ) -> Result<(), StoreError> {
        self.submit(Op::Sending { id, channel, at }).await
    }

    /// [`deliveries::mark_sent`] + [`apply::apply_early_statuses`], batched.
    pub async fn sent(
        &self,
        id: DeliveryId,
        provider_id: String,
        at: Millis,
        channel: Arc<str>,
        platform: Platform,
    ) -> Result<(), StoreError> {
        self.submit(Op::Sent {
            id,
            provider_id,
            at,
            channel,
            platform,
        })
        .await
    }

    /// Runs `f` in the batch. Contract: a write that fails with
    /// `StoreError::Invalid` has changed nothing (a state-guarded UPDATE
    /// that matched no row), so it fails alone; any other error undoes the
    /// whole batch and every write in it reports that error (callers treat
    /// those as "not written": retry, or leave the row pending).
    pub async fn write<F>(&self, f: F) -> Result<(), StoreError>
    where
        F: FnOnce(&Connection) -> Result<(), StoreError> + Send + 'static,
    {
        self.submit(Op::Other(Box::new(f))).await
    }
}

fn not_in_state(id: DeliveryId, what: &str) -> StoreError {
    StoreError::Invalid(format!("delivery {id} is not in the state {what} expects"))
}

/// Applies one batch; one result per op, in order.
fn apply_batch(c: &Connection, ops: Vec<Op>) -> Result<Vec<Result<(), StoreError>>, StoreError> {
    let mut results: Vec<Option<Result<(), StoreError>>> = Vec::with_capacity(ops.len());
    let mut sending: Vec<(usize, deliveries::Mark<'_>)> = Vec::new();
    let mut sent: Vec<(usize, deliveries::Mark<'_>)> = Vec::new();
    for (i, op) in ops.iter().enumerate() {
        match op {
            Op::Sending { id, channel, at } => {
                sending.push((i, (*id, channel, *at)));
                results.push(None);
            }
            Op::Sent {
                id,
                provider_id,
                at,
                ..
            } => {
                sent.push((i, (*id, provider_id, *at)));
                results.push(None);
            }
            Op::Other(_) => results.push(None),
        }
    }
    if !sending.is_empty() {
        let items: Vec<deliveries::Mark<'_>> = sending.iter().map(|(_, m)| *m).collect();
        let changed = deliveries::mark_sending_many(c, &items)?;
        for (i, (id, ..)) in &sending {
            results[*i] = Some(if changed.contains(id) {
                Ok(())
            } else {
                Err(not_in_state(*id, "mark_sending"))
            });
        }
    }
    if !sent.is_empty() {
        let items: Vec<deliveries::Mark<'_>> = sent.iter().map(|(_, m)| *m).collect();
        let changed = deliveries::mark_sent_many(c, &items)?;
        for (i, (id, ..)) in &sent {
            if !changed.contains(id) {
                results[*i] = Some(Err(not_in_state(*id, "mark_sent")));
                continue;
            }
            if let Op::Sent {
                provider_id,
                channel,
                platform,
                ..
            } = &ops[*i]
            {
                apply::apply_early_statuses(c, channel, *platform, provider_id, *id)?;
            }
            results[*i] = Some(Ok(()));
        }
    }
    for (i, op) in ops.into_iter().enumerate() {
        if let Op::Other(w) = op {
            results[i] = Some(match w(c) {
                Ok(()) => Ok(()),
                Err(e @ StoreError::Invalid(_)) => Err(e),
                Err(e) => return Err(e),
            });
        }
    }
    Ok(results.into_iter().map(|r| r.unwrap_or(Ok(()))).collect())
}

async fn run(store: Store, mut rx: mpsc::UnboundedReceiver<Item>) {
    let mut queued = Vec::with_capacity(MAX_BATCH);
    while rx.recv_many(&mut queued, MAX_BATCH).await > 0 {
        let (ops, replies): (Vec<Op>, Vec<_>) = std::mem::take(&mut queued)
            .into_iter()
            .map(|i| (i.op, i.reply))
            .unzip();
        match store.write(move |c| apply_batch(c, ops)).await {
            Ok(results) => {
                for (reply, r) in replies.into_iter().zip(results) {
                    let _ = reply.send(r);
                }
            }
            Err(e) => {
                for reply in replies {
                    let _ = reply.send(Err(e.clone()));
                }
            }
        }
    }
}
