//! Sending: the walk's gathered sends go out as one task per group — one
//! `sending` write (a claim) for all of them before any request leaves, then
//! every request concurrently, each outcome recorded through the push's
//! recorder (successes in runs, one `sent` write for whatever completed
//! together). Writes are retried through storage faults, so no decision is
//! left unrecorded.

use super::Dispatcher;
use super::holds::Hold;
use super::policy::Rules;
use super::rate::{backoff, jitter};
use crate::channel::{ChannelRef, Recipient};
use crate::model::{DeliveryId, ErrorClass, Millis, Outbound, PushId, SendError, now_ms};
use crate::store::StoreError;
use crate::store::deliveries::Attempt;
use crate::store::policy::CapCheck;
use crate::store::recorder::{Outcome as Recorded, Recorder, Sending, SentItem};
use crate::util::group_by;
use futures::FutureExt;
use futures::future::BoxFuture;
use futures::stream::{FuturesUnordered, StreamExt};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::OwnedSemaphorePermit;
use tokio::task::JoinSet;

/// What a finished send task reports back to the runner.
pub(super) enum Outcome {
    Done,
    /// The channel refused our credentials: pause the push.
    AuthFailed(String),
    /// None of its recipients could be claimed (the push stopped running, or
    /// the store refused the write): they stay pending, and the next pass
    /// must read the whole push again to find them.
    Unclaimed,
}

/// Retries a write through storage faults (flagged, so sends hold) until it
/// lands, so the walk never leaves a decision unrecorded; gives up only when
/// the daemon stops.
pub(super) async fn persist(d: &Arc<Dispatcher>, rec: &Recorder, outcome: Recorded) -> bool {
    persist_with(d, || rec.record(outcome.clone())).await
}

/// [`persist`] for any write `attempt` makes (e.g. a batched recorder op).
pub(super) async fn persist_with<A, Fut>(d: &Arc<Dispatcher>, attempt: A) -> bool
where
    A: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<(), StoreError>>,
{
    let mut delay = Duration::from_millis(100);
    loop {
        match attempt().await {
            Ok(()) => return true,
            Err(e) if e.is_storage_fault() || matches!(e, StoreError::Sqlite(_)) => {
                d.store.mark_fault(&e);
                if d.shutdown.is_cancelled() {
                    return false;
                }
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(5));
            }
            Err(e) => {
                tracing::debug!(error = %e, "delivery no longer in the expected state");
                return false;
            }
        }
    }
}

/// A recipient whose channel is held: pending again, due when the hold
/// ends, its attempt refunded (it was never the recipient's failure).
async fn hold_back(
    d: &Arc<Dispatcher>,
    rec: &Recorder,
    delivery: DeliveryId,
    channel: &str,
    sending_at: Millis,
    hold: Hold,
) -> Step {
    let retry = Recorded::Retry {
        delivery,
        attempt: Attempt {
            channel: channel.to_string(),
            sending_at,
        },
        class: hold.error.class,
        code: hold.error.code,
        message: hold.error.message,
        next_at: hold.until,
        refund: true,
    };
    Step::Recorded(persist(d, rec, retry).await)
}

/// One routed recipient holding its claim, ready to send.
pub(super) struct SendTask {
    pub(super) delivery: DeliveryId,
    /// Never attempted, not deferred: claimed with its group's range rather
    /// than marked `sending` on its own.
    pub(super) fresh: bool,
    pub(super) attempts_before: u32,
    pub(super) user: String,
    pub(super) member_id: i64,
    /// The member's timezone (its calendar day is what a cap counts in).
    pub(super) tz: chrono_tz::Tz,
    pub(super) channel: ChannelRef,
    pub(super) outbound: Outbound,
    pub(super) claim: OwnedSemaphorePermit,
}

/// Sends gathered by the walk and launched together as one task: one
/// `sending` write for all of them, then every send concurrently, their
/// successes recorded in runs (one `sent` write for whatever completed
/// together).
pub(super) struct Group {
    pub(super) d: Arc<Dispatcher>,
    pub(super) rec: Recorder,
    pub(super) push: PushId,
    pub(super) sends: Vec<SendTask>,
    /// The policy in force when the sends were gathered (caps are checked
    /// and counted with the claim).
    pub(super) rules: Option<Rules>,
}

/// What one send of a group produced.
enum Step {
    /// Sent on this channel; to be recorded with the next run of completions.
    Sent(ChannelRef, SentItem),
    /// Its outcome (failure, retry), or a run of successes, was written:
    /// true, or could not be (false: the daemon is stopping).
    Recorded(bool),
    /// The channel refused our credentials.
    AuthFailed(String),
}

impl Group {
    pub(super) fn new(d: &Arc<Dispatcher>, rec: &Recorder, push: PushId) -> Group {
        Group {
            d: d.clone(),
            rec: rec.clone(),
            push,
            sends: Vec::new(),
            rules: None,
        }
    }

