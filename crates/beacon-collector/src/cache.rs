//! A small time-limited cache for credentials, so authentication does not read the database per
//! request. A change made through this collector's admin API is applied at once ([`TtlCache::forget`]);
//! one made through another collector sharing the database, within [`TTL`].

use crate::error::ApiError;
use beacon_store::StoreError;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long an answer of the store is reused.
pub const TTL: Duration = Duration::from_secs(10);
/// Entries kept at most; unknown keys sent at random must not grow the cache forever.
const MAX_ENTRIES: usize = 100_000;

pub struct TtlCache<V> {
    entries: Mutex<HashMap<String, (V, Instant)>>,
}

impl<V> Default for TtlCache<V> {
    fn default() -> Self {
        Self {
            entries: Mutex::new(HashMap::new()),
        }
    }
}

impl<V: Clone> TtlCache<V> {
    /// The cached value of `key`, or what `load()` answers (then cached). `load` runs only on a
    /// miss, so a hit builds no store future.
    pub async fn get<F, Fut>(&self, key: &str, load: F) -> Result<V, ApiError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<V, StoreError>>,
    {
        if let Some((v, at)) = self.entries.lock().expect("cache lock").get(key)
            && at.elapsed() < TTL
        {
            return Ok(v.clone());
        }
        let v = load().await?;
        let mut entries = self.entries.lock().expect("cache lock");
        if entries.len() > MAX_ENTRIES {
            entries.clear();
        }
        entries.insert(key.to_string(), (v.clone(), Instant::now()));
        Ok(v)
    }

    /// Forgets every key (after a change that cannot name its cache key).
    pub fn clear(&self) {
        self.entries.lock().expect("cache lock").clear();
    }

    /// Forgets a key after an admin change, so the change applies at once on this collector.
    pub fn forget(&self, key: &str) {
        self.entries.lock().expect("cache lock").remove(key);
    }
}
