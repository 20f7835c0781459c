//! The dispatcher: a scheduler that starts pushes when their time comes, one
//! runner per running push, shared rate limits and bounded concurrency, and
//! crash-safe resume.

mod ab;
mod chat_gap;
mod clock;
pub mod holds;
mod pages;
pub mod policy;
pub mod progress;
pub mod rate;
mod resolve;
mod runner;
mod send;
mod slots;

use crate::alerts::Alerts;
use crate::channel::Channels;
use crate::config::LiveConfig;
use crate::links::Links;
use crate::metrics::Metrics;
use crate::model::{Millis, PushId, now_ms};
use crate::script::Scripts;
use crate::store::pushes::{self, PushStatus};
use crate::store::{Store, StoreError, deliveries};
use arc_swap::ArcSwap;
use rate::Rate;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{Notify, Semaphore, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// What a runner should be doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Control {
    Run,
    Pause,
    Cancel,
    /// The daemon is stopping: finish in-flight sends, leave the push running.
    Shutdown,
}

struct RunnerHandle {
    control: watch::Sender<Control>,
    task: JoinHandle<()>,
}

/// Sends of the last minute, for the "current rate" operators see, counted
/// in one-second buckets: constant memory at any rate (a timestamp per send
/// held a minute of sends, 30+ MB at 60k/s).
struct RateMeter {
    /// (second since the epoch, sends in it), indexed by second mod 60.
    buckets: [(i64, u32); 60],
    /// First send measured: a young push is rated over its own age, not a
    /// whole minute.
    since: Option<Millis>,
    /// Last send measured (with `since`, the young push's mean gap).
    last: Millis,
}

impl Default for RateMeter {
    fn default() -> Self {
        RateMeter {
            buckets: [(i64::MIN, 0); 60],
            since: None,
            last: 0,
        }
    }
}

impl RateMeter {
    fn record(&mut self, at: Millis) {
        self.since.get_or_insert(at);
        self.last = self.last.max(at);
        let sec = at.div_euclid(1000);
        let slot = &mut self.buckets[sec.rem_euclid(60) as usize];
        if slot.0 != sec {
            *slot = (sec, 0);
        }
        slot.1 += 1;
    }

    /// Sends per minute over the last 60 seconds, or, while the push is
    /// younger than that, over its age plus one mean gap between its sends:
    /// n sends at a steady rate span n − 1 gaps, so over the age alone a
    /// push sending at exactly 100/min would read 109/min after 8 sends.
    /// This way it reads the rate just after a send and a little less
    /// between sends, never more.
    fn per_minute(&mut self, now: Millis) -> f64 {
        let sec = now.div_euclid(1000);
        let sends: f64 = self
            .buckets
            .iter()
            .filter(|(s, _)| *s > sec - 60 && *s <= sec)
            .map(|(_, n)| *n as f64)
            .sum();
        let age = now - self.since.unwrap_or(now);
        let gap = match self.since {
            Some(since) if sends >= 2.0 && age < 60_000 => {
                (self.last - since) as f64 / (sends - 1.0)
            }
            _ => 0.0,
        };
        let span = (age as f64 + gap).clamp(1_000.0, 60_000.0);
        sends * 60_000.0 / span
    }
}

type ChannelRate = (Option<f64>, Arc<Rate>);

/// Grows or shrinks a semaphore of `from` permits to `to` (shrinking waits
/// for the excess to be returned, then retires it).
fn resize(sem: &Arc<Semaphore>, from: usize, to: usize) {
    if to > from {
        sem.add_permits(to - from);
    } else {
        let excess = (from - to) as u32;
        let sem = sem.clone();
        tokio::spawn(async move {
            if let Ok(p) = sem.acquire_many(excess).await {
                p.forget();
            }
        });
    }
}

