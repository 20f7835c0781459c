//! One running push: resolve its audience once, then walk the pending
//! recipients in order — route and render with the push's pinned script
//! generation, wait for rate and concurrency, mark `sending` (committed),
//! send, record the outcome. Transient failures go back to pending with a
//! backoff time; the walk comes back for them.

use super::rate::{Rate, backoff, jitter};
use super::record::{Recorder, Sending, SentItem};
use super::{Control, resolve};
use crate::channel::{ChannelRef, Recipient};
use crate::daemon::Daemon;
use crate::model::MemberId;
use crate::model::{
    DeliveryId, ErrorClass, Member, Millis, Outbound, PushId, Routed, SendError, now_ms,
};
use crate::script::{Generation, ScriptError};
use crate::store::deliveries::{self, Attempt, Pending};
use crate::store::pushes::{self, PushRow, PushStatus};
use crate::store::{StoreError, audit};
use crate::util::group_by;
use chrono::{NaiveTime, TimeZone};
use futures::FutureExt;
use futures::future::BoxFuture;
use futures::stream::{FuturesUnordered, StreamExt};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, mpsc, watch};
use tokio::task::{JoinHandle, JoinSet};

/// Recipients routed and rendered per round trip to the script host.
const PAGE: u32 = 512;
/// Pages read and routed ahead of the walk (the script pool routes one
/// while the next is read, and the walk never waits for both in turn).
const AHEAD: usize = 3;

/// Most sends handed to one group task (one `sending` write for all of them).
const GROUP: usize = 128;

#[derive(Debug, thiserror::Error)]
enum RunError {
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The push cannot run as configured; it is paused with this reason.
    #[error("{0}")]
    Setup(String),
}

/// What a finished send task reports back to the runner.
enum Outcome {
    Done,
    /// The channel refused our credentials: pause the push.
    AuthFailed(String),
    /// None of its recipients could be claimed (the push stopped running, or
    /// the store refused the write): they stay pending, and the next pass
    /// must read the whole push again to find them.
    Unclaimed,
}

pub(super) async fn run(d: Arc<Daemon>, push: PushId, mut ctl: watch::Receiver<Control>) {
    let reason = loop {
        match run_push(&d, push, &mut ctl).await {
            Ok(()) => return,
            Err(RunError::Setup(reason)) => break reason,
            // The disk filled up or went read-only: hold, then carry on where
            // we were once writes succeed again (nothing was lost meanwhile).
            Err(RunError::Store(e)) if e.is_storage_fault() => {
                d.dispatcher.set_storage_fault(&d, Some(&e));
                tokio::select! {
                    _ = d.dispatcher.wait_storage_ok() => {}
                    _ = d.shutdown.cancelled() => return,
                }
            }
            Err(RunError::Store(e)) => break format!("storage: {e}"),
        }
    };
    tracing::error!(push, %reason, "push paused");
    let r = reason.clone();
    if let Err(e) = d
        .store
        .write(move |c| pushes::set_status(c, push, PushStatus::Paused, Some(&r)))
        .await
    {
        tracing::error!(push, error = %e, "cannot record the pause");
    }
    d.audit(
        None,
        "push.pause",
        Some(&push.to_string()),
        false,
        Some(reason),
    )
    .await;
}

/// The generation a push renders with: the one it pinned if still loaded,
/// else the live one (after a restart, old generations are gone).
fn pick_generation(d: &Daemon, push: &PushRow) -> Result<Arc<Generation>, RunError> {
    if let Some(g) = push.generation.and_then(|n| d.pinned_generation(n)) {
        return Ok(g);
    }
    let g = d.generation().ok_or_else(|| {
        RunError::Setup(
            "no script generation is live; fix the scripts (see `pushd status`) and resume".into(),
        )
    })?;
    if let Some(n) = push.generation
        && n != g.number
    {
        tracing::info!(
            push = push.id,
            pinned = n,
            live = g.number,
            "pinned script generation is no longer loaded (restart); continuing with the live one"
        );
    }
    Ok(g)
}

