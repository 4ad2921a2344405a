//! Process-wide counters. The Prometheus endpoint is built on these.

use std::collections::BTreeMap;
use std::sync::Mutex;

static RETRIES: Mutex<BTreeMap<&'static str, u64>> = Mutex::new(BTreeMap::new());

/// Counts one retry of `operation`.
pub fn retry(operation: &'static str) {
    if let Ok(mut map) = RETRIES.lock() {
        *map.entry(operation).or_default() += 1;
    }
}

/// Retries so far, by operation.
pub fn retries() -> BTreeMap<&'static str, u64> {
    RETRIES.lock().map(|m| m.clone()).unwrap_or_default()
}
