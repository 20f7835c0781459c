//! Batches the delivery writes of one push's sends.
//!
//! Every send writes before its request leaves (a claim for a group of
//! fresh recipients, or a `sending` mark for a retry) and records its
//! outcome after. As one store job and one statement each, a busy push
//! spends the writer's time on overhead — a savepoint per job, a statement
//! per row — rather than on the rows. The runner already hands over sends in
//! groups (one `sending` op for a group, one `sent` op per run of
//! completions); the recorder queues those ops and hands everything queued
//! to the store as one job, in which all claims and marks go first and all
//! `sent` outcomes are one UPDATE per channel. Each caller still waits until
//! its own write is committed, exactly as with `Store::write`.

use super::deliveries::{self, Attempt, ClaimId, SentRow};
use super::policy::{self, CapCheck, CapItem};
use super::receipts as apply;
use super::{Store, StoreError};
use crate::model::{DeliveryId, ErrorClass, Millis, Platform, PushId};
use crate::util::{group_by, next_batch};
use rusqlite::Connection;
use std::collections::HashSet;
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot};

/// Most ops folded into one store job.
const MAX_BATCH: usize = 1024;

/// The outcome of a recipient that did not end `sent`.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Permanent failure (or attempts exhausted).
    Failed {
        delivery: DeliveryId,
        attempt: Attempt,
        class: ErrorClass,
        code: String,
        message: String,
        at: Millis,
    },
    /// A transient failure: pending again, due at `next_at`. `refund`: the
    /// attempt does not count (the push pauses, e.g. on bad credentials).
    Retry {
        delivery: DeliveryId,
        attempt: Attempt,
        class: ErrorClass,
        code: String,
        message: String,
        next_at: Millis,
        refund: bool,
    },
    /// Never sent, for `reason` (routed to skip, channel not configured).
    Skipped {
        delivery: DeliveryId,
        reason: String,
    },
    /// Held until `until` (outside the member's send window).
    Deferred { delivery: DeliveryId, until: Millis },
}

impl Outcome {
    fn write(&self, c: &Connection) -> Result<(), StoreError> {
        match self {
            Outcome::Failed {
                delivery,
                attempt,
                class,
                code,
                message,
                at,
            } => deliveries::mark_failed(c, *delivery, attempt, *class, code, message, *at),
            Outcome::Retry {
                delivery,
                attempt,
                class,
                code,
                message,
                next_at,
                refund,
            } => deliveries::mark_retry(
                c, *delivery, attempt, *class, code, message, *next_at, *refund,
            ),
            Outcome::Skipped { delivery, reason } => deliveries::mark_skipped(c, *delivery, reason),
            Outcome::Deferred { delivery, until } => deliveries::defer(c, *delivery, *until),
        }
    }
}

/// A successful send to record.
#[derive(Debug, Clone)]
pub struct SentItem {
    pub delivery: DeliveryId,
    pub provider_id: String,
    /// When the platform accepted it.
    pub at: Millis,
    /// When it was claimed or marked `sending`.
    pub sending_at: Millis,
}

/// A group's sends, before their requests leave.
pub struct Sending {
    pub push: PushId,
    /// The fresh recipients' id range, claimed in one row.
    pub fresh: Option<(DeliveryId, DeliveryId)>,
    /// Recipients marked `sending` one by one (retries, deferred ones).
    pub marks: Vec<(DeliveryId, Arc<str>)>,
    pub at: Millis,
    /// Frequency caps to check, and first attempts to count, in the same
    /// transaction (`store::policy`); None while no cap is configured.
    pub caps: Option<CapCheck>,
}

/// What a [`Sending`] op got.
#[derive(Debug, Default)]
pub struct Claimed {
    /// The claim of the fresh range; None when there was none or the push
    /// is no longer running (then none of the fresh ones may be sent).
    pub claim: Option<ClaimId>,
    /// Per mark: true when the row was pending and is now `sending`.
    pub marked: Vec<bool>,
    /// Recipients over a frequency cap: skipped as `capped`, not to be sent.
    pub capped: HashSet<DeliveryId>,
}