async fn run_push(
    d: &Arc<Daemon>,
    id: PushId,
    ctl: &mut watch::Receiver<Control>,
) -> Result<(), RunError> {
    let push = d
        .store
        .read(move |c| pushes::find(c, &id.to_string()))
        .await?;
    if push.status.is_final() {
        return Ok(());
    }
    let generation = pick_generation(d, &push)?;
    d.pin_generation(id, generation.clone());
    let (gnum, ghash) = (generation.number, generation.hash.clone());
    d.store
        .write(move |c| pushes::mark_started(c, id, Some(gnum), Some(&ghash)))
        .await?;
    // An audience still being frozen in chunks behind the walk.
    let mut resolving: Option<watch::Receiver<resolve::Progress>> = None;
    if !push.resolved {
        match resolve::resolve(d, &push, &generation)
            .await
            .map_err(|e| match e {
                resolve::ResolveError::Store(e) => RunError::Store(e),
                resolve::ResolveError::Setup(m) => RunError::Setup(m),
            })? {
            resolve::Resolution::Done(n) => {
                tracing::info!(push = id, name = %push.name, recipients = n, "audience frozen");
            }
            resolve::Resolution::InChunks(rx) => resolving = Some(rx),
        }
    }
    let push = d
        .store
        .read(move |c| pushes::find(c, &id.to_string()))
        .await?;
    let push_rate = push.rate_per_minute.map(Rate::per_minute);
    let window = send_window(&push)?;
    let mut batch = BatchClock::new(&push);
    let mut inflight: JoinSet<Outcome> = JoinSet::new();
    let rec = Recorder::start(d.store.clone(), id);
    let load = PageLoader {
        d: d.clone(),
        generation: generation.clone(),
        template: push.template.clone().into(),
        push: id,
        window: window.is_some(),
    };
    // The next pages, read and routed while the current one is being sent.
    let mut ahead: Option<ReadAhead> = None;
    // A full pass reads every pending recipient; after one, only recipients
    // given a time to wait for (retries, deferrals) can be pending behind
    // the walk, unless a group went unclaimed (`Outcome::Unclaimed`).
    let mut full = true;
    let mut holes = false;

    // The walk. An error ends it as a stop does: the sends under way
    // finish and are recorded first (dropped, they would end interrupted).
    let walked: Result<Walked, RunError> = async {
        'passes: loop {
            let scan = if std::mem::take(&mut full) {
                Scan::All
            } else {
                Scan::Waiting
            };
            let mut cursor: DeliveryId = 0;
            // Claims left from before (a send whose outcome could not be
            // recorded) keep their rows `sending`: the walk must step over them.
            let skip_claimed = d.store.read(move |c| deliveries::has_claims(c, id)).await?;
            let mut saw_due = false;
            let mut earliest_later: Option<Millis> = None;
            loop {
                if !wait_runnable(d, ctl, &mut inflight, &mut holes).await {
                    break 'passes;
                }
                holes |= reap(d, id, &mut inflight, ctl).await;
                let page = ahead
                    .get_or_insert_with(|| load.ahead(cursor, scan, skip_claimed))
                    .next()
                    .await?;
                let Some(last) = page.last else {
                    // (The reader has ended: a next read starts one from here.)
                    ahead = None;
                    // Caught up with a resolution still freezing the audience:
                    // wait for its next chunk (or its end) and read on.
                    match more_to_come(&mut resolving, ctl).await {
                        Ok(true) => continue,
                        Ok(false) => break,
                        Err(e) => return Err(e),
                    }
                };
                cursor = last;
                if let Some(t) = page.later_min {
                    earliest_later = Some(earliest_later.map_or(t, |e| e.min(t)));
                }
                if page.due.is_empty() {
                    continue;
                }
                saw_due = true;
                let mut group = Group::new(d, &rec, id);
                // Claim permits taken in bulk for the sends being gathered.
                let mut budget: Option<OwnedSemaphorePermit> = None;
                let due = page.due.len();
                for (i, (p, r)) in page.due.into_iter().enumerate() {
                    if !runnable_now(d, ctl) {
                        group.launch(&mut inflight);
                        if !wait_runnable(d, ctl, &mut inflight, &mut holes).await {
                            break 'passes;
                        }
                    }
                    match r {
                        Err(e) => {
                            group.launch(&mut inflight);
                            let msg = e.to_string();
                            let did = p.delivery_id;
                            // Failed before any request: an attempt on no channel.
                            persist(d, &rec, move |c| {
                                let now = now_ms();
                                let attempt = Attempt {
                                    channel: String::new(),
                                    sending_at: now,
                                };
                                deliveries::mark_failed(
                                    c,
                                    did,
                                    &attempt,
                                    ErrorClass::Rejected,
                                    "script_error",
                                    &msg,
                                    now,
                                )
                            })
                            .await;
                        }
                        Ok(Routed::Skip { reason }) => {
                            group.launch(&mut inflight);
                            let did = p.delivery_id;
                            persist(d, &rec, move |c| deliveries::mark_skipped(c, did, &reason)).await;
                        }
                        Ok(Routed::Send { channel, outbound }) => {
                            let Some(ch) = d.channel(&channel) else {
                                group.launch(&mut inflight);
                                let did = p.delivery_id;
                                let reason = format!("channel {channel:?} is not configured");
                                persist(d, &rec, move |c| deliveries::mark_skipped(c, did, &reason))
                                    .await;
                                continue;
                            };
                            if let Some(w) = &window
                                && let Some(until) = w.defer_until(&p.timezone, now_ms())
                            {
                                group.launch(&mut inflight);
                                let did = p.delivery_id;
                                persist(d, &rec, move |c| deliveries::defer(c, did, until)).await;
                                earliest_later = Some(earliest_later.map_or(until, |e| e.min(until)));
                                continue;
                            }
                            if batch.full() {
                                group.launch(&mut inflight);
                            }
                            if !batch.wait_turn(ctl).await {
                                break 'passes;
                            }
                            let want = (due - i).min(GROUP);
                            let Some(permit) = acquire_send_slot(
                                d,
                                ctl,
                                &mut budget,
                                want,
                                push_rate.as_ref(),
                                &ch,
                                || group.launch(&mut inflight),
                            )
                            .await
                            else {
                                break 'passes;
                            };
                            batch.count();
                            group.sends.push(SendTask {
                                delivery: p.delivery_id,
                                fresh: p.fresh,
                                attempts_before: p.attempts,
                                user: p.user,
                                member_id: p.member_id,
                                channel: ch,
                                outbound,
                                claim: permit,
                            });
                            if group.sends.len() >= GROUP {
                                group.launch(&mut inflight);
                            }
                        }
                    }
                }
                group.launch(&mut inflight);
            }
            // A full pass is done. Wait for in-flight sends (they may requeue retries).
            while let Some(r) = inflight.join_next().await {
                holes |= handle_outcome(d, id, r, ctl).await;
            }
            full = std::mem::take(&mut holes);
            if *ctl.borrow() != Control::Run {
                full = true;
                continue 'passes;
            }
            if saw_due {
                continue 'passes;
            }
            match earliest_later {
                Some(t) => {
                    let wait = Duration::from_millis((t - now_ms()).max(0) as u64);
                    tokio::select! {
                        _ = tokio::time::sleep(wait) => {}
                        _ = ctl.changed() => {}
                    }
                }
                None => {
                    let counts = d.store.read(move |c| pushes::counts(c, id)).await?;
                    if counts.remaining() == 0 {
                        d.store
                            .write(move |c| pushes::mark_completed(c, id))
                            .await?;
                        d.unpin_generation(id);
                        tracing::info!(push = id, name = %push.name, sent = counts.sent, failed = counts.failed, "push completed");
                        let _ = d
                            .store
                            .write(move |c| {
                                audit::record(
                                    c,
                                    None,
                                    "push.complete",
                                    Some(&id.to_string()),
                                    true,
                                    None,
                                )
                            })
                            .await;
                        return Ok(Walked::Completed);
                    }
                    if scan == Scan::Waiting {
                        // Something is pending that only a full pass can find.
                        full = true;
                        continue 'passes;
                    }
                    // Rows still `sending` belong to nobody in this process (cannot
                    // happen after startup settles them); look again shortly.
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
        Ok(Walked::Stopped)
    }
    .await;
    drop(ahead);
    while let Some(r) = inflight.join_next().await {
        handle_outcome(d, id, r, ctl).await;
    }
    if walked? == Walked::Completed {
        return Ok(());
    }
    // Stopped by control.
    let control = *ctl.borrow();
    if control == Control::Cancel {
        finish_cancel(d, id).await?;
    }
    d.unpin_generation(id);
    Ok(())
}

/// How a walk ended without an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Walked {
    /// Every recipient has its outcome; the push is marked completed.
    Completed,
    /// Paused, cancelled or shut down (see the control).
    Stopped,
}

/// One page of pending recipients: the due ones with their routed messages.
struct Page {
    /// The last delivery read (the cursor for the next page); None = no more.
    last: Option<DeliveryId>,
    due: Vec<(Due, Result<Routed, ScriptError>)>,
    /// The earliest retry/deferral time among the page's not-yet-due rows.
    later_min: Option<Millis>,
}

/// Which pending recipients a pass reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scan {
    /// All of them, through the push index.
    All,
    /// Only those with a time to wait for (retries, deferrals), through
    /// their own small index.
    Waiting,
}

