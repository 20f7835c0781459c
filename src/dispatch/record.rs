//! Batches the delivery writes of one push's sends.
//!
//! Every send writes twice: `sending` before the request leaves, the outcome
//! after. As one store job and one UPDATE each, a busy push spends the
//! writer's time on overhead — a savepoint per job, a statement per row —
//! rather than on the rows. The runner already hands over sends in groups
//! (one `sending` op for a group, one `sent` op per run of completions); the
//! recorder queues those ops and hands everything queued to the store as one
//! job, in which all `sending` marks are one UPDATE per channel and all
//! `sent` outcomes one more. Each caller still waits until its own write is
//! committed, exactly as with `Store::write`.

use crate::model::{DeliveryId, Millis, Platform};
use crate::receipts::apply;
use crate::store::{Store, StoreError, deliveries};
use crate::util::{group_by, next_batch};
use rusqlite::Connection;
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot};

/// Most ops folded into one store job.
const MAX_BATCH: usize = 1024;

type Write = Box<dyn FnOnce(&Connection) -> Result<(), StoreError> + Send>;

/// A recorded send: (delivery, provider message id, when).
pub(super) type SentItem = (DeliveryId, String, Millis);

enum Op {
    /// `pending → sending` for each (delivery, channel).
    Sending {
        items: Vec<(DeliveryId, Arc<str>)>,
        at: Millis,
    },
    /// `sending → sent`, then any status that arrived before the send was recorded.
    Sent {
        items: Vec<SentItem>,
        channel: Arc<str>,
        platform: Platform,
    },
    /// Anything else (failures, retries, skips), run as given.
    Other(Write),
}

/// Per item of a Sending/Sent op: did the row move? (Other: empty.)
type Answer = Result<Vec<bool>, StoreError>;

struct Item {
    op: Op,
    reply: oneshot::Sender<Answer>,
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

