//! Taking a send slot: a claim from the dispatcher's pool and every rate
//! limit that applies (the push's, the channel's, the global one), while
//! staying responsive to pause and cancel.

use super::rate::Rate;
use super::{Control, Dispatcher};
use crate::channel::ChannelRef;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, watch};

/// Takes a claim (see `Dispatcher::claims`) and every rate limit that
/// applies, staying responsive to pause/cancel. Claims are taken from
/// `budget`, refilled in bulk (up to `want`, the sends the walk has left in
/// its page): one wake-up of the walk per group of sends, not per send.
/// When anything would have to wait, `before_wait` runs first (the runner
/// launches the sends it has gathered, so they never wait behind the next
/// one). None = stop.
#[allow(clippy::too_many_arguments)]
pub(super) async fn acquire_send_slot(
    d: &Arc<Dispatcher>,
    ctl: &mut watch::Receiver<Control>,
    budget: &mut Option<OwnedSemaphorePermit>,
    want: usize,
    push_rate: Option<&Rate>,
    channel: &ChannelRef,
    before_wait: impl FnOnce(),
) -> Option<OwnedSemaphorePermit> {
    let mut before_wait = Some(before_wait);
    let mut waiting = || {
        if let Some(f) = before_wait.take() {
            f()
        }
    };
    if budget.is_none() {
        *budget = Some(take_claims(d, ctl, want, &mut waiting).await?);
    }
    let permit = match budget.as_mut().and_then(|b| b.split(1)) {
        // The budget's last permit is the budget itself.
        Some(one) if budget.as_ref().is_some_and(|b| b.num_permits() > 0) => one,
        Some(one) => {
            *budget = None;
            one
        }
        None => budget.take()?,
    };
    let per_second = d
        .config
        .get()
        .channels
        .get(channel.name())
        .and_then(|c| c.rate_per_second)
        .or_else(|| channel.default_rate_per_second());
    let channel_rate = d.channel_rate(channel.name(), per_second);
    let global = d.global_rate();
    for rate in [push_rate, Some(&*channel_rate), Some(&*global)]
        .into_iter()
        .flatten()
    {
        if !rate.try_acquire() {
            waiting();
            // Claims are not held idle while the rate holds the walk back
            // (other pushes share the pool).
            *budget = None;
            tokio::select! {
                _ = rate.acquire() => {}
                _ = wait_stop(ctl) => return None,
            }
        }
    }
    Some(permit)
}

/// Up to `want` claims at once, at most half the pool (so claimed sends
/// keep overlapping the ones in flight), waiting for them if need be.
async fn take_claims(
    d: &Arc<Dispatcher>,
    ctl: &mut watch::Receiver<Control>,
    want: usize,
    waiting: &mut impl FnMut(),
) -> Option<OwnedSemaphorePermit> {
    let sem = &d.claims;
    loop {
        let n = want.min(d.concurrency_size()).max(1) as u32;
        if let Ok(p) = sem.clone().try_acquire_many_owned(n) {
            return Some(p);
        }
        waiting();
        tokio::select! {
            p = sem.clone().acquire_many_owned(n) => return p.ok(),
            _ = wait_stop(ctl) => return None,
            // The pool may have been resized meanwhile: ask again.
            _ = tokio::time::sleep(Duration::from_millis(500)) => {}
        }
    }
}

pub(super) async fn wait_stop(ctl: &mut watch::Receiver<Control>) {
    loop {
        if *ctl.borrow_and_update() != Control::Run {
            return;
        }
        if ctl.changed().await.is_err() {
            return;
        }
    }
}
