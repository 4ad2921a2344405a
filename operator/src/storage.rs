//! The operator's own read access to a backfill's dataset and datastore, built with the worker's
//! code (`bronze::publish::Committer`, `bronze::source::Datastore`) from the worker's config
//! ([`crate::job::worker_config`]), so both sides read the same keys.
//!
//! Credentials are the operator's own (its environment or workload identity, as in
//! `bronze::store`); the operator never reads the Secrets named in a spec. A `local` backend must
//! be visible to the operator at the same path (a ReadWriteMany volume, or an operator running
//! outside the cluster).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use bronze::pipeline::open_output_location;
use bronze::publish::{Committer, DatasetLayout};
use bronze::source::{Datastore, open_source_location};
use futures::future::BoxFuture;

use crate::crd::BronzeBackfillSpec;
use crate::job::worker_config;
use crate::plan::Hole;
use crate::sequencer::{DatasetStore, ReadError, TipSource};
pub use bronze::sequence::ObjectDataset;

/// The tip of a datastore, by listing its newest objects, and its gaps, by listing folders.
pub struct DatastoreTip {
    datastore: Datastore,
    /// `[first, last]` last found without a missing object: objects are not taken back, so a
    /// later look starts after it (in steady following, only the newest folder is listed).
    complete: Mutex<Option<(u32, u32)>>,
}

impl DatastoreTip {
    pub fn new(datastore: Datastore) -> Self {
        Self {
            datastore,
            complete: Mutex::new(None),
        }
    }
}

fn source_error(e: bronze::source::SourceError) -> ReadError {
    ReadError {
        transient: e.is_transient(),
        message: e.to_string(),
    }
}

impl TipSource for DatastoreTip {
    fn latest_ledger(&self) -> BoxFuture<'_, Result<Option<u32>, ReadError>> {
        Box::pin(async move { self.datastore.latest_ledger().await.map_err(source_error) })
    }

    fn first_missing(
        &self,
        first: u32,
        last: u32,
    ) -> BoxFuture<'_, Result<Option<Hole>, ReadError>> {
        Box::pin(async move {
            let known = *self.complete.lock().expect("lock");
            // Continue after what is known to be complete, when it covers the start.
            let (anchor, from) = match known {
                Some((a, b)) if a <= first && first <= b.saturating_add(1) => {
                    if b >= last {
                        return Ok(None);
                    }
                    (a, b + 1)
                }
                _ => (first, first),
            };
            let missing = self
                .datastore
                .first_missing(from, last)
                .await
                .map_err(source_error)?;
            let through = missing
                .as_ref()
                .map_or(Some(last), |m| m.start.checked_sub(1));
            if let Some(through) = through.filter(|t| *t >= anchor) {
                *self.complete.lock().expect("lock") = Some((anchor, through));
            }
            Ok(missing.map(|batch| Hole {
                key: self.datastore.object_key(&batch),
                start: batch.start,
                end: batch.end,
            }))
        })
    }
}

/// Opens the dataset and datastore of a backfill.
pub trait StorageFactory: Send + Sync {
    fn dataset(
        &self,
        key: &str,
        spec: &BronzeBackfillSpec,
    ) -> Result<Arc<dyn DatasetStore>, ReadError>;
    fn tip<'a>(
        &'a self,
        key: &'a str,
        spec: &'a BronzeBackfillSpec,
    ) -> BoxFuture<'a, Result<Arc<dyn TipSource>, ReadError>>;
}

/// Opened stores by backfill, with the spec they were opened for.
type Cache<T> = Mutex<HashMap<String, (BronzeBackfillSpec, Arc<T>)>>;

/// Object stores as `bronze::store` builds them, cached per backfill and spec.
#[derive(Default)]
pub struct ObjectStorageFactory {
    datasets: Cache<dyn DatasetStore>,
    tips: Cache<dyn TipSource>,
}

fn config_error(e: impl std::fmt::Display) -> ReadError {
    ReadError {
        transient: false,
        message: e.to_string(),
    }
}

impl StorageFactory for ObjectStorageFactory {
    fn dataset(
        &self,
        key: &str,
        spec: &BronzeBackfillSpec,
    ) -> Result<Arc<dyn DatasetStore>, ReadError> {
        let mut cache = self.datasets.lock().expect("cache lock");
        if let Some((cached_spec, store)) = cache.get(key)
            && cached_spec == spec
        {
            return Ok(store.clone());
        }
        // INGESTED_AT does not shape paths; any valid value opens the same dataset.
        let config = worker_config(spec, "1970-01-01T00:00:00Z").map_err(config_error)?;
        let committer = Committer {
            location: open_output_location(&config).map_err(config_error)?,
            layout: DatasetLayout::from_config(&config),
            allow_overwrite: false,
        };
        let store: Arc<dyn DatasetStore> = Arc::new(ObjectDataset::new(committer));
        cache.insert(key.to_string(), (spec.clone(), store.clone()));
        Ok(store)
    }

    fn tip<'a>(
        &'a self,
        key: &'a str,
        spec: &'a BronzeBackfillSpec,
    ) -> BoxFuture<'a, Result<Arc<dyn TipSource>, ReadError>> {
        Box::pin(async move {
            if let Some((cached_spec, tip)) = self.tips.lock().expect("cache lock").get(key)
                && cached_spec == spec
            {
                return Ok(tip.clone());
            }
            let config = worker_config(spec, "1970-01-01T00:00:00Z").map_err(config_error)?;
            let location = open_source_location(&config).map_err(config_error)?;
            let datastore = Datastore::open(&config, location)
                .await
                .map_err(|e| ReadError {
                    transient: e.is_transient(),
                    message: e.to_string(),
                })?;
            let tip: Arc<dyn TipSource> = Arc::new(DatastoreTip::new(datastore));
            self.tips
                .lock()
                .expect("cache lock")
                .insert(key.to_string(), (spec.clone(), tip.clone()));
            Ok(tip)
        })
    }
}