/// What the dispatcher works with: the store it records in, the channels it
/// sends through, the scripts it routes and renders with, the settings it
/// reads (`[dispatch]`, per-channel rates), the metrics it counts into, the
/// tracked links it puts in messages, and the daemon's shutdown signal.
pub struct Deps {
    pub store: Store,
    pub channels: Arc<Channels>,
    pub scripts: Arc<Scripts>,
    pub config: Arc<LiveConfig>,
    pub metrics: Arc<Metrics>,
    pub links: Arc<Links>,
    /// Where channel holds (a platform's daily quota) raise their alerts.
    pub alerts: Arc<Alerts>,
    pub shutdown: CancellationToken,
}

pub struct Dispatcher {
    store: Store,
    channels: Arc<Channels>,
    scripts: Arc<Scripts>,
    config: Arc<LiveConfig>,
    metrics: Arc<Metrics>,
    links: Arc<Links>,
    shutdown: CancellationToken,
    global: ArcSwap<Rate>,
    global_per_minute: AtomicU32,
    /// channel → (the rate it was built for, its limiter).
    channel_rates: Mutex<HashMap<String, ChannelRate>>,
    /// Requests in flight to platforms.
    concurrency: Arc<Semaphore>,
    /// Recipients taken by the walk whose request has not ended: twice
    /// `concurrency`, so that besides the requests in flight as many again
    /// can be marked `sending` (a write away) ready to go — the writes of
    /// the next sends overlap the requests, and a crash interrupts at most
    /// twice `concurrency` sends. (Fast channels spend the whole pool on
    /// the marking writes.)
    claims: Arc<Semaphore>,
    concurrency_size: Mutex<usize>,
    runners: Mutex<HashMap<PushId, RunnerHandle>>,
    meters: Mutex<HashMap<PushId, RateMeter>>,
    /// Recipients each push holds for quiet hours or its send window.
    held: policy::HeldBoard,
    wake: Notify,
    /// Channels held until a time their platform named (daily quotas).
    holds: Arc<holds::ChannelHolds>,
    /// One message per second per chat, where the platform asks it.
    chat_gaps: chat_gap::ChatGaps,
}

impl Dispatcher {
    /// A dispatcher at the `[dispatch]` rate and concurrency in force.
    pub fn new(deps: Deps) -> Dispatcher {
        let cfg = deps.config.get();
        let (rate_per_minute, concurrency) =
            (cfg.dispatch.rate_per_minute, cfg.dispatch.concurrency);
        let shutdown_for_holds = deps.shutdown.clone();
        Dispatcher {
            store: deps.store,
            channels: deps.channels,
            scripts: deps.scripts,
            config: deps.config,
            metrics: deps.metrics,
            links: deps.links,
            shutdown: deps.shutdown,
            global: ArcSwap::from_pointee(Rate::per_minute(rate_per_minute)),
            global_per_minute: AtomicU32::new(rate_per_minute),
            channel_rates: Mutex::new(HashMap::new()),
            concurrency: Arc::new(Semaphore::new(concurrency)),
            claims: Arc::new(Semaphore::new(2 * concurrency)),
            concurrency_size: Mutex::new(concurrency),
            runners: Mutex::new(HashMap::new()),
            meters: Mutex::new(HashMap::new()),
            held: policy::HeldBoard::default(),
            wake: Notify::new(),
            holds: Arc::new(holds::ChannelHolds::new(deps.alerts, shutdown_for_holds)),
            chat_gaps: chat_gap::ChatGaps::default(),
        }
    }

    /// Applies reloaded `[dispatch]` settings.
    pub fn apply_config(&self, rate_per_minute: u32, concurrency: usize) {
        if self
            .global_per_minute
            .swap(rate_per_minute, Ordering::SeqCst)
            != rate_per_minute
        {
            self.global
                .store(Arc::new(Rate::per_minute(rate_per_minute)));
        }
        if let Ok(mut size) = self.concurrency_size.lock()
            && *size != concurrency
        {
            resize(&self.concurrency, *size, concurrency);
            resize(&self.claims, 2 * *size, 2 * concurrency);
            *size = concurrency;
        }
    }