    /// Spawns the gathered sends (if any) as one task.
    pub(super) fn launch(&mut self, inflight: &mut JoinSet<Outcome>) {
        if self.sends.is_empty() {
            return;
        }
        let sends = std::mem::take(&mut self.sends);
        inflight.spawn(run_group(
            self.d.clone(),
            self.rec.clone(),
            self.push,
            sends,
            self.rules,
        ));
    }
}

async fn run_group(
    d: Arc<Dispatcher>,
    rec: Recorder,
    push: PushId,
    sends: Vec<SendTask>,
    rules: Option<Rules>,
) -> Outcome {
    // Committed before any request leaves: a crash after this point ends
    // the rows as failed/interrupted, never as a silent double send.
    let at = now_ms();
    let fresh = sends.iter().filter(|s| s.fresh).map(|s| s.delivery);
    let range = fresh.clone().min().zip(fresh.max());
    let marks = sends
        .iter()
        .filter(|s| !s.fresh)
        .map(|s| (s.delivery, Arc::<str>::from(s.channel.name())))
        .collect();
    let caps = cap_check(rules, &sends, at);
    let claimed = match rec
        .sending(Sending {
            push,
            fresh: range,
            marks,
            at,
            caps,
        })
        .await
    {
        Ok(c) => c,
        Err(e) => {
            // Not claimed, not sent: the rows stay pending for later.
            d.store.mark_fault(&e);
            return Outcome::Unclaimed;
        }
    };
    // Fresh rows left unclaimed (the push stopped running meanwhile) stay
    // pending behind the walk.
    let unclaimed = range.is_some() && claimed.claim.is_none();
    let mut marked = claimed.marked.into_iter();
    let go: Vec<bool> = sends
        .iter()
        .map(|s| {
            let claimed_now = if s.fresh {
                claimed.claim.is_some()
            } else {
                marked.next().unwrap_or(false)
            };
            // Over a cap: skipped as `capped` by the claim's own write.
            claimed_now && !claimed.capped.contains(&s.delivery)
        })
        .collect();
    let mut running: FuturesUnordered<BoxFuture<'static, Step>> = sends
        .into_iter()
        .zip(go)
        .filter(|(_, ok)| *ok)
        .map(|(s, _)| s.run(d.clone(), rec.clone(), at).boxed())
        .collect();
    let mut outcome = if unclaimed {
        Outcome::Unclaimed
    } else {
        Outcome::Done
    };
    let mut all_recorded = true;
    let mut completed: Vec<(ChannelRef, SentItem)> = Vec::new();
    loop {
        let step = match running.next().now_or_never() {
            Some(Some(step)) => step,
            // Nothing else is ready, or nothing is left: record what
            // completed (the recording joins `running`).
            _ if !completed.is_empty() => {
                running.push(record_sent(&d, &rec, push, std::mem::take(&mut completed)).boxed());
                continue;
            }
            Some(None) => break,
            None => match running.next().await {
                Some(step) => step,
                None => break,
            },
        };
        match step {
            Step::Sent(channel, item) => completed.push((channel, item)),
            Step::Recorded(ok) => all_recorded &= ok,
            Step::AuthFailed(reason) => outcome = Outcome::AuthFailed(reason),
        }
    }
    // Every claimed row has its outcome: the claim has done its job. One
    // whose outcome could not be written keeps its rows `sending` (so they
    // end interrupted, never resent).
    if let Some(claim) = claimed.claim
        && all_recorded
    {
        rec.release(claim);
    }
    outcome
}

/// What the claim checks and counts under the caps in force: the group's
/// first attempts (a retry was counted when it was first claimed), each in
/// its member's calendar day at the claim's time.
fn cap_check(rules: Option<Rules>, sends: &[SendTask], at: Millis) -> Option<CapCheck> {
    let rules = rules?;
    let limits = rules.caps?;
    Some(CapCheck {
        limits,
        items: sends
            .iter()
            .filter(|s| s.attempts_before == 0)
            .map(|s| rules.cap_item(s.delivery, s.member_id, s.tz, at, s.fresh))
            .collect(),
    })
}

