//! One running push: resolve its audience once, then walk the pending
//! recipients in order — route and render with the push's pinned script
//! generation, wait for rate and concurrency, mark `sending` (committed),
//! send, record the outcome. Transient failures go back to pending with a
//! backoff time; the walk comes back for them.
//!
//! The walk is made of passes (`Walk::pass`): each reads the pending
//! recipients page by page (`pages`), takes a send slot for each due one
//! (`slots`) and hands them to send tasks in groups (`send`). Between passes
//! it waits for the earliest retry or deferral, or marks the push completed.

use super::clock::{BatchClock, Window, send_window};
use super::pages::{Due, PageLoader, ReadAhead, Scan};
use super::policy::{Held, Rules, held_until, never_open};
use super::rate::Rate;
use super::send::{Group, Outcome, SendTask, persist, persist_with};
use super::slots::acquire_send_slot;
use super::{Control, Dispatcher, ab, resolve};
use crate::model::{ErrorClass, Millis, PushId, Routed, now_ms};
use crate::script::{Generation, ScriptError};
use crate::store::deliveries::{self, Attempt};
use crate::store::pushes::{self, PushRow, PushStatus};
use crate::store::recorder::{Outcome as Recorded, Recorder};
use crate::store::{StoreError, audit, policy as caps};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinSet;

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

pub(super) async fn run(d: Arc<Dispatcher>, push: PushId, mut ctl: watch::Receiver<Control>) {
    let reason = loop {
        match run_push(&d, push, &mut ctl).await {
            Ok(()) => return,
            Err(RunError::Setup(reason)) => break reason,
            // The disk filled up or went read-only: hold, then carry on where
            // we were once writes succeed again (nothing was lost meanwhile).
            Err(RunError::Store(e)) if e.is_storage_fault() => {
                d.store.mark_fault(&e);
                tokio::select! {
                    _ = d.store.wait_writable() => {}
                    _ = d.shutdown.cancelled() => return,
                }
            }
            Err(RunError::Store(e)) => break format!("storage: {e}"),
        }
    };
    tracing::error!(push, %reason, "push paused");
    pause(&d, push, reason, false).await;
}

/// Records a pause the runner decided (a setup problem, bad credentials).
async fn pause(d: &Dispatcher, push: PushId, reason: String, ok: bool) {
    let r = reason.clone();
    if let Err(e) = d
        .store
        .write(move |c| pushes::set_status(c, push, PushStatus::Paused, Some(&r)))
        .await
    {
        tracing::error!(push, error = %e, "cannot record the pause");
    }
    audit::log(
        &d.store,
        None,
        "push.pause",
        Some(&push.to_string()),
        ok,
        Some(reason),
    )
    .await;
}