    /// `dispatch.concurrency` as currently applied.
    fn concurrency_size(&self) -> usize {
        self.concurrency_size
            .lock()
            .map(|s| *s)
            .unwrap_or_else(|p| *p.into_inner())
    }

    /// `[policy]` in force (frequency caps, quiet hours).
    pub fn policy(&self) -> crate::config::PolicyConfig {
        self.config.get().policy.clone()
    }

    pub fn global_rate_per_minute(&self) -> u32 {
        self.global_per_minute.load(Ordering::Relaxed)
    }

    fn global_rate(&self) -> Arc<Rate> {
        self.global.load_full()
    }

    /// The limiter of one channel instance (rebuilt when its rate changes).
    fn channel_rate(&self, name: &str, per_second: Option<f64>) -> Arc<Rate> {
        let mut map = match self.channel_rates.lock() {
            Ok(m) => m,
            Err(p) => p.into_inner(),
        };
        match map.get(name) {
            Some((r, rate)) if *r == per_second => rate.clone(),
            _ => {
                let rate = Arc::new(match per_second {
                    Some(r) => Rate::per_second(r),
                    None => Rate::unlimited(),
                });
                map.insert(name.to_string(), (per_second, rate.clone()));
                rate
            }
        }
    }

    /// Asks the scheduler to look at the pushes again (created, resumed, ...).
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// Sets what a push's runner should do (pause, cancel, resume).
    pub fn control(&self, push: PushId, c: Control) -> bool {
        let runners = self.runners.lock().unwrap_or_else(|p| p.into_inner());
        match runners.get(&push) {
            Some(h) => {
                let _ = h.control.send(c);
                true
            }
            None => false,
        }
    }

    /// Wakes a push's runner to look at its rows again (a winner was
    /// picked and the rest released); false when it is not running.
    pub fn nudge(&self, push: PushId) -> bool {
        let runners = self.runners.lock().unwrap_or_else(|p| p.into_inner());
        match runners.get(&push) {
            Some(h) => {
                h.control.send_modify(|_| {});
                true
            }
            None => false,
        }
    }

    /// Sends the platforms accepted at these times (one lock per recorded run).
    fn record_sends(&self, push: PushId, at: impl Iterator<Item = Millis>) {
        if let Ok(mut m) = self.meters.lock() {
            let meter = m.entry(push).or_default();
            for t in at {
                meter.record(t);
            }
        }
    }

    /// Sends per minute over the last minute.
    pub fn current_rate(&self, push: PushId) -> f64 {
        self.meters
            .lock()
            .ok()
            .and_then(|mut m| m.get_mut(&push).map(|r| r.per_minute(now_ms())))
            .unwrap_or(0.0)
    }

    /// What progress reports need of this push right now.
    pub fn live(&self, push: PushId) -> progress::Live {
        progress::Live {
            global_per_minute: self.global_rate_per_minute(),
            current_rate: self.current_rate(push),
            storage_fault: self.store.faulted(),
            held: self.held.of(push),
        }
    }
}

/// Starts the scheduler: ends `sending` rows a crash left behind, then starts
/// runners for running pushes and for scheduled ones whose time has come.
/// Returns once the daemon is shutting down and every runner has recorded
/// its in-flight sends.
pub async fn run(d: Arc<Dispatcher>) {
    match d.store.write(deliveries::interrupt_sending).await {
        Ok(0) => {}
        Ok(n) => tracing::warn!(
            recipients = n,
            "found sends in flight from before a crash; marked failed/interrupted (never resent automatically)"
        ),
        Err(e) => tracing::error!(error = %e, "cannot settle interrupted sends"),
    }
    loop {
        let next = match schedule_once(&d).await {
            Ok(next) => next,
            Err(e) => {
                tracing::error!(error = %e, "scheduler cannot read pushes");
                Some(now_ms() + 1000)
            }
        };
        let wait = next
            .map(|t| Duration::from_millis((t - now_ms()).clamp(0, 60_000) as u64))
            .unwrap_or(Duration::from_secs(60));
        tokio::select! {
            _ = d.shutdown.cancelled() => break,
            _ = d.wake.notified() => {}
            _ = tokio::time::sleep(wait) => {}
        }
    }
    // Drain: every runner finishes its in-flight sends and records them.
    let handles: Vec<RunnerHandle> = {
        let mut r = d.runners.lock().unwrap_or_else(|p| p.into_inner());
        r.drain().map(|(_, h)| h).collect()
    };
    for h in &handles {
        let _ = h.control.send(Control::Shutdown);
    }
    for h in handles {
        let _ = h.task.await;
    }
}

