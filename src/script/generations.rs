//! The live script generation and the ones pinned by running pushes. A
//! reload builds a new generation and swaps it in only when it validates; a
//! push keeps rendering with the generation it started with until it ends.

use super::{Generation, ScriptEnv, ScriptError, ScriptLimits};
use crate::model::PushId;
use arc_swap::ArcSwapOption;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};

pub struct Scripts {
    live: ArcSwapOption<Generation>,
    /// Generations kept alive by the pushes that started with them.
    pinned: Mutex<HashMap<PushId, Arc<Generation>>>,
    next_number: AtomicI64,
    /// One load at a time, so generations go live in their numbers' order.
    loading: tokio::sync::Mutex<()>,
}

/// One load attempt: its generation number and what came of it.
pub struct Loaded {
    pub number: i64,
    pub result: Result<Arc<Generation>, Vec<ScriptError>>,
}

impl Scripts {
    /// No generation live yet; the next one loaded gets `next_number`.
    pub fn new(next_number: i64) -> Scripts {
        Scripts {
            live: ArcSwapOption::empty(),
            pinned: Mutex::new(HashMap::new()),
            next_number: AtomicI64::new(next_number),
            loading: tokio::sync::Mutex::new(()),
        }
    }

    /// The live generation (None until a load has succeeded).
    pub fn live(&self) -> Option<Arc<Generation>> {
        self.live.load_full()
    }

    /// Generation `number` if it is live or pinned by a running push.
    pub fn get(&self, number: i64) -> Option<Arc<Generation>> {
        if let Some(g) = self.live().filter(|g| g.number == number) {
            return Some(g);
        }
        self.pinned
            .lock()
            .ok()?
            .values()
            .find(|g| g.number == number)
            .cloned()
    }

    pub fn pin(&self, push: PushId, generation: Arc<Generation>) {
        if let Ok(mut p) = self.pinned.lock() {
            p.insert(push, generation);
        }
    }

    pub fn unpin(&self, push: PushId) {
        if let Ok(mut p) = self.pinned.lock() {
            p.remove(&push);
        }
    }

    /// Makes a validated generation the live one.
    pub fn make_live(&self, generation: Arc<Generation>) {
        self.live.store(Some(generation));
    }

    /// Loads `dir` as the next generation (off the async workers). Loads
    /// are serialized; `then` runs while the load is still held — it
    /// records the attempt and, when the generation validated, makes it
    /// live ([`Scripts::make_live`]) — so what a caller records about
    /// generations (their rows, the audit trail, pushes defined by the
    /// scripts) is in generation order, and a generation is recorded
    /// before anyone sees it live.
    pub async fn load<F, Fut, T>(
        &self,
        dir: PathBuf,
        limits: ScriptLimits,
        env: ScriptEnv,
        then: F,
    ) -> T
    where
        F: FnOnce(Loaded) -> Fut,
        Fut: std::future::Future<Output = T>,
    {
        let _serial = self.loading.lock().await;
        let number = self.next_number.fetch_add(1, Ordering::SeqCst);
        let result =
            tokio::task::spawn_blocking(move || Generation::load(number, &dir, &limits, &env))
                .await
                .unwrap_or_else(|e| {
                    Err(vec![ScriptError::new(format!(
                        "script loader crashed: {e}"
                    ))])
                });
        then(Loaded { number, result }).await
    }
}
