//! The PostgreSQL catalog of a backfill, written by the operator with the worker's own catalog
//! code ([`bronze::catalog::CatalogWriter`]): the same `_meta_datasets`, `_meta_lineage`
//! (chained by `prev_hash`) and `_meta_quality` rows a standalone copier's commit hook writes, one
//! partition at a time, in ledger order, as [`crate::sequencer::sequence`] sequences them.
//!
//! * **The DSN** comes from the operator's environment variable named by `spec.catalog.dsnEnv`
//!   (the operator never reads Secrets; its Deployment sets the variable from one). A missing
//!   variable is reported as the catalog's failure (strict: the checkpoint waits; lenient: a
//!   warning), never ignored.
//! * **Idempotent**: rows are upserted by dataset and range, so a re-sequenced partition (a
//!   restart, a lost status) updates its rows and never duplicates them.
//! * **No queue file**: what is missing is derived at every sequencing by reading back the
//!   recorded ranges and comparing them with the checkpoint ([`crate::sequencer::catalog_gaps`]).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

pub use bronze::catalog::PgCatalog;
use bronze::config::Config;
use bronze::partition::LedgerRange;
use futures::future::BoxFuture;

use crate::crd::BronzeBackfillSpec;
use crate::job::worker_config;
use crate::sequencer::{CatalogFactory, CatalogLog, PartitionRecord};

/// The config the catalog of `spec` is written with: the worker's config for `spec` (same
/// dataset identity, source and storage, so the same URIs) with `catalog.postgres_dsn = dsn`.
/// `bronze::verify::verify` with this config checks the catalog against storage.
pub fn catalog_config(spec: &BronzeBackfillSpec, dsn: &str) -> Result<Config, String> {
    // INGESTED_AT does not appear in catalog rows; any valid value gives the same config.
    let mut config = worker_config(spec, "1970-01-01T00:00:00Z").map_err(|e| e.to_string())?;
    config.catalog.postgres_dsn = dsn.to_string();
    config.catalog.strict = spec.catalog.as_ref().is_some_and(|c| c.strict);
    Ok(config)
}

/// A catalog that cannot be opened (no DSN in the environment, an unusable DSN): every use says
/// why, so strict mode holds the checkpoint and lenient mode warns.
struct Unopenable {
    strict: bool,
    message: String,
}

impl CatalogLog for Unopenable {
    fn strict(&self) -> bool {
        self.strict
    }

    fn recorded(&self) -> BoxFuture<'_, Result<Vec<(LedgerRange, String)>, String>> {
        Box::pin(async move { Err(self.message.clone()) })
    }

    fn record<'a>(
        &'a self,
        _record: &'a PartitionRecord,
        _previous: Option<(u32, String)>,
    ) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async move { Err(self.message.clone()) })
    }

    fn describe(&self) -> String {
        "unavailable".into()
    }
}

/// [`PgCatalog`]s by backfill, kept (with their connection) while the config stays the same.
pub struct PgCatalogFactory {
    env: fn(&str) -> Option<String>,
    open: Mutex<HashMap<String, Arc<PgCatalog>>>,
}

impl Default for PgCatalogFactory {
    fn default() -> Self {
        Self::with_env(|name| std::env::var(name).ok())
    }
}

impl PgCatalogFactory {
    /// A factory reading the DSN variables with `env` (tests).
    pub fn with_env(env: fn(&str) -> Option<String>) -> Self {
        Self {
            env,
            open: Mutex::new(HashMap::new()),
        }
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<PgCatalog>>> {
        self.open.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl CatalogFactory for PgCatalogFactory {
    fn open(&self, key: &str, spec: &BronzeBackfillSpec) -> Option<Arc<dyn CatalogLog>> {
        let catalog = spec.catalog.as_ref()?;
        let unopenable = |message: String| -> Option<Arc<dyn CatalogLog>> {
            Some(Arc::new(Unopenable {
                strict: catalog.strict,
                message,
            }))
        };
        let dsn = (self.env)(&catalog.dsn_env).unwrap_or_default();
        if dsn.trim().is_empty() {
            return unopenable(format!(
                "spec.catalog.dsnEnv names the environment variable {}, which is not set (or empty) in the operator's environment: set it from a Secret in the operator's Deployment",
                catalog.dsn_env
            ));
        }
        let config = match catalog_config(spec, dsn.trim()) {
            Ok(c) => c,
            Err(message) => return unopenable(message),
        };
        let mut cache = self.cache();
        if let Some(open) = cache.get(key)
            && *open.config() == config
        {
            return Some(open.clone());
        }
        match PgCatalog::new(config) {
            Ok(c) => {
                let c = Arc::new(c);
                cache.insert(key.to_string(), c.clone());
                Some(c)
            }
            Err(message) => unopenable(format!("spec.catalog ({}): {message}", catalog.dsn_env)),
        }
    }

    fn forget(&self, key: &str) {
        self.cache().remove(key);
    }
}

#[cfg(test)]
mod tests;