/// Records a run of successful sends (one write per channel among them).
fn record_sent(
    d: &Arc<Dispatcher>,
    rec: &Recorder,
    push: PushId,
    completed: Vec<(ChannelRef, SentItem)>,
) -> impl std::future::Future<Output = Step> + Send + 'static {
    let (d, rec) = (d.clone(), rec.clone());
    async move {
        let mut ok = true;
        // By channel instance (a reload may leave two with one name in
        // flight: then it is two writes, each correct).
        for (_, sends) in group_by(completed, |(ch, _)| Arc::as_ptr(ch) as *const () as usize) {
            let platform = sends[0].0.platform();
            let channel: Arc<str> = sends[0].0.name().into();
            d.metrics.record_sent(&channel, sends.len() as u64);
            d.record_sends(push, sends.iter().map(|(_, item)| item.at));
            let items: Arc<[SentItem]> = sends.into_iter().map(|(_, item)| item).collect();
            ok &= persist_with(&d, || {
                let (rec, items, channel) = (rec.clone(), items.clone(), channel.clone());
                async move { rec.sent(items, channel, platform).await.map(|_| ()) }
            })
            .await;
        }
        Step::Recorded(ok)
    }
}

impl SendTask {
    async fn run(self, d: Arc<Dispatcher>, rec: Recorder, sending_at: Millis) -> Step {
        let did = self.delivery;
        let attempts = self.attempts_before + 1;
        let recipient = Recipient {
            member_id: self.member_id,
            channel_user_id: self.user,
            delivery_id: did,
            attempt: attempts,
        };
        // A chat's previous message at least a second ago, where the
        // platform asks it (waiting before the request slot is taken).
        let turn = d
            .chat_gaps
            .turn_for(&*self.channel, &recipient.channel_user_id)
            .await;
        // Marked `sending` already: wait for a request slot; the walk may
        // claim another recipient once the request has ended.
        let permit = d.concurrency.clone().acquire_owned().await;
        // Its channel was held while it waited: it does not go out now.
        if let Some(hold) = d.holds.held(self.channel.name()) {
            drop((permit, turn, self.claim));
            return hold_back(&d, &rec, did, self.channel.name(), sending_at, hold).await;
        }
        let result = self.channel.send(&recipient, &self.outbound).await;
        drop(permit);
        drop(turn);
        drop(self.claim);
        let now = now_ms();
        let e = match result {
            // Counted and metered with its run (see `record_sent`).
            Ok(ok) => {
                return Step::Sent(
                    self.channel,
                    SentItem {
                        delivery: did,
                        provider_id: ok.provider_message_id,
                        at: now,
                        sending_at,
                    },
                );
            }
            Err(e) => e,
        };
        d.metrics.record_send_error(self.channel.name(), &e);
        settle_error(&d, &rec, self.channel.name(), did, attempts, sending_at, e).await
    }
}

/// Records a failed request: bad credentials (the push pauses), the
/// channel out of quota (held), a transient error (retried with backoff
/// while attempts last), or a permanent one.
async fn settle_error(
    d: &Arc<Dispatcher>,
    rec: &Recorder,
    channel: &str,
    did: DeliveryId,
    attempts: u32,
    sending_at: Millis,
    e: SendError,
) -> Step {
    let now = now_ms();
    let cfg = d.config.get();
    let attempt = Attempt {
        channel: channel.to_string(),
        sending_at,
    };
    match e {
        SendError {
            class: ErrorClass::Auth,
            code,
            message,
            ..
        } => {
            let reason = format!("channel {}: bad credentials ({code}: {message})", channel);
            persist(
                d,
                rec,
                Recorded::Retry {
                    delivery: did,
                    attempt,
                    class: ErrorClass::Auth,
                    code,
                    message,
                    next_at: now,
                    refund: true,
                },
            )
            .await;
            Step::AuthFailed(reason)
        }
        SendError {
            channel_quota_reset_at: Some(until),
            class,
            code,
            message,
            ..
        } => {
            // The whole channel is out of quota until then: hold it, and
            // this recipient waits for it without spending an attempt.
            let error = SendError::new(class, code, message);
            d.holds.hold(channel, until, &error);
            let hold = Hold { until, error };
            hold_back(d, rec, did, channel, sending_at, hold).await
        }
        e if e.class.is_transient() && attempts < cfg.dispatch.max_attempts => {
            let wait = backoff(
                attempts,
                cfg.dispatch.backoff_base,
                cfg.dispatch.backoff_max,
                e.retry_after,
                jitter(),
            );
            let next = now + wait.as_millis() as i64;
            d.metrics.record_retry(channel);
            tracing::debug!(delivery = did, attempts, class = %e.class, code = %e.code, wait_ms = wait.as_millis() as u64, "transient failure; will retry");
            Step::Recorded(
                persist(
                    d,
                    rec,
                    Recorded::Retry {
                        delivery: did,
                        attempt,
                        class: e.class,
                        code: e.code,
                        message: e.message,
                        next_at: next,
                        refund: false,
                    },
                )
                .await,
            )
        }
        e => Step::Recorded(
            persist(
                d,
                rec,
                Recorded::Failed {
                    delivery: did,
                    attempt,
                    class: e.class,
                    code: e.code,
                    message: e.message,
                    at: now,
                },
            )
            .await,
        ),
    }
}
