//! Decorators that measure the two blocking seams without touching them: the data
//! plane ([`TimedDataplane`]: rule-sync latency) and the store ([`CountingStore`]:
//! failed operations). `main` wraps the real implementations; the registry sees the
//! same traits.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Instant;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::histogram::Histogram;
use zonewarden_profiles::diff::RulesetDiff;
use zonewarden_profiles::event::Reports;
use zonewarden_profiles::learned::LearnedEdges;
use zonewarden_profiles::policy::NodeSettings;
use zonewarden_profiles::ruleset::Ruleset;
use zonewarden_profiles::{AttachmentKey, Endpoint, Profile};

use crate::nft::NftError;
use crate::nft::ruleset::{KernelView, RulesetDataplane};
use crate::store::{Store, StoreError, StoredState, ZoneIds};

/// Observes the latency of every [`RulesetDataplane::apply`] (one kernel transaction,
/// or two when the first failed and was retried), successful or not.
pub struct TimedDataplane {
    inner: Arc<dyn RulesetDataplane>,
    latency: Histogram,
}

impl TimedDataplane {
    pub fn new(inner: Arc<dyn RulesetDataplane>, latency: Histogram) -> Self {
        Self { inner, latency }
    }
}

impl RulesetDataplane for TimedDataplane {
    fn ensure_base(&self, settings: &NodeSettings) -> Result<KernelView, NftError> {
        self.inner.ensure_base(settings)
    }

    fn apply(&self, diff: &RulesetDiff, new: &Ruleset) -> Result<(), NftError> {
        let started = Instant::now();
        let result = self.inner.apply(diff, new);
        self.latency.observe(started.elapsed().as_secs_f64());
        result
    }

    fn read(&self) -> Result<KernelView, NftError> {
        self.inner.read()
    }

    fn confirms(&self, ruleset: &Ruleset) -> bool {
        self.inner.confirms(ruleset)
    }

    fn seal(&self, ruleset: &Ruleset) -> Result<bool, NftError> {
        self.inner.seal(ruleset)
    }

    fn probe(&self) -> Result<(), NftError> {
        self.inner.probe()
    }

    fn ensure_base_stale(
        &self,
        settings: &NodeSettings,
        stale: &std::collections::BTreeSet<String>,
    ) -> Result<KernelView, NftError> {
        self.inner.ensure_base_stale(settings, stale)
    }

    fn remove_objects(&self, chains: &[String], sets: &[String]) -> Result<(), NftError> {
        self.inner.remove_objects(chains, sets)
    }
}

/// Counts every store operation that returns an error.
pub struct CountingStore {
    inner: Arc<dyn Store>,
    errors: Counter,
}

impl CountingStore {
    pub fn new(inner: Arc<dyn Store>, errors: Counter) -> Self {
        Self { inner, errors }
    }

    fn counted<T>(&self, result: Result<T, StoreError>) -> Result<T, StoreError> {
        if result.is_err() {
            self.errors.inc();
        }
        result
    }
}

impl Store for CountingStore {
    fn load(&self) -> Result<StoredState, StoreError> {
        self.counted(self.inner.load())
    }
    fn save_endpoint(&self, endpoint: &Endpoint) -> Result<(), StoreError> {
        self.counted(self.inner.save_endpoint(endpoint))
    }
    fn delete_endpoint(&self, key: &AttachmentKey) -> Result<(), StoreError> {
        self.counted(self.inner.delete_endpoint(key))
    }
    fn save_zone_ids(&self, zone_ids: &ZoneIds) -> Result<(), StoreError> {
        self.counted(self.inner.save_zone_ids(zone_ids))
    }
    fn save_profile(&self, profile: &Profile) -> Result<(), StoreError> {
        self.counted(self.inner.save_profile(profile))
    }
    fn delete_profile(&self, zone: &zonewarden_profiles::ZoneName) -> Result<(), StoreError> {
        self.counted(self.inner.delete_profile(zone))
    }
    fn save_quarantined(&self, container_ids: &BTreeSet<String>) -> Result<(), StoreError> {
        self.counted(self.inner.save_quarantined(container_ids))
    }
    fn save_learned(&self, learned: &LearnedEdges) -> Result<(), StoreError> {
        self.counted(self.inner.save_learned(learned))
    }
    fn save_reports(&self, reports: &Reports) -> Result<(), StoreError> {
        self.counted(self.inner.save_reports(reports))
    }
    fn check_writable(&self) -> Result<(), StoreError> {
        self.counted(self.inner.check_writable())
    }
    fn commit(&self, audit: Option<crate::store::AuditHead>) -> Result<(), StoreError> {
        self.counted(self.inner.commit(audit))
    }
    fn stage_audit(&self, record: &crate::audit::AuditRecord) {
        self.inner.stage_audit(record);
    }
    fn end_change(&self) {
        self.inner.end_change();
    }
    fn retires_zone_ids(&self) -> bool {
        self.inner.retires_zone_ids()
    }
    fn health(&self) -> crate::store::StoreHealth {
        self.inner.health()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nft::ruleset::MemoryDataplane;
    use crate::store::LocalStore;

    #[test]
    fn applies_are_timed_and_store_failures_counted() {
        let latency = Histogram::new([0.1]);
        let timed = TimedDataplane::new(Arc::new(MemoryDataplane::new()), latency.clone());
        timed
            .apply_between(&Ruleset::default(), &Ruleset::default())
            .unwrap();
        let mut text = String::new();
        let mut registry = prometheus_client::registry::Registry::default();
        registry.register("sync", "h", latency);
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        assert!(text.contains("sync_count 1"), "one apply observed: {text}");

        let dir = tempfile::tempdir().unwrap();
        let local = LocalStore::open(dir.path()).unwrap();
        let errors = Counter::default();
        let store = CountingStore::new(Arc::new(local), errors.clone());
        store.check_writable().unwrap();
        assert_eq!(errors.get(), 0, "a success is not counted");
        std::fs::remove_dir_all(dir.path()).unwrap();
        assert!(
            store.check_writable().is_err(),
            "the state directory is gone"
        );
        assert_eq!(errors.get(), 1, "the failure is counted");
    }
}