enum Op {
    Sending(Sending),
    /// `sending → sent`, then any status that arrived before the send was recorded.
    Sent {
        items: Arc<[SentItem]>,
        channel: Arc<str>,
        platform: Platform,
    },
    /// A claim whose every outcome is recorded.
    Release(ClaimId),
    /// Anything else (failures, retries, skips, deferrals).
    Other(Outcome),
}

enum Answer {
    Claimed(Claimed),
    /// Per item of a Sent op: did the row move?
    Sent(Vec<bool>),
    Done,
}

struct Item {
    op: Op,
    reply: Option<oneshot::Sender<Result<Answer, StoreError>>>,
}

/// Handle to a push's recorder task; the task ends when every handle is gone.
#[derive(Clone)]
pub struct Recorder {
    tx: mpsc::UnboundedSender<Item>,
}

impl Recorder {
    /// The recorder of `push`'s sends.
    pub fn start(store: Store, push: PushId) -> Recorder {
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(run(store, push, rx));
        Recorder { tx }
    }

    async fn submit(&self, op: Op) -> Result<Answer, StoreError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Item {
                op,
                reply: Some(reply),
            })
            .map_err(|_| StoreError::Closed)?;
        rx.await.map_err(|_| StoreError::Closed)?
    }

    /// [`deliveries::claim`] for the fresh range and
    /// [`deliveries::mark_sending_many`] for the marks, batched.
    pub async fn sending(&self, op: Sending) -> Result<Claimed, StoreError> {
        match self.submit(Op::Sending(op)).await? {
            Answer::Claimed(c) => Ok(c),
            _ => Ok(Claimed::default()),
        }
    }

    /// [`deliveries::mark_sent_many`] + [`apply::apply_early_statuses`],
    /// batched: one flag per item, true when the row was `sending` and is
    /// now `sent`.
    pub async fn sent(
        &self,
        items: Arc<[SentItem]>,
        channel: Arc<str>,
        platform: Platform,
    ) -> Result<Vec<bool>, StoreError> {
        match self
            .submit(Op::Sent {
                items,
                channel,
                platform,
            })
            .await?
        {
            Answer::Sent(flags) => Ok(flags),
            _ => Ok(Vec::new()),
        }
    }

    /// Drops a claim with the next batch, without waiting: if that write is
    /// lost, its rows all have outcomes, and recovery finds nothing to do.
    pub fn release(&self, claim: ClaimId) {
        let _ = self.tx.send(Item {
            op: Op::Release(claim),
            reply: None,
        });
    }

    /// Records `outcome` in the batch. Contract: a write that fails with
    /// `StoreError::Invalid` has changed nothing (a state-guarded UPDATE
    /// that matched no row), so it fails alone; any other error undoes the
    /// whole batch and every write in it reports that error (callers treat
    /// those as "not written": retry, or leave the row pending).
    pub async fn record(&self, outcome: Outcome) -> Result<(), StoreError> {
        self.submit(Op::Other(outcome)).await.map(|_| ())
    }
}

