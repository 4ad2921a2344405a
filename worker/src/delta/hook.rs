//! The standalone copier's adapter: the sequencing engine's [`TableLog`], which adds each
//! committed partition to the Delta log right after its manifest, in ledger order.

use std::sync::Arc;

use tokio::sync::Mutex;

use super::repair::catch_up;
use super::table::{Appended, DeltaError, DeltaTable};
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
}

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
        }
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
        let appended = self
            .table
            .append(&event.manifest, event.replaced)
            .await
            .map_err(hook_error)?;
        if let Appended::AlreadyThere { version } = appended {
            tracing::debug!(partition = %event.range, version, "delta: partition already in the log");
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
        Ok(Some(DeltaSink::new(table, location)))
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
