//! The running configuration: a snapshot that reloads swap atomically, so
//! every reader sees one whole config, never half of an edit.

use super::Config;
use crate::model::{Millis, now_ms};
use arc_swap::ArcSwap;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

pub struct LiveConfig {
    current: ArcSwap<Config>,
    loaded_at: AtomicI64,
}

impl LiveConfig {
    pub fn new(config: Config) -> LiveConfig {
        LiveConfig {
            current: ArcSwap::from_pointee(config),
            loaded_at: AtomicI64::new(now_ms()),
        }
    }

    /// The configuration in force now.
    pub fn get(&self) -> Arc<Config> {
        self.current.load_full()
    }

    /// Puts a validated configuration in force.
    pub fn set(&self, config: Config) {
        self.current.store(Arc::new(config));
        self.loaded_at.store(now_ms(), Ordering::Relaxed);
    }

    pub fn loaded_at(&self) -> Millis {
        self.loaded_at.load(Ordering::Relaxed)
    }
}
