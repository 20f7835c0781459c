//! Conditions the operator must act on, keyed by their source (a channel's
//! daily quota, a script load that left nothing live, …), shown by `status`
//! and the panel. The store's own fault is asked of the store.

use std::collections::BTreeMap;
use std::sync::Mutex;

#[derive(Default)]
pub struct Alerts {
    by_source: Mutex<BTreeMap<String, String>>,
}

impl Alerts {
    pub fn set(&self, source: &str, message: impl Into<String>) {
        if let Ok(mut a) = self.by_source.lock() {
            a.insert(source.to_string(), message.into());
        }
    }

    pub fn clear(&self, source: &str) {
        if let Ok(mut a) = self.by_source.lock() {
            a.remove(source);
        }
    }

    /// Every alert, ordered by source.
    pub fn list(&self) -> Vec<String> {
        self.by_source
            .lock()
            .map(|a| a.values().cloned().collect())
            .unwrap_or_default()
    }
}