/// What the walk keeps of a due recipient (its member goes to the script host).
struct Due {
    delivery_id: DeliveryId,
    attempts: u32,
    /// Never attempted, not deferred (see `SendTask::fresh`).
    fresh: bool,
    member_id: MemberId,
    user: String,
    /// Only read (and kept) when the push has a send window.
    timezone: String,
}

impl Due {
    fn of(p: &Pending, with_timezone: bool) -> Due {
        Due {
            delivery_id: p.delivery_id,
            attempts: p.attempts,
            fresh: p.attempts == 0 && p.next_attempt_at.is_none(),
            member_id: p.member.id,
            user: p.member.channel_user_id.clone(),
            timezone: if with_timezone {
                p.member.timezone.clone()
            } else {
                String::new()
            },
        }
    }
}

/// Reads and routes pages off the walk's path, so the next page's database
/// read and Lua work overlap the current page's sends.
struct PageLoader {
    d: Arc<Daemon>,
    generation: Arc<Generation>,
    template: Arc<str>,
    push: PushId,
    /// The push has a send window (the walk needs each member's timezone).
    window: bool,
}

/// Pages read ahead of the walk, in order ([`PageLoader::ahead`]).
struct ReadAhead {
    pages: mpsc::Receiver<JoinHandle<Result<Page, StoreError>>>,
    reader: JoinHandle<()>,
}

