//! Replacing committed partitions with rebuilt ones (the operator's `spec.rebuild`), in ledger
//! order, with the standalone overwrite's own steps: the rebuilt file waits beside the
//! committed one ([`crate::publish::StagedRebuild`]); every check runs first (the manifest
//! policy on the new manifest, the hash links on both sides, every record's
//! [`check_replace`]); only then is it swapped in ([`crate::publish::Committer::replace`]) and
//! recorded ([`record_partition`]: the table log's new add, a `bronze_partition_replaced` PAS
//! event after the head, the catalog row replaced and its successor re-pointed). The head's
//! position never moves back.
//!
//! Safe after any crash: a partition whose new manifest is already committed is not swapped
//! again, its records are written idempotently (the PAS log adds no second event for the same
//! content), and its leftovers are cleared last, so the same step simply runs again.

use futures::future::BoxFuture;

use super::head::{Head, Position};
use super::logs::PasAppendError;
use super::policy;
use super::steps::{
    CatalogRun, Logs, RecordError, Sequencing, check_replace, partition_record, record_partition,
};
use super::store::{Committed, ReadError};
use crate::partition::LedgerRange;
use crate::publish::{Expect, Manifest, StagedRebuild};

/// Partitions rebuilt beside their committed ones, and the swap.
pub trait RebuildStore: Send + Sync {
    /// The rebuild staged beside the committed partition `range`, if any.
    fn staged(&self, range: LedgerRange)
    -> BoxFuture<'_, Result<Option<StagedRebuild>, ReadError>>;
    /// Puts the rebuilt file in place and commits `manifest` (un-commit, move, commit).
    fn swap<'a>(&'a self, manifest: &'a Manifest) -> BoxFuture<'a, Result<(), ReadError>>;
    /// Removes the rebuild's leftovers beside `range` (the file, then the marker).
    fn clear(&self, range: LedgerRange) -> BoxFuture<'_, Result<(), ReadError>>;
}

/// One rebuild's replacements.
pub struct Replacing<'a> {
    /// The dataset, its records and the per-call limit, as for sequencing.
    pub run: &'a Sequencing<'a>,
    pub staged: &'a dyn RebuildStore,
    pub rebuild_id: &'a str,
    /// The range, whole partitions of the grid, all at or below the head.
    pub range: LedgerRange,
}

/// What one call did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Replaced {
    /// Every partition of the range up to this ledger is replaced or found identical.
    pub done_through: Option<u32>,
    /// Partitions swapped in now, in order.
    pub replaced: Vec<LedgerRange>,
    /// Partitions rebuilt byte for byte the same: kept, no event.
    pub identical: u64,
    /// The next partition, not rebuilt yet (its Job has not staged it).
    pub waiting_for: Option<LedgerRange>,
    /// A rebuilt partition refused by a check, or a record that disagrees: nothing changed.
    pub fault: Option<String>,
    /// Storage or a record unreachable: retried later.
    pub trouble: Option<String>,
}

enum Stop {
    Waiting,
    Fault(String),
    Trouble(String),
}

fn read_stop(e: ReadError) -> Stop {
    match e.transient {
        true => Stop::Trouble(e.message),
        false => Stop::Fault(e.message),
    }
}

fn record_stop(e: RecordError) -> Stop {
    match e {
        RecordError::Pas(PasAppendError::Conflict { message, .. }) => Stop::Fault(message),
        RecordError::Pas(e @ PasAppendError::Unavailable(_)) => Stop::Trouble(e.to_string()),
        RecordError::Table(name, e) if e.conflict => Stop::Fault(format!("{name}: {}", e.message)),
        RecordError::Table(name, e) => Stop::Trouble(format!("{name}: {}", e.message)),
        RecordError::Catalog(message) => Stop::Trouble(message),
    }
}

/// Replaces the rebuilt partitions of `r.range` after `done_through`, in ledger order, at most
/// `max_steps` of them; `head`'s chain moves with each replacement event, its position only
/// takes the new checksum when its own partition is replaced.
pub async fn replace_rebuilt(
    r: &Replacing<'_>,
    head: &mut Head,
    done_through: Option<u32>,
) -> Replaced {
    let mut out = Replaced {
        done_through,
        ..Default::default()
    };
    let mut cat = r.run.catalog.map(CatalogRun::new);
    for _ in 0..r.run.max_steps {
        let next = match out.done_through {
            Some(d) if d >= r.range.end => break,
            Some(d) => d + 1,
            None => r.range.start,
        };
        let Some(partition) = r.run.grid.partition_of(next) else {
            break;
        };
        match replace_one(r, head, cat.as_mut(), partition).await {
            Ok(identical) => {
                out.done_through = Some(partition.end);
                match identical {
                    true => out.identical += 1,
                    false => out.replaced.push(partition),
                }
            }
            Err(Stop::Waiting) => {
                out.waiting_for = Some(partition);
                break;
            }
            Err(Stop::Fault(message)) => {
                out.fault = Some(format!("partition {partition}: {message}"));
                break;
            }
            Err(Stop::Trouble(message)) => {
                out.trouble = Some(format!("partition {partition}: {message}"));
                break;
            }
        }
    }
    out
}

