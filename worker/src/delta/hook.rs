//! The standalone copier's adapter: the sequencing engine's [`TableLog`], which adds each
//! committed partition to the Delta log right after its manifest, in ledger order.

use std::sync::Arc;

use tokio::sync::Mutex;

use super::repair::catch_up;
use super::table::{DeltaError, DeltaTable};
use crate::sequence::{PartitionRecord, TableLog, TableLogError};
use crate::store::Location;
use futures::future::BoxFuture;

/// Why [`DeltaSink::open`] failed.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("{0}")]
    Location(String),
    #[error(transparent)]
    Log(#[from] DeltaError),
}

impl OpenError {
    /// Worth retrying (storage unreachable) rather than a table that needs a person.
    pub fn is_transient(&self) -> bool {
        match self {
            OpenError::Location(_) => false,
            OpenError::Log(e) => e.is_transient(),
        }
    }
}

#[derive(Clone)]
pub struct DeltaSink {
    table: Arc<DeltaTable>,
    location: Location,
    /// Whether the log has been caught up with the manifests of earlier runs.
    caught_up: Arc<Mutex<bool>>,
    /// How long removed provisional files stay in storage (docs/tip.md).
    tip_retention_ms: i64,
}

/// `storage.provisional_retention_hours`' default: Delta's `deletedFileRetentionDuration`.
pub const DEFAULT_TIP_RETENTION_HOURS: u64 = 168;

fn hook_error(e: DeltaError) -> TableLogError {
    TableLogError {
        conflict: matches!(
            e,
            DeltaError::Conflict { .. } | DeltaError::Types { .. } | DeltaError::Damaged { .. }
        ),
        message: e.to_string(),
    }
}

impl DeltaSink {
    pub fn new(table: Arc<DeltaTable>, location: Location) -> Self {
        Self {
            table,
            location,
            caught_up: Arc::new(Mutex::new(false)),
            tip_retention_ms: (DEFAULT_TIP_RETENTION_HOURS * 3_600_000) as i64,
        }
    }

    /// Removed provisional files are deleted from storage after `hours` (docs/tip.md).
    pub fn with_tip_retention_hours(mut self, hours: u64) -> Self {
        self.tip_retention_ms = i64::try_from(hours.saturating_mul(3_600_000)).unwrap_or(i64::MAX);
        self
    }

    pub fn table(&self) -> &Arc<DeltaTable> {
        &self.table
    }

    /// Adds every committed partition missing from the log (a crash between a manifest and its
    /// log entry; delta turned on for an existing dataset), in ledger order. Run before the
    /// pipeline starts, so the log is complete even when there is nothing left to copy.
    pub async fn catch_up(&self) -> Result<usize, DeltaError> {
        self.catch_up_before(None).await
    }

    /// As [`DeltaSink::catch_up`], for the committed partitions ending before `before` only
    /// (the operator: those its checkpoint has passed; later ones are not verified yet).
    pub async fn catch_up_before(&self, before: Option<u32>) -> Result<usize, DeltaError> {
        let mut done = self.caught_up.lock().await;
        // A damaged log is refused before anything is committed to it (the seal included).
        self.table.check_damage().await?;
        // A seal a crash left half done (manifest written, provisional files still in the
        // log) is completed first: the catch-up below only adds.
        let sealed = crate::sequence::tip::seal_committed(&self.table).await?;
        if sealed > 0 {
            tracing::info!(
                sealed,
                "delta: committed partitions sealed over their provisional files"
            );
        }
        let added = catch_up(&self.table, &self.location, before).await?;
        if !*done {
            let integers = self.table.integer_types().await?;
            super::integers::warn_if_unsigned(&self.table.uri(), integers);
        }
        *done = true;
        Ok(added)
    }

    /// Whether a catch-up has run (it runs once per sink: later partitions come in order).
    pub async fn is_caught_up(&self) -> bool {
        *self.caught_up.lock().await
    }

    async fn on_commit(&self, event: &PartitionRecord) -> Result<(), TableLogError> {
        {
            let mut done = self.caught_up.lock().await;
            if !*done {
                catch_up(&self.table, &self.location, Some(event.range.start))
                    .await
                    .map_err(hook_error)?;
                *done = true;
            }
        }
        // The sealed file's add and the removes of the partition's provisional files (the
        // provisional tip, docs/tip.md), in one commit.
        let prepared = self
            .table
            .prepare(&event.manifest)
            .await
            .map_err(hook_error)?;
        let sealed = crate::sequence::tip::seal_partition(&self.table, prepared, event.replaced)
            .await
            .map_err(hook_error)?;
        if sealed.version.is_none() {
            tracing::debug!(partition = %event.range, "delta: partition already in the log");
        }
        if sealed.removed > 0
            && let Err(e) =
                crate::sequence::tip::drop_expired(&self.table, self.tip_retention_ms).await
        {
            tracing::warn!(error = %e, "delta: expired provisional files not deleted (the next seal tries again)");
        }
        Ok(())
    }
}

impl TableLog for DeltaSink {
    fn name(&self) -> &'static str {
        "delta"
    }

    fn append<'a>(
        &'a self,
        record: &'a PartitionRecord,
    ) -> BoxFuture<'a, Result<(), TableLogError>> {
        Box::pin(DeltaSink::on_commit(self, record))
    }
}

impl DeltaSink {
    /// The sink of `config`'s dataset (`None` unless `storage.table_format: delta`), not caught
    /// up yet (the operator catches up only what its checkpoint has passed).
    pub fn of_config(config: &crate::config::Config) -> Result<Option<DeltaSink>, String> {
        if config.storage.table_format != crate::config::TableFormat::Delta {
            return Ok(None);
        }
        let location = crate::pipeline::open_output_location(config).map_err(|e| e.to_string())?;
        let layout = crate::publish::DatasetLayout::from_config(config);
        let table = Arc::new(DeltaTable::new(&location, &layout));
        Ok(Some(
            DeltaSink::new(table, location)
                .with_tip_retention_hours(config.storage.provisional_retention_hours),
        ))
    }

    /// The sink of `config` (`None` unless `storage.table_format: delta`), with the log already
    /// caught up with the manifests in storage.
    pub async fn open(config: &crate::config::Config) -> Result<Option<DeltaSink>, OpenError> {
        let Some(sink) = DeltaSink::of_config(config).map_err(OpenError::Location)? else {
            return Ok(None);
        };
        let added = sink.catch_up().await?;
        tracing::info!(table = %sink.table.uri(), added, "delta: log caught up with the manifests");
        Ok(Some(sink))
    }
}
