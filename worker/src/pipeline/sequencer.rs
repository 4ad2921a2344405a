//! The standalone's driver of the sequencing engine ([`crate::sequence`]): takes built partitions
//! in ledger order and publishes each one: hash link to the previous partition, manifest (the
//! commit; a partition found committed is accepted by the engine's manifest policy), then the
//! engine's records (PAS event, catalog rows: [`record_partition`]), then the checkpoint, which
//! is where this driver keeps the engine's head. A failure at any step stops the run before the
//! checkpoint moves, so a restart redoes exactly the partitions that were not fully published.
//!
//! Replacing a committed partition (`era.allow_overwrite`): its new file was built beside the
//! committed one; the sequencer checks everything that could refuse first (the hash link, the
//! dataset, every record's `check_replace`), and only then swaps the files and commits the new
//! manifest; the records then note the replacement (PAS: a `bronze_partition_replaced` event;
//! catalog: the row updated). A rebuilt partition identical to
//! the committed one is kept as it is.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::build::{Built, Staged};
use super::progress::Progress;
use crate::checkpoint::{CheckpointError, CheckpointStore, CommittedPartition};
use crate::config::PRIMARY_TABLE;
use crate::hash::{hex32, parse_hash};
use crate::partition::LedgerRange;
use crate::publish::{
    ChainInfo, CommitError, Committer, DatasetLayout, ExistingPartition, Expect, Finding, Manifest,
    ManifestPartition, ManifestTable, PartitionSettings, Producer, ReplacementNaming, SealCheck,
};
use crate::sequence::{
    CatalogLog, CatalogRun, Head, Logs, PasAppendError, PasLog, Position, RecordError, TableLog,
    check_replace, policy, record_partition,
};
use crate::validate::{ValidationError, check_link};

/// What a hook learns about a committed partition.
#[derive(Debug, Clone)]
pub struct CommitEvent {
    pub range: LedgerRange,
    pub manifest: Manifest,
    /// `<network>/<era>/<version>/<table>/range=S-E` (no prefix).
    pub storage_path: String,
    /// Full URI of the Parquet file, prefix included.
    pub parquet_uri: String,
    /// Found already committed in storage (a resumed run) rather than written now.
    pub adopted: bool,
    /// `era.allow_overwrite` is on: a record that disagrees with this partition is to be
    /// replaced (and the replacement recorded), not refused.
    pub overwrite: bool,
    /// The committed table this commit replaced, when it replaced one.
    pub replaced: Option<ManifestTable>,
}

#[derive(Debug, thiserror::Error)]
#[error("{hook}: {message}")]
pub struct HookError {
    pub hook: &'static str,
    pub message: String,
    /// The hook's record disagrees with what this run committed (e.g. a PAS event for this
    /// partition with other content): retrying cannot help, so the run exits with the conflict
    /// code, not the retryable one.
    pub conflict: bool,
}

/// The records a run keeps beside storage, written by the engine in ledger order after each
/// partition's commit and before the checkpoint moves past it: the table log (Delta), the PAS
/// stream, then the catalog.
#[derive(Clone, Default)]
pub struct Records {
    pub table: Option<Arc<dyn TableLog>>,
    pub pas: Option<Arc<dyn PasLog>>,
    pub catalog: Option<Arc<dyn CatalogLog>>,
    /// The Delta table a following run publishes its provisional tip into (docs/tip.md; used
    /// when `Config::publishes_tip`).
    pub tip: Option<Arc<crate::delta::DeltaTable>>,
}