    async fn submit(&self, op: Op) -> Answer {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Item { op, reply })
            .map_err(|_| StoreError::Closed)?;
        rx.await.map_err(|_| StoreError::Closed)?
    }

    /// [`deliveries::mark_sending_many`], batched: one flag per item, true
    /// when the row was pending and is now `sending`.
    pub async fn sending(
        &self,
        items: Vec<(DeliveryId, Arc<str>)>,
        at: Millis,
    ) -> Result<Vec<bool>, StoreError> {
        self.submit(Op::Sending { items, at }).await
    }

    /// [`deliveries::mark_sent_many`] + [`apply::apply_early_statuses`],
    /// batched: one flag per item, true when the row was `sending` and is
    /// now `sent`.
    pub async fn sent(
        &self,
        items: Vec<SentItem>,
        channel: Arc<str>,
        platform: Platform,
    ) -> Result<Vec<bool>, StoreError> {
        self.submit(Op::Sent {
            items,
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
        self.submit(Op::Other(Box::new(f))).await.map(|_| ())
    }
}

/// Applies one batch; one answer per op, in order.
fn apply_batch(c: &Connection, ops: Vec<Op>) -> Result<Vec<Answer>, StoreError> {
    let mut sending: Vec<deliveries::Mark<'_>> = Vec::new();
    let mut sent: Vec<deliveries::Mark<'_>> = Vec::new();
    for op in &ops {
        match op {
            Op::Sending { items, at } => {
                sending.extend(items.iter().map(|(id, ch)| (*id, &**ch, *at)));
            }
            Op::Sent { items, .. } => {
                sent.extend(items.iter().map(|(id, pid, at)| (*id, pid.as_str(), *at)));
            }
            Op::Other(_) => {}
        }
    }
    let now_sending = if sending.is_empty() {
        Default::default()
    } else {
        deliveries::mark_sending_many(c, &sending)?
    };
    let now_sent = if sent.is_empty() {
        Default::default()
    } else {
        deliveries::mark_sent_many(c, &sent)?
    };
    // Early statuses for the recorded sends, looked up once per channel.
    let recorded = ops.iter().flat_map(|op| match op {
        Op::Sent {
            items,
            channel,
            platform,
        } => items
            .iter()
            .filter(|(id, ..)| now_sent.contains(id))
            .map(|(id, pid, _)| ((&**channel, *platform), (pid.as_str(), *id)))
            .collect(),
        _ => Vec::new(),
    });
    for ((channel, platform), sends) in group_by(recorded, |(key, _)| *key) {
        let pairs: Vec<(&str, DeliveryId)> = sends.into_iter().map(|(_, pair)| pair).collect();
        apply::apply_early_statuses(c, channel, platform, &pairs)?;
    }
    let mut answers = Vec::with_capacity(ops.len());
    for op in ops {
        answers.push(match op {
            Op::Sending { items, .. } => Ok(items
                .iter()
                .map(|(id, _)| now_sending.contains(id))
                .collect()),
            Op::Sent { items, .. } => {
                Ok(items.iter().map(|(id, ..)| now_sent.contains(id)).collect())
            }
            Op::Other(w) => match w(c) {
                Ok(()) => Ok(Vec::new()),
                Err(e @ StoreError::Invalid(_)) => Err(e),
                Err(e) => return Err(e),
            },
        });
    }
    Ok(answers)
}

async fn run(store: Store, mut rx: mpsc::UnboundedReceiver<Item>) {
    loop {
        let queued = next_batch(&mut rx, MAX_BATCH).await;
        if queued.is_empty() {
            return;
        }
        // `sending` marks hold sends back until committed: they go first, in
        // a transaction of their own; outcomes follow.
        let (first, rest): (Vec<Item>, Vec<Item>) = queued
            .into_iter()
            .partition(|i| matches!(i.op, Op::Sending { .. }));
        for (items, urgent) in [(first, true), (rest, false)] {
            if !items.is_empty() {
                tokio::spawn(write_batch(store.clone(), items, urgent));
            }
        }
    }
}

/// Writes one batch and answers its callers. Not waited for by the recorder:
/// the next ops go to the writer while this batch is written (the writer
/// takes all queued jobs together). Batches are independent: a send's `sent`
/// op only exists once its `sending` op was answered.
async fn write_batch(store: Store, items: Vec<Item>, urgent: bool) {
    let (ops, replies): (Vec<Op>, Vec<_>) = items.into_iter().map(|i| (i.op, i.reply)).unzip();
    let job = move |c: &Connection| apply_batch(c, ops);
    let result = if urgent {
        store.write_first(job).await
    } else {
        store.write(job).await
    };
    match result {
        Ok(answers) => {
            for (reply, a) in replies.into_iter().zip(answers) {
                let _ = reply.send(a);
            }
        }
        Err(e) => {
            for reply in replies {
                let _ = reply.send(Err(e.clone()));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{InboundEvent, StatusUpdate};
    use crate::receipts::apply::ApplyContext;
    use crate::store::pushes;

    fn push(c: &Connection) -> Result<i64, StoreError> {
        c.execute_batch(
            "INSERT INTO members (id, channel, channel_user_id, name, locale, tags, created_at, updated_at)
             VALUES (1, 'sim', 'u1', 'A', 'en', '', 0, 0), (2, 'sim', 'u2', 'B', 'en', '', 0, 0),
                    (3, 'sim', 'u3', 'C', 'en', '', 0, 0);",
        )?;
        let p = pushes::create(
            c,
            &pushes::NewPush {
                name: "p".into(),
                origin: "cli".into(),
                audience: "all".into(),
                template: "t".into(),
                ..Default::default()
            },
        )?
        .id;
        deliveries::insert_from_sql(c, p, "1", &[])?;
        deliveries::count_resolved(c, p)?;
        Ok(p)
    }

    /// The counters as a full recount sees them, and as maintained.
    type Cells = Vec<(i64, i64, i64, i64)>;

    fn counters(c: &Connection, p: i64) -> (Cells, Cells) {
        let q = |sql: &str| {
            c.prepare(sql)
                .unwrap()
                .query_map([p], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
                .unwrap()
                .collect::<rusqlite::Result<Vec<_>>>()
                .unwrap()
        };
        (
            q(
                "SELECT CASE WHEN state <= 1 THEN 0 ELSE state END s, read_at IS NOT NULL r,
                      interacted_at IS NOT NULL i, count(*)
               FROM deliveries WHERE push_id = ?1 GROUP BY s, r, i ORDER BY s, r, i",
            ),
            q(
                "SELECT state, rd, ia, n FROM push_counts WHERE push_id = ?1 AND n > 0 ORDER BY state, rd, ia",
            ),
        )
    }

    #[test]
    fn batched_sends_keep_counters_exact_and_pick_up_early_statuses() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("t.db")).unwrap();
        let p = store.write_blocking(push).unwrap();
        let ids: Vec<DeliveryId> = store
            .read_blocking(|c| {
                Ok(
                    c.prepare("SELECT id FROM deliveries WHERE push_id = ?1 ORDER BY id")?
                        .query_map([p], |r| r.get(0))?
                        .collect::<rusqlite::Result<_>>()?,
                )
            })
            .unwrap();
        // A read receipt for the second message arrives before its send is recorded.
        store
            .write_blocking(|c| {
                let ctx = ApplyContext {
                    channel: "sim".into(),
                    platform: Platform::Simulator,
                    attribution_window_ms: 0,
                    opt_out: vec![],
                    opt_in: vec![],
                    default_locale: "en".into(),
                };
                let read = InboundEvent::Status {
                    provider_message_id: "pm-2".into(),
                    update: StatusUpdate::Read,
                    user: Some("u2".into()),
                    at: 5,
                };
                apply::apply(c, &ctx, &[read], None)?;
                Ok(())
            })
            .unwrap();
        let sim: Arc<str> = "sim".into();
        let sending = vec![Op::Sending {
            items: ids.iter().map(|&id| (id, sim.clone())).collect(),
            at: 1,
        }];
        let r = store
            .write_blocking(move |c| apply_batch(c, sending))
            .unwrap();
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].as_ref().unwrap(), &vec![true; 3]);
        // Two of three sends are recorded (in two ops), plus one for a row
        // that is not `sending`.
        let sent = vec![
            Op::Sent {
                items: vec![(ids[0], "pm-1".into(), 2)],
                channel: sim.clone(),
                platform: Platform::Simulator,
            },
            Op::Sent {
                items: vec![(ids[1], "pm-2".into(), 3), (999, "pm-x".into(), 2)],
                channel: sim.clone(),
                platform: Platform::Simulator,
            },
        ];
        let r = store.write_blocking(move |c| apply_batch(c, sent)).unwrap();
        assert_eq!(r[0].as_ref().unwrap(), &vec![true]);
        assert_eq!(r[1].as_ref().unwrap(), &vec![true, false]);
        let (recount, kept) = store.read_blocking(|c| Ok(counters(c, p))).unwrap();
        assert_eq!(recount, kept);
        // Sent: one plain, one read (the early receipt); one still sending.
        assert_eq!(recount, vec![(0, 0, 0, 1), (2, 0, 0, 1), (2, 1, 0, 1)]);
        let (read_at, linked): (Option<i64>, i64) = store
            .read_blocking(|c| {
                Ok(c.query_row(
                    "SELECT d.read_at, (SELECT count(*) FROM events WHERE delivery_id = d.id)
                     FROM deliveries d WHERE d.id = ?1",
                    [ids[1]],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )?)
            })
            .unwrap();
        assert_eq!((read_at, linked), (Some(5), 1));
        // Each row got its own provider id and time (two ops, one UPDATE).
        let rows: Vec<(Option<String>, Option<i64>)> = store
            .read_blocking(|c| {
                Ok(
                    c.prepare("SELECT provider_message_id, sent_at FROM deliveries ORDER BY id")?
                        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
                        .collect::<rusqlite::Result<_>>()?,
                )
            })
            .unwrap();
        assert_eq!(
            rows,
            vec![
                (Some("pm-1".into()), Some(2)),
                (Some("pm-2".into()), Some(3)),
                (None, None)
            ]
        );
        store.close();
    }
}
