//! Bulletins in memory, so `/security` answers without a database read. Re-read from the store after
//! every change made through this collector and every `ingest.bulletin_refresh_secs` (for changes made
//! through another collector sharing the database).

use beacon_store::{Store, StoreError};
use beacon_wire::bulletin::Bulletin;
use beacon_wire::security::BulletinNotice;
use std::sync::{Arc, RwLock};

#[derive(Default)]
pub struct BulletinCache {
    live: RwLock<Arc<Vec<(Bulletin, semver::VersionReq)>>>,
}

impl BulletinCache {
    /// Replaces the cache with the store's live (unretracted) bulletins.
    pub async fn refresh(&self, store: &dyn Store) -> Result<(), StoreError> {
        let live: Vec<_> = store
            .bulletins()
            .await?
            .into_iter()
            .filter(|b| b.retracted_at.is_none())
            .filter_map(|b| {
                let req = b.requirement();
                if req.is_none() {
                    tracing::warn!(bulletin = %b.id, affected = %b.affected, "stored bulletin has an invalid range; skipped");
                }
                req.map(|r| (b, r))
            })
            .collect();
        *self.live.write().expect("bulletin cache lock") = Arc::new(live);
        Ok(())
    }

    fn snapshot(&self) -> Arc<Vec<(Bulletin, semver::VersionReq)>> {
        self.live.read().expect("bulletin cache lock").clone()
    }

    /// The `/security` answer for a server on `version`.
    pub fn notices_for(&self, version: &semver::Version) -> Vec<BulletinNotice> {
        self.snapshot()
            .iter()
            .filter(|(_, req)| req.matches(version))
            .map(|(b, _)| b.notice_for(version))
            .collect()
    }

    /// The body of a live bulletin.
    pub fn body(&self, id: &str) -> Option<String> {
        self.snapshot()
            .iter()
            .find(|(b, _)| b.id == id)
            .map(|(b, _)| b.body.clone())
    }
}