/// The generation a push renders with: the one it pinned if still loaded,
/// else the live one (after a restart, old generations are gone).
fn pick_generation(d: &Dispatcher, push: &PushRow) -> Result<Arc<Generation>, RunError> {
    if let Some(g) = push.generation.and_then(|n| d.scripts.get(n)) {
        return Ok(g);
    }
    let g = d.scripts.live().ok_or_else(|| {
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
    d: &Arc<Dispatcher>,
    id: PushId,
    ctl: &mut watch::Receiver<Control>,
) -> Result<(), RunError> {
    let Some(mut walk) = Walk::start(d, id, ctl).await? else {
        return Ok(());
    };
    // An error ends the walk as a stop does: the sends under way finish and
    // are recorded first (dropped, they would end interrupted).
    let walked = walk.walk().await;
    walk.ahead = None;
    while let Some(r) = walk.inflight.join_next().await {
        handle_outcome(d, id, r).await;
    }
    d.held.clear(id);
    if walked? == Walked::Completed {
        return Ok(());
    }
    // Stopped by control.
    if *walk.ctl.borrow() == Control::Cancel {
        finish_cancel(d, id).await?;
    }
    d.scripts.unpin(id);
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

/// What one pass over the pending recipients found.
#[derive(Debug, Default)]
struct Pass {
    /// Recipients that were due.
    due: usize,
    /// Of those, left pending because their channel is held (quota).
    quota_held: usize,
    /// The earliest retry/deferral time among those not yet due.
    earliest_later: Option<Millis>,
}

impl Pass {
    /// Some recipient was due and handled (not merely held).
    fn saw_due(&self) -> bool {
        self.due > self.quota_held
    }

    fn later(&mut self, t: Millis) {
        self.earliest_later = Some(self.earliest_later.map_or(t, |e| e.min(t)));
    }
}

/// A push being walked, and everything the walk carries between pages.
struct Walk<'a> {
    d: &'a Arc<Dispatcher>,
    push: PushRow,
    ctl: &'a mut watch::Receiver<Control>,
    rec: Recorder,
    load: PageLoader,
    window: Option<Window>,
    batch: BatchClock,
    push_rate: Option<Rate>,
    inflight: JoinSet<Outcome>,
    /// The next pages, read and routed while the current one is being sent.
    ahead: Option<ReadAhead>,
    /// This pass's held recipients (quiet hours, send window) by release time.
    held: Held,
    /// An audience still being frozen in chunks behind the walk.
    resolving: Option<watch::Receiver<resolve::Progress>>,
    /// A full pass reads every pending recipient; after one, only recipients
    /// given a time to wait for (retries, deferrals) can be pending behind
    /// the walk, unless a group went unclaimed (`Outcome::Unclaimed`).
    full: bool,
    holes: bool,
}

impl<'a> Walk<'a> {
    /// Pins the generation, marks the push started and resolves its
    /// audience if need be. None when the push has already ended.
    async fn start(
        d: &'a Arc<Dispatcher>,
        id: PushId,
        ctl: &'a mut watch::Receiver<Control>,
    ) -> Result<Option<Walk<'a>>, RunError> {
        let push = d
            .store
            .read(move |c| pushes::find(c, &id.to_string()))
            .await?;
        if push.status.is_final() {
            return Ok(None);
        }
        let generation = pick_generation(d, &push)?;
        d.scripts.pin(id, generation.clone());
        let (gnum, ghash) = (generation.number, generation.hash.clone());
        d.store
            .write(move |c| pushes::mark_started(c, id, Some(gnum), Some(&ghash)))
            .await?;
        let mut resolving = None;
        if !push.resolved {
            let resolution = resolve::resolve(&d.store, &d.shutdown, &push, &generation)
                .await
                .map_err(|e| match e {
                    resolve::ResolveError::Store(e) => RunError::Store(e),
                    resolve::ResolveError::Setup(m) => RunError::Setup(m),
                })?;
            match resolution {
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
        let window =
            send_window(&push).map_err(|e| RunError::Setup(format!("send window: {e}")))?;
        let rules = Rules::for_push(&d.config.get().policy, push.bypasses_policy());
        if let (Some(w), Some(q)) = (&window, &rules.quiet)
            && never_open(w, q)
        {
            return Err(RunError::Setup(format!(
                "the send window {w} lies inside [policy] quiet_hours {q}: nothing could ever be sent; \
                 widen the window or change quiet_hours, then resume (or cancel the push)"
            )));
        }
        let links = tracked_links(d, &push, &generation).await?;
        Ok(Some(Walk {
            d,
            push_rate: push.rate_per_minute.map(Rate::per_minute),
            batch: BatchClock::new(&push),
            rec: Recorder::start(d.store.clone(), id),
            load: PageLoader {
                d: d.clone(),
                generation,
                template: push.template.clone().into(),
                push: id,
                window,
                bypass: push.bypasses_policy(),
                links,
            },
            window,
            push,
            ctl,
            inflight: JoinSet::new(),
            ahead: None,
            held: Held::new(),
            resolving,
            full: true,
            holes: false,
        }))
    }

    fn id(&self) -> PushId {
        self.push.id
    }

    /// Passes until every recipient has its outcome, or the push is stopped.
    async fn walk(&mut self) -> Result<Walked, RunError> {
        loop {
            let scan = if std::mem::take(&mut self.full) {
                Scan::All
            } else {
                Scan::Waiting
            };
            let Some(pass) = self.pass(scan).await? else {
                return Ok(Walked::Stopped);
            };
            // Wait for in-flight sends (they may requeue retries).
            while let Some(r) = self.inflight.join_next().await {
                self.holes |= handle_outcome(self.d, self.push.id, r).await;
            }
            self.full = std::mem::take(&mut self.holes);
            if *self.ctl.borrow() != Control::Run {
                self.full = true;
                continue;
            }
            if pass.saw_due() {
                continue;
            }
            if let Some(t) = pass.earliest_later {
                let wait = Duration::from_millis((t - now_ms()).max(0) as u64);
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = self.ctl.changed() => {}
                }
                continue;
            }
            if let Some(plan) = &self.push.ab
                && ab::step(self.d, self.push.id, plan, self.ctl).await? == ab::Step::Again
            {
                self.full = true;
                continue;
            }
            if self.complete_if_done().await? {
                return Ok(Walked::Completed);
            }
            if scan == Scan::Waiting {
                // Something is pending that only a full pass can find.
                self.full = true;
                continue;
            }
            // Rows still `sending` belong to nobody in this process (cannot
            // happen after startup settles them); look again shortly.
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Marks the push completed when nothing is left to send.
    async fn complete_if_done(&mut self) -> Result<bool, RunError> {
        let (d, id) = (self.d, self.id());
        let counts = d.store.read(move |c| pushes::counts(c, id)).await?;
        if counts.remaining() > 0 {
            return Ok(false);
        }
        d.store
            .write(move |c| pushes::mark_completed(c, id))
            .await?;
        d.scripts.unpin(id);
        tracing::info!(push = id, name = %self.push.name, sent = counts.sent, failed = counts.failed, "push completed");
        audit::log(
            &d.store,
            None,
            "push.complete",
            Some(&id.to_string()),
            true,
            None,
        )
        .await;
        Ok(true)
    }

    /// Blocks while the push is paused or storage is faulted; false = stop.
    async fn runnable(&mut self) -> bool {
        wait_runnable(self.d, self.ctl, &mut self.inflight, &mut self.holes).await
    }

    /// One pass over the pending recipients (all, or only those waiting for
    /// a time); None when the walk must stop.
    async fn pass(&mut self, scan: Scan) -> Result<Option<Pass>, RunError> {
        let id = self.id();
        let mut cursor = 0;
        // Claims left from before (a send whose outcome could not be
        // recorded) keep their rows `sending`: the walk must step over them.
        let skip_claimed = self
            .d
            .store
            .read(move |c| deliveries::has_claims(c, id))
            .await?;
        let mut pass = Pass::default();
        self.held.clear();
        loop {
            if !self.runnable().await {
                return Ok(None);
            }
            self.holes |= reap(self.d, id, &mut self.inflight).await;
            let load = &self.load;
            let page = self
                .ahead
                .get_or_insert_with(|| load.ahead(cursor, scan, skip_claimed))
                .next()
                .await?;
            let Some(last) = page.last else {
                // (The reader has ended: a next read starts one from here.)
                self.ahead = None;
                // Caught up with a resolution still freezing the audience:
                // wait for its next chunk (or its end) and read on.
                if more_to_come(&mut self.resolving, self.ctl).await? {
                    continue;
                }
                break;
            };
            cursor = last;
            if let Some(t) = page.later_min {
                pass.later(t);
            }
            for (t, n) in &page.held {
                *self.held.entry(*t).or_insert(0) += n;
            }
            if !page.capped.is_empty() && !self.skip_capped(page.capped).await {
                return Ok(None);
            }
            if page.due.is_empty() {
                self.d.held.publish(id, &self.held, false);
                continue;
            }
            pass.due += page.due.len();
            let sent = self.send_page(page.due, &mut pass).await;
            self.d.held.publish(id, &self.held, false);
            if !sent {
                return Ok(None);
            }
        }
        self.d.held.publish(id, &self.held, true);
        Ok(Some(pass))
    }

    /// Skips a page's recipients already over a frequency cap (one write);
    /// false when the daemon is stopping.
    async fn skip_capped(&mut self, ids: Vec<crate::model::DeliveryId>) -> bool {
        let ids: std::collections::HashSet<_> = ids.into_iter().collect();
        let d = self.d;
        persist_with(d, || {
            let ids = ids.clone();
            d.store.write(move |c| caps::mark_capped(c, &ids))
        })
        .await
    }

    /// Takes each due recipient of a page to its outcome or to a send task;
    /// false when the walk must stop.
    async fn send_page(
        &mut self,
        due: Vec<(Due, Result<Routed, ScriptError>)>,
        pass: &mut Pass,
    ) -> bool {
        let d = self.d;
        let mut group = Group::new(d, &self.rec, self.id());
        // The policy in force for this page's sends (a reload applies from
        // the next page on).
        let rules = Rules::for_push(&d.config.get().policy, self.push.bypasses_policy());
        group.rules = rules.caps.is_some().then_some(rules);
        // Claim permits taken in bulk for the sends being gathered.
        let mut budget = None;
        let count = due.len();
        for (i, (p, routed)) in due.into_iter().enumerate() {
            if !runnable_now(d, self.ctl) {
                group.launch(&mut self.inflight);
                if !self.runnable().await {
                    return false;
                }
            }
            let did = p.delivery_id;
            let (channel, outbound) = match routed {
                Ok(Routed::Send { channel, outbound }) => (channel, outbound),
                Ok(Routed::Skip { reason }) => {
                    group.launch(&mut self.inflight);
                    let skipped = Recorded::Skipped {
                        delivery: did,
                        reason,
                    };
                    persist(d, &self.rec, skipped).await;
                    continue;
                }
                Err(e) => {
                    group.launch(&mut self.inflight);
                    persist(d, &self.rec, script_failure(did, &e)).await;
                    continue;
                }
            };
            let Some(ch) = d.channels.get(&channel) else {
                group.launch(&mut self.inflight);
                let reason = format!("channel {channel:?} is not configured");
                let skipped = Recorded::Skipped {
                    delivery: did,
                    reason,
                };
                persist(d, &self.rec, skipped).await;
                continue;
            };
            if let Some(until) = d.holds.held_until(ch.name()) {
                // Its channel sends nothing until then (a daily quota): it
                // stays pending as it is, and a full pass after the hold
                // finds it again.
                group.launch(&mut self.inflight);
                pass.quota_held += 1;
                pass.later(until);
                self.holes = true;
                continue;
            }
            if let Some(until) =
                held_until(self.window.as_ref(), rules.quiet.as_ref(), p.tz, now_ms())
            {
                group.launch(&mut self.inflight);
                let deferred = Recorded::Deferred {
                    delivery: did,
                    until,
                };
                persist(d, &self.rec, deferred).await;
                pass.later(until);
                *self.held.entry(until).or_insert(0) += 1;
                continue;
            }
            if self.batch.full() {
                group.launch(&mut self.inflight);
            }
            if !self.batch.wait_turn(self.ctl).await {
                return false;
            }
            let want = (count - i).min(GROUP);
            let inflight = &mut self.inflight;
            let Some(permit) = acquire_send_slot(
                d,
                self.ctl,
                &mut budget,
                want,
                self.push_rate.as_ref(),
                &ch,
                || group.launch(inflight),
            )
            .await
            else {
                return false;
            };
            // Held while this one waited for its slot: it stays pending too.
            if let Some(until) = d.holds.held_until(ch.name()) {
                drop(permit);
                pass.quota_held += 1;
                pass.later(until);
                self.holes = true;
                continue;
            }
            self.batch.count();
            group.sends.push(SendTask {
                delivery: did,
                fresh: p.fresh,
                attempts_before: p.attempts,
                user: p.user,
                member_id: p.member_id,
                tz: p.tz,
                channel: ch,
                outbound,
                claim: permit,
            });
            if group.sends.len() >= GROUP {
                group.launch(&mut self.inflight);
            }
        }
        group.launch(&mut self.inflight);
        true
    }
}

/// What puts the deliveries' `/l/TOKEN` URLs in the push's messages, when
/// its template tracks links (registered for the push here, once each).
async fn tracked_links(
    d: &Dispatcher,
    push: &PushRow,
    generation: &Generation,
) -> Result<Option<Arc<crate::links::Minter>>, RunError> {
    let Some(t) = generation.templates.get(&push.template) else {
        return Ok(None);
    };
    d.links
        .minter(push.id, &t.name, &t.tracked)
        .await
        .map_err(|e| match e {
            crate::links::LinkError::Store(StoreError::Invalid(m)) => RunError::Setup(m),
            crate::links::LinkError::Store(e) => RunError::Store(e),
            crate::links::LinkError::Setup(m) => RunError::Setup(m),
        })
}

/// A recipient whose routing or rendering failed before any request: an
/// attempt on no channel, failed as rejected.
fn script_failure(delivery: crate::model::DeliveryId, e: &ScriptError) -> Recorded {
    let now = now_ms();
    Recorded::Failed {
        delivery,
        attempt: Attempt {
            channel: String::new(),
            sending_at: now,
        },
        class: ErrorClass::Rejected,
        code: "script_error".into(),
        message: e.to_string(),
        at: now,
    }
}

/// Cancel: what never left stays out for good.
async fn finish_cancel(d: &Arc<Dispatcher>, id: PushId) -> Result<(), StoreError> {
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
fn runnable_now(d: &Dispatcher, ctl: &watch::Receiver<Control>) -> bool {
    *ctl.borrow() == Control::Run && !d.store.faulted()
}

/// Blocks while the push is paused or storage is faulted; false = stop walking.
async fn wait_runnable(
    d: &Arc<Dispatcher>,
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
            Control::Run if d.store.faulted() => {
                tokio::select! {
                    _ = d.store.recovered_or_tick() => {}
                    r = ctl.changed() => if r.is_err() { return false },
                }
            }
            Control::Run => return true,
        }
    }
}

/// Handles the finished send tasks; true when one went unclaimed.
async fn reap(d: &Arc<Dispatcher>, id: PushId, inflight: &mut JoinSet<Outcome>) -> bool {
    let mut unclaimed = false;
    while let Some(r) = inflight.try_join_next() {
        unclaimed |= handle_outcome(d, id, r).await;
    }
    unclaimed
}

/// Acts on one finished send task; true when it went unclaimed.
async fn handle_outcome(
    d: &Arc<Dispatcher>,
    id: PushId,
    r: Result<Outcome, tokio::task::JoinError>,
) -> bool {
    match r {
        Ok(Outcome::Done) => {}
        Ok(Outcome::Unclaimed) => return true,
        Ok(Outcome::AuthFailed(reason)) => {
            if d.control(id, Control::Pause) {
                tracing::error!(push = id, %reason, "bad credentials: pausing the push (fix the channel's token, then `pushd push resume`)");
                pause(d, id, reason, true).await;
            }
        }
        Err(e) => tracing::error!(push = id, error = %e, "send task failed"),
    }
    false
}