/// One pass: start what is due; returns when the next scheduled push starts.
async fn schedule_once(d: &Arc<Dispatcher>) -> Result<Option<Millis>, StoreError> {
    let active = d.store.read(pushes::active).await?;
    let now = now_ms();
    let mut next: Option<Millis> = None;
    for p in active {
        match p.status {
            PushStatus::Scheduled if p.start_at > now => {
                next = Some(next.map_or(p.start_at, |n| n.min(p.start_at)));
            }
            PushStatus::Scheduled | PushStatus::Running => ensure_runner(d, p.id, Control::Run),
            PushStatus::Paused => {}
            PushStatus::Completed | PushStatus::Cancelled => {}
        }
    }
    Ok(next)
}

fn ensure_runner(d: &Arc<Dispatcher>, push: PushId, initial: Control) {
    let mut runners = d.runners.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(h) = runners.get(&push)
        && !h.task.is_finished()
    {
        let _ = h.control.send(initial);
        return;
    }
    if d.shutdown.is_cancelled() {
        return;
    }
    let (tx, rx) = watch::channel(initial);
    let task = tokio::spawn(runner::run(d.clone(), push, rx));
    runners.insert(push, RunnerHandle { control: tx, task });
}

/// Resumes a paused push (spawning a runner if this process has none).
pub fn resume(d: &Arc<Dispatcher>, push: PushId) {
    ensure_runner(d, push, Control::Run);
}

#[cfg(test)]
mod tests {
    use super::RateMeter;

    #[test]
    fn rate_meter_counts_the_last_minute_only() {
        let mut m = RateMeter::default();
        let t0 = 1_700_000_000_000;
        for i in 0..120 {
            m.record(t0 + i * 500); // 2/s for 60 s
        }
        assert!((m.per_minute(t0 + 59_500) - 120.0).abs() < 0.01);
        // 30 s later the first 30 s have left the window.
        assert_eq!(m.per_minute(t0 + 89_999), 60.0);
        assert_eq!(m.per_minute(t0 + 200_000), 0.0);
    }

    #[test]
    fn a_young_push_is_rated_over_its_age() {
        let mut m = RateMeter::default();
        let t0 = 1_700_000_000_000;
        for i in 0..10 {
            m.record(t0 + i * 500); // 2/s for 5 s
        }
        // Just after the 10th send: the rate exactly, not 10 sends ÷ 4.5 s.
        assert_eq!(m.per_minute(t0 + 4_500), 120.0);
        // Between sends: a little less, never more.
        for now in (t0 + 4_500..t0 + 5_000).step_by(50) {
            let r = m.per_minute(now);
            assert!((109.0..=120.0).contains(&r), "{r} at +{}", now - t0);
        }
        // 100/min (one send every 600 ms), read after each of the first sends.
        let mut m = RateMeter::default();
        for i in 0..20 {
            m.record(t0 + i * 600);
            let r = m.per_minute(t0 + i * 600);
            assert!(r <= 100.0 + 1e-9, "{r}/min after send {}", i + 1);
        }
        assert!((m.per_minute(t0 + 19 * 600) - 100.0).abs() < 1e-9);
    }
}