impl Records {
    /// A record that failed, as the run's error: a conflict (the record disagrees with what was
    /// committed: exit code 4) or an outage (retryable).
    fn error(e: RecordError) -> HookError {
        match e {
            RecordError::Table(hook, e) => HookError {
                hook,
                message: e.message,
                conflict: e.conflict,
            },
            RecordError::Pas(PasAppendError::Conflict { message, .. }) => HookError {
                hook: "pas",
                message,
                conflict: true,
            },
            RecordError::Pas(PasAppendError::Unavailable(message)) => HookError {
                hook: "pas",
                message,
                conflict: false,
            },
            RecordError::Catalog(message) => {
                let message = message.strip_prefix("catalog: ").unwrap_or(&message);
                HookError {
                    hook: "catalog",
                    message: match message.contains("catalog.strict") {
                        true => message.to_string(),
                        false => format!("{message} (catalog.strict)"),
                    },
                    conflict: false,
                }
            }
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SequenceError {
    #[error(transparent)]
    Link(#[from] ValidationError),
    #[error(transparent)]
    Commit(#[from] CommitError),
    #[error(transparent)]
    Hook(#[from] HookError),
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    #[error("partition {range} in storage ({key}) belongs to {found}, not {expected}")]
    ForeignPartition {
        range: LedgerRange,
        key: String,
        found: String,
        expected: String,
    },
    /// A committed partition found in storage that the manifest policy refuses to adopt.
    #[error("committed partition {range} ({key}) is refused: {finding}")]
    Refused {
        range: LedgerRange,
        key: String,
        finding: Finding,
    },
}

impl SequenceError {
    /// The `errors_total{kind}` this failure counts as.
    pub fn metric_kind(&self) -> crate::metrics::ErrorKind {
        use crate::metrics::ErrorKind;
        match self {
            SequenceError::Link(_) => ErrorKind::Validation,
            SequenceError::Commit(_)
            | SequenceError::ForeignPartition { .. }
            | SequenceError::Refused { .. } => ErrorKind::Storage,
            SequenceError::Hook(h) if h.hook == "pas" => ErrorKind::Pas,
            SequenceError::Hook(h) if h.hook == "catalog" => ErrorKind::Catalog,
            SequenceError::Hook(_) | SequenceError::Checkpoint(_) => ErrorKind::Internal,
        }
    }
}

pub struct Sequencer {
    pub committer: Committer,
    pub layout: DatasetLayout,
    pub checkpoint: Option<CheckpointStore>,
    pub records: Records,
    /// The engine's head: the last partition published and the PAS chain's head.
    pub head: Head,
    pub ingested_at: String,
    pub network_passphrase: Option<String>,
    /// Hash of the last ledger before the next partition, when known.
    pub prior_last_hash: Option<[u8; 32]>,
    pub last_committed: Option<u32>,
    /// The checkpoint's ledger when the run started: an overwrite run that starts before it
    /// never moves it back (the checkpoint keeps meaning "committed up to here").
    pub checkpoint_floor: Option<u32>,
    /// How this run writes partitions, to compare with adopted ones.
    pub settings: PartitionSettings,
    pub counts: SequenceCounts,
    /// A rebuild Job (`worker --rebuild ID`): a rebuilt partition is staged for the operator
    /// (`Committer::stage_rebuild`), never swapped in here.
    pub rebuild: Option<String>,
    /// How a replacement's file is named: a new name per content in a Delta table, so the
    /// log's older versions keep reading the file they add.
    pub replacement_naming: ReplacementNaming,
}

/// What the sequencer did with the partitions it published, for the run's summary.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SequenceCounts {
    /// Committed partitions replaced by a rebuilt, different one (`era.allow_overwrite`).
    pub replaced: u64,
    /// Committed partitions adopted although this run's settings would write them differently.
    pub adopted_with_other_settings: u64,
}

impl Sequencer {
    /// Publishes one built partition. Must be called in ledger order.
    pub async fn publish(
        &mut self,
        built: Built,
        progress: &Progress,
    ) -> Result<CommitEvent, SequenceError> {
        let started = std::time::Instant::now();
        let built_now = matches!(built, Built::Staged(_));
        let (manifest, adopted, replaced) = match built {
            Built::Staged(staged) => match &staged.replaces {
                None => (self.commit_staged(&staged).await?, false, None),
                Some(existing) => self.replace_staged(&staged, existing).await?,
            },
            Built::AlreadyCommitted(existing) => {
                self.check_adopted(&existing)?;
                self.adopt(&existing.manifest);
                (existing.manifest, true, None)
            }
        };
        let range = manifest.range();
        self.prior_last_hash = manifest
            .chain
            .as_ref()
            .and_then(|c| parse_hash(&c.last_ledger_hash));
        let event = self.commit_event(manifest, adopted, self.committer.allow_overwrite, replaced);
        let mut record = crate::sequence::partition_record(
            &self.layout,
            event.manifest.clone(),
            adopted,
            event.overwrite,
        );
        record.replaced = event.replaced.is_some();
        let position = Position {
            last_committed_ledger: range.end,
            partition: range,
            checksum: event
                .manifest
                .primary()
                .map(|t| t.checksum.clone())
                .unwrap_or_default(),
            last_ledger_hash: event
                .manifest
                .chain
                .as_ref()
                .map(|c| c.last_ledger_hash.to_ascii_lowercase()),
        };
        let mut catalog = self.records.catalog.as_deref().map(CatalogRun::new);
        let logs = Logs {
            table: self.records.table.as_deref(),
            pas: self.records.pas.as_deref(),
        };
        record_partition(logs, catalog.as_mut(), &mut self.head, &record, position)
            .await
            .map_err(Records::error)?;
        let behind_checkpoint = self.checkpoint_floor.is_some_and(|floor| range.end < floor);
        // The checkpoint file is where this driver keeps the engine's head.
        if let (Some(store), Some(head)) = (
            self.checkpoint.as_ref().filter(|_| !behind_checkpoint),
            &self.head.position,
        ) {
            let cp = store.at(
                head.last_committed_ledger,
                Some(CommittedPartition {
                    start: head.partition.start,
                    end: head.partition.end,
                    checksum: head.checksum.clone(),
                }),
                Some(self.ingested_at.clone()),
                head.last_ledger_hash.clone(),
            );
            store.save(&cp)?;
        }
        self.last_committed = Some(range.end);
        progress.partition_committed(range.len(), adopted);
        let table = event.manifest.primary();
        crate::metrics::partition_published(crate::metrics::Published {
            last_ledger: range.end,
            ledgers: range.len(),
            rows: table.map_or(0, |t| t.row_count),
            parquet_bytes: table.map_or(0, |t| t.byte_size),
            adopted,
            built_now,
            elapsed: started.elapsed(),
        });
        Ok(event)
    }

    /// Logs an adopted partition, with a warning naming every setting this run would write
    /// differently (it is kept as it is: `era.allow_overwrite` rewrites it).
    fn adopt(&mut self, manifest: &Manifest) {
        let differences = crate::publish::settings_differences(manifest, &self.settings);
        if differences.is_empty() {
            tracing::info!(partition = %manifest.range(), "skipping partition (already committed)");
            return;
        }
        self.counts.adopted_with_other_settings += 1;
        tracing::warn!(
            partition = %manifest.range(),
            differences = %differences.join("; "),
            "skipping partition (already committed) although it was written with other settings; it is kept as it is (set era.allow_overwrite to rewrite it)"
        );
    }

    /// Replaces the committed partition `existing` with the one built in `staged` (see the
    /// module docs). Returns the manifest now committed, whether it is the existing one (the
    /// rebuilt file was identical), and the replaced table.
    async fn replace_staged(
        &mut self,
        staged: &Staged,
        existing: &ExistingPartition,
    ) -> Result<(Manifest, bool, Option<ManifestTable>), SequenceError> {
        let range = staged.range;
        // Everything that can refuse, before anything is changed.
        self.check_dataset(&existing.manifest, &existing.manifest_key)?;
        self.check_staged_link(staged)?;
        let manifest = self.replacement_manifest(staged, &existing.manifest);
        let old = existing.manifest.primary().cloned();
        if let Some(id) = &self.rebuild {
            // The operator checks the records and swaps it in (`sequence::replace_rebuilt`).
            if old.as_ref() == manifest.primary() {
                self.committer.discard(&staged.parquet_key).await?;
            }
            self.committer.stage_rebuild(id, &manifest).await?;
            tracing::info!(partition = %range, rebuild = %id, identical = (old.as_ref() == manifest.primary()), "rebuilt partition staged beside the committed one for the operator");
            return Ok((existing.manifest.clone(), true, None));
        }
        if old.as_ref() == manifest.primary() {
            self.committer.discard(&staged.parquet_key).await?;
            tracing::info!(partition = %range, "rebuilt partition is identical to the committed one; kept");
            return Ok((existing.manifest.clone(), true, None));
        }
        check_replace(
            self.records.pas.as_deref(),
            self.records.catalog.as_deref(),
            range,
        )
        .await
        .map_err(Records::error)?;
        self.committer
            .replace(&manifest, &staged.parquet_key)
            .await?;
        self.counts.replaced += 1;
        tracing::info!(
            partition = %range,
            rows = staged.file.rows,
            bytes = staged.file.byte_size,
            replaced = %old.as_ref().map(|t| t.checksum.as_str()).unwrap_or(""),
            hash = %manifest.primary().map(|t| t.checksum.as_str()).unwrap_or(""),
            differences = %crate::publish::settings_differences(&existing.manifest, &self.settings).join("; "),
            "replaced partition (era.allow_overwrite)"
        );
        Ok((manifest, false, old))
    }

    /// What the hooks are shown about `manifest`'s partition.
    fn commit_event(
        &self,
        manifest: Manifest,
        adopted: bool,
        overwrite: bool,
        replaced: Option<ManifestTable>,
    ) -> CommitEvent {
        let range = manifest.range();
        CommitEvent {
            range,
            storage_path: self.layout.storage_path(range),
            parquet_uri: self
                .committer
                .location
                .uri_of(&self.layout.committed_file_key(&manifest)),
            manifest,
            adopted,
            overwrite,
            replaced,
        }
    }

    /// A staged partition's first ledger must link to the last ledger before it, when known.
    fn check_staged_link(&self, staged: &Staged) -> Result<(), SequenceError> {
        if let Some(prior) = &self.prior_last_hash {
            check_link(
                staged.range,
                &staged.edges.previous_ledger_hash,
                prior,
                &staged.parquet_key,
            )?;
        }
        Ok(())
    }

    async fn commit_staged(&mut self, staged: &Staged) -> Result<Manifest, SequenceError> {
        let range = staged.range;
        self.check_staged_link(staged)?;
        let manifest = self.manifest_for(staged);
        self.committer.commit(&manifest).await?;
        tracing::info!(
            partition = %range,
            rows = staged.file.rows,
            bytes = staged.file.byte_size,
            hash = %manifest.primary().map(|t| t.checksum.as_str()).unwrap_or(""),
            build_ms = staged.build_time.as_millis() as u64,
            "committed partition"
        );
        Ok(manifest)
    }

    /// The manifest of `staged` replacing the committed `existing`: under its own name in a
    /// Delta table ([`DatasetLayout::replacement_file_name`]), unless its bytes are the
    /// committed file's (an identical rebuild keeps the committed manifest's table as it is).
    fn replacement_manifest(&self, staged: &Staged, existing: &Manifest) -> Manifest {
        let mut manifest = self.manifest_for(staged);
        if let Some(table) = manifest.tables.get_mut(PRIMARY_TABLE) {
            let old = existing.primary();
            table.file = match (self.replacement_naming, old) {
                (_, Some(old)) if old.checksum == table.checksum => old.file.clone(),
                (ReplacementNaming::ByChecksum, _) => {
                    DatasetLayout::replacement_file_name(staged.range, &table.checksum)
                }
                (ReplacementNaming::SameName, _) => table.file.clone(),
            };
        }
        manifest
    }

    fn manifest_for(&self, staged: &Staged) -> Manifest {
        let range = staged.range;
        Manifest {
            partition: ManifestPartition {
                start: range.start,
                end: range.end,
                era_id: self.layout.era_id.clone(),
                version: self.layout.version_label.clone(),
                network: self.layout.network.clone(),
            },
            tables: BTreeMap::from([(
                PRIMARY_TABLE.to_string(),
                ManifestTable {
                    file: DatasetLayout::parquet_file_name(range),
                    checksum: crate::hash::checksum_string(&staged.file.sha256),
                    row_count: staged.file.rows,
                    byte_size: staged.file.byte_size,
                },
            )]),
            producer: Producer::current(),
            created_at: crate::time::now_rfc3339_nanos(),
            chain: Some(ChainInfo {
                previous_ledger_hash: hex32(&staged.edges.previous_ledger_hash)
                    .as_str()
                    .to_string(),
                first_ledger_hash: hex32(&staged.edges.first_ledger_hash).as_str().to_string(),
                last_ledger_hash: hex32(&staged.edges.last_ledger_hash).as_str().to_string(),
            }),
            ingested_at: Some(self.ingested_at.clone()),
            network_passphrase: self.network_passphrase.clone(),
            writer: Some(self.settings.writer.clone()),
            archive: staged.archive.as_deref().cloned(),
            manifest_sha256: None, // sealed when written
        }
    }

    /// What a committed partition found in storage says against this run's dataset.
    fn expect<'a>(
        &'a self,
        manifest: &Manifest,
        seal: Option<&'a SealCheck>,
        prior_hash: Option<&'a str>,
    ) -> Expect<'a> {
        Expect {
            range: manifest.range(),
            network: &self.layout.network,
            era_id: &self.layout.era_id,
            version_label: &self.layout.version_label,
            seal,
            parquet_size: None,
            prior_hash,
            ingested_at: None,
        }
    }

    /// Adopting applies the one manifest policy ([`crate::sequence::policy`]): the seal, the
    /// dataset, the table (file name, checksum, rows), the chain hashes and the link. A resumed
    /// run does not know the `ingested_at` of earlier runs nor the Parquet size (`verify` checks
    /// the file itself).
    fn check_adopted(&self, existing: &ExistingPartition) -> Result<(), SequenceError> {
        let (manifest, key) = (&existing.manifest, &existing.manifest_key);
        let prior = self.prior_last_hash.map(hex::encode);
        let expect = self.expect(manifest, Some(&existing.seal), prior.as_deref());
        match policy::refusal(manifest, &expect) {
            None => {}
            Some(Finding::Dataset { found, expected }) => {
                return Err(SequenceError::ForeignPartition {
                    range: manifest.range(),
                    key: key.clone(),
                    found,
                    expected,
                });
            }
            // The link keeps its own error (bad input: the source's chain is broken).
            Some(Finding::Link { .. }) => {
                let previous = manifest
                    .chain
                    .as_ref()
                    .and_then(|c| parse_hash(&c.previous_ledger_hash));
                if let (Some(previous), Some(prior)) = (previous, &self.prior_last_hash) {
                    check_link(manifest.range(), &previous, prior, key)?;
                }
            }
            Some(finding) => {
                return Err(SequenceError::Refused {
                    range: manifest.range(),
                    key: key.clone(),
                    finding,
                });
            }
        }
        if manifest.chain.is_none() && self.prior_last_hash.is_some() {
            tracing::warn!(
                partition = %manifest.range(),
                "committed partition has no chain hashes in its manifest; its link to the previous partition is not checked"
            );
        }
        Ok(())
    }

    /// A committed partition found in storage must belong to this dataset.
    pub fn check_dataset(&self, manifest: &Manifest, key: &str) -> Result<(), SequenceError> {
        foreign(
            manifest,
            key,
            &manifest.check(&self.expect(manifest, None, None)),
        )
    }
}

/// The [`Finding::Dataset`] among `findings`, as the sequencer's error.
fn foreign(manifest: &Manifest, key: &str, findings: &[Finding]) -> Result<(), SequenceError> {
    match findings.iter().find_map(|f| match f {
        Finding::Dataset { found, expected } => Some((found, expected)),
        _ => None,
    }) {
        Some((found, expected)) => Err(SequenceError::ForeignPartition {
            range: manifest.range(),
            key: key.to_string(),
            found: found.clone(),
            expected: expected.clone(),
        }),
        None => Ok(()),
    }
}