/// Applies one batch; one answer per op, in order.
fn apply_batch(
    c: &Connection,
    push: PushId,
    ops: Vec<Op>,
) -> Result<Vec<Result<Answer, StoreError>>, StoreError> {
    let mut claims: Vec<(Option<ClaimId>, HashSet<DeliveryId>)> = Vec::new();
    let mut marks: Vec<deliveries::Mark<'_>> = Vec::new();
    let mut counted_marks: Vec<&CapItem> = Vec::new();
    let mut released: Vec<ClaimId> = Vec::new();
    for op in &ops {
        match op {
            Op::Sending(s) => {
                let (claim, capped) = claim_group(c, s, &mut counted_marks)?;
                marks.extend(
                    s.marks
                        .iter()
                        .filter(|(id, _)| !capped.contains(id))
                        .map(|(id, ch)| (*id, &**ch, s.at)),
                );
                claims.push((claim, capped));
            }
            Op::Release(id) => released.push(*id),
            Op::Sent { .. } | Op::Other(_) => {}
        }
    }
    let now_marked = if marks.is_empty() {
        Default::default()
    } else {
        deliveries::mark_sending_many(c, &marks)?
    };
    // Counted marks whose row was no longer pending are not sent: uncount.
    policy::unreserve(
        c,
        counted_marks
            .into_iter()
            .filter(|i| !now_marked.contains(&i.delivery)),
    )?;
    // Outcomes, one UPDATE per channel (by name: a reload may leave two
    // instances of one name in flight, which write the same column).
    let sent = ops.iter().filter_map(|op| match op {
        Op::Sent { items, channel, .. } => Some((&**channel, items)),
        _ => None,
    });
    let mut now_sent = std::collections::HashSet::new();
    for (channel, groups) in group_by(sent, |(ch, _)| *ch) {
        let rows: Vec<SentRow<'_>> = groups
            .iter()
            .flat_map(|(_, items)| items.iter())
            .map(|i| SentRow {
                id: i.delivery,
                provider_id: &i.provider_id,
                at: i.at,
                sending_at: i.sending_at,
            })
            .collect();
        now_sent.extend(deliveries::mark_sent_many(c, push, channel, &rows)?);
    }
    // Early statuses for the recorded sends, looked up once per channel.
    let recorded = ops.iter().flat_map(|op| match op {
        Op::Sent {
            items,
            channel,
            platform,
        } => items
            .iter()
            .filter(|i| now_sent.contains(&i.delivery))
            .map(|i| {
                (
                    (&**channel, *platform),
                    (i.provider_id.as_str(), i.delivery),
                )
            })
            .collect(),
        _ => Vec::new(),
    });
    for ((channel, platform), sends) in group_by(recorded, |(key, _)| *key) {
        let pairs: Vec<(&str, DeliveryId)> = sends.into_iter().map(|(_, pair)| pair).collect();
        apply::apply_early_statuses(c, channel, platform, &pairs)?;
    }
    if !released.is_empty() {
        deliveries::release_claims(c, &released)?;
    }
    let mut claims = claims.into_iter();
    let mut answers = Vec::with_capacity(ops.len());
    for op in ops {
        answers.push(match op {
            Op::Sending(s) => Ok(Answer::Claimed({
                let (claim, capped) = claims.next().unwrap_or_default();
                Claimed {
                    claim,
                    capped,
                    marked: s
                        .marks
                        .iter()
                        .map(|(id, _)| now_marked.contains(id))
                        .collect(),
                }
            })),
            Op::Sent { items, .. } => Ok(Answer::Sent(
                items
                    .iter()
                    .map(|i| now_sent.contains(&i.delivery))
                    .collect(),
            )),
            Op::Release(_) => Ok(Answer::Done),
            Op::Other(outcome) => match outcome.write(c) {
                Ok(()) => Ok(Answer::Done),
                Err(e @ StoreError::Invalid(_)) => Err(e),
                Err(e) => return Err(e),
            },
        });
    }
    Ok(answers)
}

/// A group's claim (fresh range), then its frequency caps: each first
/// attempt that will be sent is checked and counted, and those over a cap
/// are skipped as `capped` — all in the transaction that claims them. The
/// counted marks are added to `counted_marks` (uncounted if their row
/// turns out not to be pending).
fn claim_group<'a>(
    c: &Connection,
    s: &'a Sending,
    counted_marks: &mut Vec<&'a CapItem>,
) -> Result<(Option<ClaimId>, HashSet<DeliveryId>), StoreError> {
    let claim = match s.fresh {
        Some((first, last)) => deliveries::claim(c, s.push, first, last, s.at)?,
        None => None,
    };
    let Some(caps) = &s.caps else {
        return Ok((claim, HashSet::new()));
    };
    // Fresh rows go only when their range was claimed (the push runs).
    let going = caps.items.iter().filter(|i| !i.fresh || claim.is_some());
    let capped = policy::reserve(c, &caps.limits, going)?;
    policy::mark_capped(c, &capped)?;
    counted_marks.extend(
        caps.items
            .iter()
            .filter(|i| !i.fresh && !capped.contains(&i.delivery)),
    );
    Ok((claim, capped))
}

async fn run(store: Store, push: PushId, mut rx: mpsc::UnboundedReceiver<Item>) {
    loop {
        let queued = next_batch(&mut rx, MAX_BATCH).await;
        if queued.is_empty() {
            return;
        }
        // Claims and `sending` marks hold sends back until committed: they
        // go first, in a transaction of their own; outcomes follow.
        let (first, rest): (Vec<Item>, Vec<Item>) = queued
            .into_iter()
            .partition(|i| matches!(i.op, Op::Sending(_)));
        for (items, urgent) in [(first, true), (rest, false)] {
            if !items.is_empty() {
                tokio::spawn(write_batch(store.clone(), push, items, urgent));
            }
        }
    }
}