/// The last ledger's hash a manifest records (lowercase).
fn last_hash(manifest: &Manifest) -> Option<String> {
    manifest
        .chain
        .as_ref()
        .map(|c| c.last_ledger_hash.to_ascii_lowercase())
}

/// The committed partition before `partition`, as the position the records link to.
async fn previous(r: &Replacing<'_>, partition: LedgerRange) -> Result<Option<Position>, Stop> {
    let Some(before) = partition.start.checked_sub(1) else {
        return Ok(None);
    };
    let Some(range) = r.run.grid.partition_of(before) else {
        return Ok(None);
    };
    let found = r.run.store.committed(range).await.map_err(read_stop)?;
    let Some(Committed { manifest, .. }) = found else {
        return Err(Stop::Fault(format!(
            "the partition before it, {range}, is not committed"
        )));
    };
    Ok(Some(Position {
        last_committed_ledger: range.end,
        partition: range,
        checksum: manifest
            .primary()
            .map(|t| t.checksum.clone())
            .unwrap_or_default(),
        last_ledger_hash: last_hash(&manifest),
    }))
}

/// Checks, swaps and records one rebuilt partition; `Ok(true)` when it was identical.
async fn replace_one(
    r: &Replacing<'_>,
    head: &mut Head,
    cat: Option<&mut CatalogRun<'_>>,
    partition: LedgerRange,
) -> Result<bool, Stop> {
    let run = r.run;
    let staged = match r.staged.staged(partition).await.map_err(read_stop)? {
        Some(s) if s.rebuild_id == r.rebuild_id => s,
        _ => return Err(Stop::Waiting),
    };
    let committed = run.store.committed(partition).await.map_err(read_stop)?;
    let before = previous(r, partition).await?;
    // Already in place: an identical rebuild, or a swap whose records a crash interrupted.
    let in_place = committed
        .as_ref()
        .is_some_and(|c| c.manifest.primary() == staged.manifest.primary());
    let parquet_size = match in_place {
        true => committed.as_ref().and_then(|c| c.parquet_size),
        false => staged.parquet_size,
    };
    if parquet_size.is_none() {
        return Err(Stop::Fault(
            "the rebuilt file beside the committed one is missing; the committed partition is unchanged"
                .into(),
        ));
    }
    let prior = before.as_ref().and_then(|p| p.last_ledger_hash.clone());
    let expect = Expect {
        range: partition,
        network: &run.layout.network,
        era_id: &run.layout.era_id,
        version_label: &run.layout.version_label,
        seal: Some(&staged.seal),
        parquet_size,
        prior_hash: prior.as_deref(),
        ingested_at: run.ingested_at,
    };
    let position = policy::accept(&staged.manifest, &expect).map_err(|f| {
        Stop::Fault(format!(
            "the rebuilt partition is refused ({f}); the committed partition is unchanged"
        ))
    })?;
    // The partition after it links to its last ledger: that hash cannot change.
    if let Some(c) = &committed
        && last_hash(&c.manifest) != last_hash(&staged.manifest)
    {
        return Err(Stop::Fault(
            "the rebuilt partition's last ledger hash differs from the committed one's; the committed partition is unchanged".into(),
        ));
    }
    if !in_place {
        check_replace(run.pas, run.catalog, partition)
            .await
            .map_err(record_stop)?;
        r.staged.swap(&staged.manifest).await.map_err(read_stop)?;
    }
    let mut record = partition_record(run.layout, staged.manifest.clone(), false, true);
    record.replaced = true;
    // Recorded after the partition before it (the catalog's link), on the chain's head.
    let mut at = Head {
        position: before,
        chain_head: head.chain_head.clone(),
        event_count: head.event_count,
    };
    let logs = Logs {
        table: run.table,
        pas: run.pas,
    };
    record_partition(logs, cat, &mut at, &record, position.clone())
        .await
        .map_err(record_stop)?;
    let identical = match run.pas {
        Some(_) => at.chain_head == head.chain_head,
        None => in_place,
    };
    head.chain_head = at.chain_head;
    head.event_count = at.event_count;
    if let Some(p) = head.position.as_mut().filter(|p| p.partition == partition) {
        p.checksum = position.checksum;
    }
    r.staged.clear(partition).await.map_err(read_stop)?;
    Ok(identical)
}
