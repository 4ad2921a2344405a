//! The catalog for a caller that sequences commits itself (the Kubernetes operator): the same
//! rows as the commit hook ([`super::hook`]), one partition at a time, with no queue file. The
//! caller decides what is missing by reading back what the catalog holds ([`CatalogWriter::recorded`])
//! and recording the rest from the manifests in storage, in ledger order.
//!
//! Recording is the hook's upsert ([`Catalog::record_partition`]): a partition recorded again
//! updates its rows and never duplicates them.

use std::time::Duration;

use tokio::sync::Mutex;

use super::client::{Catalog, CatalogError, connect, parse_dsn, within};
use super::records::{DatasetIdentity, LineageRecord, RecordContext, schema_hash, source_location};
use super::verify::LineageRow;
use crate::config::{Config, redact_dsn};
use crate::pipeline::{CommitEvent, open_output_location};
use crate::publish::{DatasetLayout, Manifest};
use crate::sequence::RangeSummary;
use crate::store::Location;

/// Longest time one catalog operation (connecting and migrating, reading the lineage, or
/// recording one partition) may take.
const OPERATION_TIMEOUT: Duration = Duration::from_secs(30);

/// One dataset's catalog rows, written on demand. The connection is opened on first use and
/// re-opened after a failure.
pub struct CatalogWriter {
    dsn: String,
    redacted: String,
    identity: DatasetIdentity,
    schema_hash: String,
    context: RecordContext,
    layout: DatasetLayout,
    location: Location,
    conn: Mutex<Option<(Catalog, i32)>>,
}

impl CatalogWriter {
    /// The catalog `config.catalog.postgres_dsn` names, for `config`'s dataset. Nothing is
    /// connected yet; fails when the DSN is unusable or the output storage cannot be addressed.
    pub fn new(config: &Config) -> Result<CatalogWriter, CatalogError> {
        let dsn = config.catalog.postgres_dsn.trim().to_string();
        parse_dsn(&dsn)?;
        let redacted = redact_dsn(&dsn);
        let location = open_output_location(config).map_err(|e| CatalogError::Dsn {
            dsn: redacted.clone(),
            message: format!("output storage: {e}"),
        })?;
        Ok(CatalogWriter {
            redacted,
            dsn,
            identity: DatasetIdentity::from_config(config),
            schema_hash: schema_hash(),
            context: RecordContext {
                source_type: config.source.mode.to_string(),
                source_location: source_location(config),
                storage_prefix: config.storage_prefix(),
                previous: None,
            },
            layout: DatasetLayout::from_config(config),
            location,
            conn: Mutex::new(None),
        })
    }

    /// The DSN with its password masked.
    pub fn redacted_dsn(&self) -> &str {
        &self.redacted
    }

    pub fn identity(&self) -> &DatasetIdentity {
        &self.identity
    }

    /// The commit event a sequencer would have published for `manifest` (what the hook records).
    /// `adopted`: found committed in storage rather than written by this process.
    pub fn commit_event(&self, manifest: Manifest, adopted: bool) -> CommitEvent {
        let range = manifest.range();
        CommitEvent {
            range,
            storage_path: self.layout.storage_path(range),
            parquet_uri: self
                .location
                .uri_of(&self.layout.committed_file_key(&manifest)),
            manifest,
            adopted,
            overwrite: false,
            replaced: None,
        }
    }

    /// Every lineage row of the dataset, in ledger order (none when it is not registered yet).
    pub async fn recorded(&self) -> Result<Vec<LineageRow>, CatalogError> {
        self.with_connection("read lineage", |catalog, id| {
            Box::pin(async move { catalog.lineage(id).await })
        })
        .await
    }

    /// How many rows lie within `[first, through]` (see [`Catalog::lineage_summary`]).
    pub async fn summary(&self, first: u32, through: u32) -> Result<RangeSummary, CatalogError> {
        self.with_connection("count lineage", |catalog, id| {
            Box::pin(async move { catalog.lineage_summary(id, first, through).await })
        })
        .await
    }

    /// Writes (or re-writes) the lineage and quality rows of the partition `manifest` describes.
    /// `previous` is `(last ledger, checksum)` of the partition sequenced just before it, when
    /// known (it is the `prev_hash` fallback and lets the quality row claim the link check).
    /// Returns the `prev_hash` written.
    pub async fn record(
        &self,
        manifest: &Manifest,
        adopted: bool,
        previous: Option<(u32, String)>,
    ) -> Result<Option<String>, CatalogError> {
        let mut context = self.context.clone();
        context.previous = previous;
        let record =
            LineageRecord::from_event(&self.commit_event(manifest.clone(), adopted), &context);
        self.with_connection("record a partition", |catalog, id| {
            Box::pin(async move { catalog.record_partition(id, &record).await })
        })
        .await
    }

    async fn with_connection<T>(
        &self,
        what: &str,
        operation: impl for<'c> FnOnce(
            &'c mut Catalog,
            i32,
        )
            -> futures::future::BoxFuture<'c, Result<T, CatalogError>>,
    ) -> Result<T, CatalogError> {
        let mut conn = self.conn.lock().await;
        let result = async {
            if conn.as_ref().is_none_or(|(c, _)| c.is_closed()) {
                let setup = async {
                    let (mut catalog, _) = connect(&self.dsn).await?;
                    let id = catalog
                        .upsert_dataset(&self.identity, &self.schema_hash)
                        .await?;
                    Ok((catalog, id))
                };
                *conn = Some(self.bounded("connect and migrate", setup).await?);
            }
            let (catalog, id) = conn.as_mut().expect("connected above");
            let id = *id;
            self.bounded(what, operation(catalog, id)).await
        }
        .await;
        if result.is_err() {
            // Reconnect next time: the connection may be what failed.
            *conn = None;
        }
        result
    }

    async fn bounded<T>(
        &self,
        what: &str,
        operation: impl std::future::Future<Output = Result<T, CatalogError>>,
    ) -> Result<T, CatalogError> {
        within(OPERATION_TIMEOUT, &self.redacted, what, operation).await
    }
}