/// Writes one batch and answers its callers. Not waited for by the recorder:
/// the next ops go to the writer while this batch is written (the writer
/// takes all queued jobs together). Batches are independent: a send's `sent`
/// op only exists once its `sending` op was answered.
async fn write_batch(store: Store, push: PushId, items: Vec<Item>, urgent: bool) {
    let (ops, replies): (Vec<Op>, Vec<_>) = items.into_iter().map(|i| (i.op, i.reply)).unzip();
    let job = move |c: &Connection| apply_batch(c, push, ops);
    let result = if urgent {
        store.write_first(job).await
    } else {
        store.write(job).await
    };
    match result {
        Ok(answers) => {
            for (reply, a) in replies.into_iter().zip(answers) {
                if let Some(reply) = reply {
                    let _ = reply.send(a);
                }
            }
        }
        Err(e) => {
            for reply in replies.into_iter().flatten() {
                let _ = reply.send(Err(e.clone()));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{InboundEvent, StatusUpdate};
    use crate::store::pushes;
    use crate::store::receipts::ApplyContext;

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
        pushes::mark_started(c, p, None, None)?;
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
        // The first two are fresh (claimed as a range), the third is marked.
        let sending = vec![Op::Sending(Sending {
            push: p,
            fresh: Some((ids[0], ids[1])),
            marks: vec![(ids[2], sim.clone())],
            at: 1,
            caps: None,
        })];
        let r = store
            .write_blocking(move |c| apply_batch(c, p, sending))
            .unwrap();
        assert_eq!(r.len(), 1);
        let Ok(Answer::Claimed(claimed)) = &r[0] else {
            panic!("not claimed")
        };
        let claim = claimed.claim.expect("a running push is claimed");
        assert_eq!(claimed.marked, vec![true]);
        let states = |store: &Store| -> Vec<i64> {
            store
                .read_blocking(|c| {
                    Ok(c.prepare(&format!(
                        "SELECT {} FROM deliveries d ORDER BY d.id",
                        deliveries::STATE_SQL
                    ))?
                    .query_map([], |r| r.get(0))?
                    .collect::<rusqlite::Result<_>>()?)
                })
                .unwrap()
        };
        assert_eq!(
            states(&store),
            vec![1, 1, 1],
            "claimed and marked are all sending"
        );
        // Two of three sends are recorded (in two ops), plus one for a row
        // that is not `sending`.
        let item = |delivery, pid: &str, at| SentItem {
            delivery,
            provider_id: pid.into(),
            at,
            sending_at: 1,
        };
        let sent = vec![
            Op::Sent {
                items: vec![item(ids[0], "pm-1", 2)].into(),
                channel: sim.clone(),
                platform: Platform::Simulator,
            },
            Op::Sent {
                items: vec![item(ids[1], "pm-2", 3), item(999, "pm-x", 2)].into(),
                channel: sim.clone(),
                platform: Platform::Simulator,
            },
            Op::Release(claim),
        ];
        let r = store
            .write_blocking(move |c| apply_batch(c, p, sent))
            .unwrap();
        let flags = |a: &Result<Answer, StoreError>| match a {
            Ok(Answer::Sent(f)) => f.clone(),
            _ => panic!("not a sent answer"),
        };
        assert_eq!(flags(&r[0]), vec![true]);
        assert_eq!(flags(&r[1]), vec![true, false]);
        assert_eq!(states(&store), vec![2, 2, 1]);
        let (attempts, sending_at, claims): (i64, i64, i64) = store
            .read_blocking(|c| {
                Ok(c.query_row(
                    "SELECT sum(attempts), sum(sending_at), (SELECT count(*) FROM claims) FROM deliveries",
                    [],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
                )?)
            })
            .unwrap();
        assert_eq!(
            (attempts, sending_at, claims),
            (3, 3, 0),
            "one attempt each, claim released"
        );
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
