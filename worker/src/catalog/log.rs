//! The catalog as the sequencing engine's [`CatalogLog`]: the rows of one dataset, written with
//! [`CatalogWriter`]; what the catalog holds is read back from `_meta_lineage`.

use std::time::Duration;

use futures::future::BoxFuture;

use super::writer::CatalogWriter;
use crate::config::Config;
use crate::metrics::{self, ErrorKind};
use crate::partition::LedgerRange;
use crate::sequence::{CatalogLog, PartitionRecord, RangeSummary};

/// One dataset's catalog. The connection is opened on first use and re-opened after a failure.
pub struct PgCatalog {
    config: Config,
    writer: CatalogWriter,
    /// Tries per write and the first pause between them (the standalone copier retries within
    /// a run; the operator retries at its next reconcile).
    attempts: u32,
    backoff: Duration,
}

impl PgCatalog {
    /// The catalog `config.catalog.postgres_dsn` names, for `config`'s dataset (one try per
    /// operation). Nothing is connected yet.
    pub fn new(config: Config) -> Result<Self, String> {
        let writer = CatalogWriter::new(&config).map_err(|e| e.to_string())?;
        Ok(Self {
            config,
            writer,
            attempts: 1,
            backoff: Duration::ZERO,
        })
    }

    /// Retries each operation up to `attempts` times, with doubling pauses from `backoff`.
    pub fn with_retries(mut self, attempts: u32, backoff: Duration) -> Self {
        self.attempts = attempts.max(1);
        self.backoff = backoff;
        self
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    async fn retrying<T, F>(
        &self,
        what: &str,
        mut operation: impl FnMut() -> F,
    ) -> Result<T, String>
    where
        F: std::future::Future<Output = Result<T, String>>,
    {
        let mut attempt = 1;
        loop {
            match operation().await {
                Ok(v) => return Ok(v),
                Err(e) if attempt < self.attempts => {
                    let pause = self.backoff * 2u32.saturating_pow(attempt - 1);
                    tracing::warn!(attempt, error = %e, "catalog {what} failed; retrying in {pause:?}");
                    metrics::retry("catalog");
                    metrics::error(ErrorKind::Catalog);
                    tokio::time::sleep(pause).await;
                    attempt += 1;
                }
                Err(e) => return Err(e),
            }
        }
    }
}

impl CatalogLog for PgCatalog {
    fn strict(&self) -> bool {
        self.config.catalog.strict
    }

    fn recorded(&self) -> BoxFuture<'_, Result<Vec<(LedgerRange, String)>, String>> {
        Box::pin(async move {
            let rows = self
                .retrying("read", || async {
                    self.writer.recorded().await.map_err(|e| e.to_string())
                })
                .await?;
            Ok(rows
                .into_iter()
                .filter_map(|row| {
                    let start = u32::try_from(row.ledger_start).ok()?;
                    let end = u32::try_from(row.ledger_end).ok()?;
                    (start <= end).then(|| (LedgerRange::new(start, end), row.checksum))
                })
                .collect())
        })
    }

    fn summary(
        &self,
        first: u32,
        through: u32,
    ) -> BoxFuture<'_, Result<Option<RangeSummary>, String>> {
        Box::pin(async move {
            self.retrying("count", || async {
                self.writer
                    .summary(first, through)
                    .await
                    .map(Some)
                    .map_err(|e| e.to_string())
            })
            .await
        })
    }

    fn record<'a>(
        &'a self,
        record: &'a PartitionRecord,
        previous: Option<(u32, String)>,
    ) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async move {
            self.retrying("record", || async {
                self.writer
                    .record(&record.manifest, record.adopted, previous.clone())
                    .await
                    .map(|_| ())
                    .map_err(|e| e.to_string())
            })
            .await
        })
    }

    fn describe(&self) -> String {
        self.writer.redacted_dsn().to_string()
    }
}