impl ReadAhead {
    async fn next(&mut self) -> Result<Page, StoreError> {
        let page = self
            .pages
            .recv()
            .await
            .ok_or_else(|| StoreError::Sqlite("page reader stopped".into()))?;
        page.await
            .map_err(|e| StoreError::Sqlite(format!("page loader failed: {e}")))?
    }
}

impl Drop for ReadAhead {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

impl PageLoader {
    /// Reads the pending recipients after `after`, page after page, each
    /// read starting as soon as the one before returns, and routes each
    /// page on the script pool while the next is read: up to [`AHEAD`]
    /// pages ahead of the walk. Ends with the first empty page (or error).
    fn ahead(&self, after: DeliveryId, scan: Scan, skip_claimed: bool) -> ReadAhead {
        let (tx, rx) = mpsc::channel(AHEAD - 1);
        let (d, g, template, push, window) = (
            self.d.clone(),
            self.generation.clone(),
            self.template.clone(),
            self.push,
            self.window,
        );
        let reader = tokio::spawn(async move {
            let mut after = after;
            loop {
                let read = d
                    .store
                    .read(move |c| {
                        deliveries::pending_page(
                            c,
                            push,
                            after,
                            PAGE,
                            scan == Scan::Waiting,
                            skip_claimed,
                        )
                    })
                    .await;
                let last = match &read {
                    Ok(rows) => rows.last().map(|p| p.delivery_id),
                    Err(_) => None,
                };
                let (g, template) = (g.clone(), template.clone());
                let page =
                    tokio::spawn(async move { route_page(&g, &template, window, read?).await });
                if tx.send(page).await.is_err() {
                    return;
                }
                match last {
                    Some(last) => after = last,
                    None => return,
                }
            }
        });
        ReadAhead { pages: rx, reader }
    }
}

/// Splits a page read into due and later recipients and routes the due ones.
async fn route_page(
    g: &Generation,
    template: &str,
    window: bool,
    page: Vec<Pending>,
) -> Result<Page, StoreError> {
    let Some(last) = page.last().map(|p| p.delivery_id) else {
        return Ok(Page {
            last: None,
            due: Vec::new(),
            later_min: None,
        });
    };
    let now = now_ms();
    let (due, later): (Vec<Pending>, Vec<Pending>) = page
        .into_iter()
        .partition(|p| p.next_attempt_at.is_none_or(|t| t <= now));
    let later_min = later.iter().map(|p| p.next_attempt_at.unwrap_or(now)).min();
    let keep: Vec<Due> = due.iter().map(|p| Due::of(p, window)).collect();
    let members: Vec<Member> = due.into_iter().map(|p| p.member).collect();
    let routed = if members.is_empty() {
        Vec::new()
    } else {
        g.prepare(template, members, now).await
    };
    Ok(Page {
        last: Some(last),
        due: keep.into_iter().zip(routed).collect(),
        later_min,
    })
}

/// Cancel: what never left stays out for good.
async fn finish_cancel(d: &Arc<Daemon>, id: PushId) -> Result<(), StoreError> {
    d.store
        .write(move |c| {
            let n = deliveries::cancel_pending(c, id)?;
            pushes::set_status(c, id, PushStatus::Cancelled, None)?;
            Ok(n)
        })
        .await?;
    Ok(())
}

/// At the end of what is frozen so far: true when the walk should read on
/// (a chunk was added, the resolution just ended, or the push was told to
/// pause or stop — the walk's own checks handle that), false when the
/// audience is frozen whole and read to its end.
async fn more_to_come(
    resolving: &mut Option<watch::Receiver<resolve::Progress>>,
    ctl: &mut watch::Receiver<Control>,
) -> Result<bool, RunError> {
    let Some(rx) = resolving else {
        return Ok(false);
    };
    let progress = rx.borrow_and_update().clone();
    match progress {
        resolve::Progress::Done => {
            // Rows frozen since the last read are read once more.
            *resolving = None;
            Ok(true)
        }
        resolve::Progress::Failed(e) => Err(RunError::Store(e)),
        resolve::Progress::Running => {
            tokio::select! {
                r = rx.changed() => {
                    if r.is_err() {
                        // The resolution stopped for the shutdown: wait for
                        // it to reach the walk.
                        let _ = ctl.wait_for(|c| *c != Control::Run).await;
                    }
                }
                _ = ctl.changed() => {}
            }
            Ok(true)
        }
    }
}

/// True when the walk may go on without waiting.
fn runnable_now(d: &Daemon, ctl: &watch::Receiver<Control>) -> bool {
    *ctl.borrow() == Control::Run && !d.dispatcher.storage_fault()
}

/// Blocks while the push is paused or storage is faulted; false = stop walking.
async fn wait_runnable(
    d: &Arc<Daemon>,
    ctl: &mut watch::Receiver<Control>,
    inflight: &mut JoinSet<Outcome>,
    holes: &mut bool,
) -> bool {
    loop {
        let c = *ctl.borrow();
        match c {
            Control::Cancel | Control::Shutdown => return false,
            Control::Pause => {
                // Finish what is in flight, then wait to be resumed.
                while let Some(r) = inflight.join_next().await {
                    match r {
                        Ok(Outcome::AuthFailed(reason)) => {
                            tracing::warn!(%reason, "send refused while pausing")
                        }
                        Ok(Outcome::Unclaimed) => *holes = true,
                        _ => {}
                    }
                }
                if ctl.changed().await.is_err() {
                    return false;
                }
            }
            Control::Run if d.dispatcher.storage_fault() => {
                tokio::select! {
                    _ = d.dispatcher.storage_recovered.notified() => {}
                    _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                    r = ctl.changed() => if r.is_err() { return false },
                }
            }
            Control::Run => return true,
        }
    }
}

/// Handles the finished send tasks; true when one went unclaimed.
async fn reap(
    d: &Arc<Daemon>,
    id: PushId,
    inflight: &mut JoinSet<Outcome>,
    ctl: &mut watch::Receiver<Control>,
) -> bool {
    let mut unclaimed = false;
    while let Some(r) = inflight.try_join_next() {
        unclaimed |= handle_outcome(d, id, r, ctl).await;
    }
    unclaimed
}

/// Acts on one finished send task; true when it went unclaimed.
async fn handle_outcome(
    d: &Arc<Daemon>,
    id: PushId,
    r: Result<Outcome, tokio::task::JoinError>,
    _ctl: &mut watch::Receiver<Control>,
) -> bool {
    match r {
        Ok(Outcome::Done) => {}
        Ok(Outcome::Unclaimed) => return true,
        Ok(Outcome::AuthFailed(reason)) => {
            if d.dispatcher.control(id, Control::Pause) {
                tracing::error!(push = id, %reason, "bad credentials: pausing the push (fix the channel's token, then `pushd push resume`)");
                let r = reason.clone();
                let _ = d
                    .store
                    .write(move |c| pushes::set_status(c, id, PushStatus::Paused, Some(&r)))
                    .await;
                d.audit(
                    None,
                    "push.pause",
                    Some(&id.to_string()),
                    true,
                    Some(reason),
                )
                .await;
            }
        }
        Err(e) => tracing::error!(push = id, error = %e, "send task failed"),
    }
    false
}

/// Takes a claim (see `Dispatcher::claims`) and every rate limit that
/// applies, staying responsive to pause/cancel. Claims are taken from
/// `budget`, refilled in bulk (up to `want`, the sends the walk has left in
/// its page): one wake-up of the walk per group of sends, not per send.
/// When anything would have to wait, `before_wait` runs first (the runner
/// launches the sends it has gathered, so they never wait behind the next
/// one). None = stop.
#[allow(clippy::too_many_arguments)]
async fn acquire_send_slot(
    d: &Arc<Daemon>,
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
        .config()
        .channels
        .get(channel.name())
        .and_then(|c| c.rate_per_second)
        .or_else(|| channel.default_rate_per_second());
    let channel_rate = d.dispatcher.channel_rate(channel.name(), per_second);
    let global = d.dispatcher.global_rate();
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
    d: &Arc<Daemon>,
    ctl: &mut watch::Receiver<Control>,
    want: usize,
    waiting: &mut impl FnMut(),
) -> Option<OwnedSemaphorePermit> {
    let sem = &d.dispatcher.claims;
    loop {
        let n = want.min(d.dispatcher.concurrency_size()).max(1) as u32;
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

async fn wait_stop(ctl: &mut watch::Receiver<Control>) {
    loop {
        if *ctl.borrow_and_update() != Control::Run {
            return;
        }
        if ctl.changed().await.is_err() {
            return;
        }
    }
}

/// Retries a write through storage faults (flagged, so sends hold) until it
/// lands, so the walk never leaves a decision unrecorded; gives up only when
/// the daemon stops.
async fn persist<F>(d: &Arc<Daemon>, rec: &Recorder, f: F) -> bool
where
    F: Fn(&rusqlite::Connection) -> Result<(), StoreError> + Send + Sync + Clone + 'static,
{
    persist_with(d, || {
        let attempt = f.clone();
        rec.write(move |c| attempt(c))
    })
    .await
}

/// [`persist`] for any write `attempt` makes (e.g. a batched recorder op).
async fn persist_with<A, Fut>(d: &Arc<Daemon>, attempt: A) -> bool
where
    A: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<(), StoreError>>,
{
    let mut delay = Duration::from_millis(100);
    loop {
        match attempt().await {
            Ok(()) => return true,
            Err(e) if e.is_storage_fault() || matches!(e, StoreError::Sqlite(_)) => {
                d.dispatcher.set_storage_fault(d, Some(&e));
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

/// One routed recipient holding its claim, ready to send.
struct SendTask {
    delivery: DeliveryId,
    /// Never attempted, not deferred: claimed with its group's range rather
    /// than marked `sending` on its own.
    fresh: bool,
    attempts_before: u32,
    user: String,
    member_id: i64,
    channel: ChannelRef,
    outbound: Outbound,
    claim: OwnedSemaphorePermit,
}

/// Sends gathered by the walk and launched together as one task: one
/// `sending` write for all of them, then every send concurrently, their
/// successes recorded in runs (one `sent` write for whatever completed
/// together).
struct Group {
    d: Arc<Daemon>,
    rec: Recorder,
    push: PushId,
    sends: Vec<SendTask>,
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
    fn new(d: &Arc<Daemon>, rec: &Recorder, push: PushId) -> Group {
        Group {
            d: d.clone(),
            rec: rec.clone(),
            push,
            sends: Vec::new(),
        }
    }

    /// Spawns the gathered sends (if any) as one task.
    fn launch(&mut self, inflight: &mut JoinSet<Outcome>) {
        if self.sends.is_empty() {
            return;
        }
        let sends = std::mem::take(&mut self.sends);
        inflight.spawn(run_group(
            self.d.clone(),
            self.rec.clone(),
            self.push,
            sends,
        ));
    }
}

async fn run_group(d: Arc<Daemon>, rec: Recorder, push: PushId, sends: Vec<SendTask>) -> Outcome {
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
    let claimed = match rec
        .sending(Sending {
            push,
            fresh: range,
            marks,
            at,
        })
        .await
    {
        Ok(c) => c,
        Err(e) => {
            // Not claimed, not sent: the rows stay pending for later.
            d.dispatcher.set_storage_fault(&d, Some(&e));
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
            if s.fresh {
                claimed.claim.is_some()
            } else {
                marked.next().unwrap_or(false)
            }
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

/// Records a run of successful sends (one write per channel among them).
fn record_sent(
    d: &Arc<Daemon>,
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
            d.dispatcher
                .record_sends(push, sends.iter().map(|(_, item)| item.at));
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
    async fn run(self, d: Arc<Daemon>, rec: Recorder, sending_at: Millis) -> Step {
        let did = self.delivery;
        let attempts = self.attempts_before + 1;
        let recipient = Recipient {
            member_id: self.member_id,
            channel_user_id: self.user,
            delivery_id: did,
            attempt: attempts,
        };
        // Marked `sending` already: wait for a request slot; the walk may
        // claim another recipient once the request has ended.
        let permit = d.dispatcher.concurrency.clone().acquire_owned().await;
        let result = self.channel.send(&recipient, &self.outbound).await;
        drop(permit);
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
        let cfg = d.config();
        let attempt = Attempt {
            channel: self.channel.name().to_string(),
            sending_at,
        };
        match e {
            SendError {
                class: ErrorClass::Auth,
                code,
                message,
                ..
            } => {
                let reason = format!(
                    "channel {}: bad credentials ({code}: {message})",
                    self.channel.name()
                );
                persist(&d, &rec, move |c| {
                    deliveries::mark_retry(
                        c,
                        did,
                        &attempt,
                        ErrorClass::Auth,
                        &code,
                        &message,
                        now,
                        true,
                    )
                })
                .await;
                Step::AuthFailed(reason)
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
                d.metrics.record_retry(self.channel.name());
                tracing::debug!(delivery = did, attempts, class = %e.class, code = %e.code, wait_ms = wait.as_millis() as u64, "transient failure; will retry");
                Step::Recorded(
                    persist(&d, &rec, move |c| {
                        deliveries::mark_retry(
                            c, did, &attempt, e.class, &e.code, &e.message, next, false,
                        )
                    })
                    .await,
                )
            }
            e => Step::Recorded(
                persist(&d, &rec, move |c| {
                    deliveries::mark_failed(c, did, &attempt, e.class, &e.code, &e.message, now)
                })
                .await,
            ),
        }
    }
}

/// `send_window = { from, to }` in each member's timezone.
struct Window {
    from: NaiveTime,
    to: NaiveTime,
}

fn send_window(push: &PushRow) -> Result<Option<Window>, RunError> {
    match (&push.window_from, &push.window_to) {
        (Some(f), Some(t)) => {
            let parse = |s: &str| {
                NaiveTime::parse_from_str(s, "%H:%M")
                    .map_err(|_| RunError::Setup(format!("send window time {s:?} is not HH:MM")))
            };
            Ok(Some(Window {
                from: parse(f)?,
                to: parse(t)?,
            }))
        }
        _ => Ok(None),
    }
}

impl Window {
    fn contains(&self, t: NaiveTime) -> bool {
        if self.from <= self.to {
            t >= self.from && t < self.to
        } else {
            t >= self.from || t < self.to // wraps past midnight
        }
    }

    /// None when the member may be messaged now; else when their window opens.
    fn defer_until(&self, timezone: &str, now: Millis) -> Option<Millis> {
        let tz: chrono_tz::Tz = timezone.parse().unwrap_or(chrono_tz::UTC);
        let utc = chrono::DateTime::from_timestamp_millis(now)?;
        let local = utc.with_timezone(&tz);
        if self.contains(local.time()) {
            return None;
        }
        let mut day = local.date_naive();
        if local.time() >= self.from {
            day = day.succ_opt()?;
        }
        let start = tz
            .from_local_datetime(&day.and_time(self.from))
            .earliest()?;
        Some(start.timestamp_millis())
    }
}

/// `batch = { size, every }`: at most `size` sends per `every`.
struct BatchClock {
    size: Option<u32>,
    every: Duration,
    sent: u32,
    started: tokio::time::Instant,
}

impl BatchClock {
    fn new(push: &PushRow) -> BatchClock {
        BatchClock {
            size: push.batch_size.filter(|s| *s > 0),
            every: Duration::from_millis(push.batch_every_ms.unwrap_or(0).max(0) as u64),
            sent: 0,
            started: tokio::time::Instant::now(),
        }
    }

    /// True when the next send has to wait for the next batch.
    fn full(&self) -> bool {
        self.size.is_some_and(|size| self.sent >= size)
    }

    async fn wait_turn(&mut self, ctl: &mut watch::Receiver<Control>) -> bool {
        let Some(size) = self.size else { return true };
        if self.sent < size {
            return true;
        }
        let next = self.started + self.every;
        tokio::select! {
            _ = tokio::time::sleep_until(next) => {}
            _ = wait_stop(ctl) => return false,
        }
        self.started = tokio::time::Instant::now();
        self.sent = 0;
        true
    }

    fn count(&mut self) {
        if self.sent == 0 {
            self.started = tokio::time::Instant::now();
        }
        self.sent += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn send_window_defers_to_the_members_morning() {
        let w = Window {
            from: NaiveTime::from_hms_opt(9, 0, 0).unwrap(),
            to: NaiveTime::from_hms_opt(21, 0, 0).unwrap(),
        };
        // 2026-11-25 23:30 UTC = 07:30 next day in Hong Kong (UTC+8): deferred to 09:00 HKT.
        let now = chrono::Utc
            .with_ymd_and_hms(2026, 11, 25, 23, 30, 0)
            .unwrap()
            .timestamp_millis();
        let until = w.defer_until("Asia/Hong_Kong", now).unwrap();
        let expect = chrono::Utc
            .with_ymd_and_hms(2026, 11, 26, 1, 0, 0)
            .unwrap()
            .timestamp_millis();
        assert_eq!(until, expect);
        // 23:30 in London is outside too: next 09:00 London = 09:00 UTC the next day.
        let until = w.defer_until("Europe/London", now).unwrap();
        let expect = chrono::Utc
            .with_ymd_and_hms(2026, 11, 26, 9, 0, 0)
            .unwrap()
            .timestamp_millis();
        assert_eq!(until, expect);
        // 12:00 UTC is inside for London.
        let noon = chrono::Utc
            .with_ymd_and_hms(2026, 11, 25, 12, 0, 0)
            .unwrap()
            .timestamp_millis();
        assert_eq!(w.defer_until("Europe/London", noon), None);
    }
}
