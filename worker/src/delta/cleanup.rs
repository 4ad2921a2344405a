//! Log cleanup, as Delta's own writers do it (docs/formats.md#log-cleanup): commit files and
//! checkpoints older than `delta.logRetentionDuration` (default 30 days) are deleted, but only
//! those before the newest checkpoint that is itself older than the retention, so every version
//! still in the retention window stays readable from a checkpoint and the commits after it, and
//! nothing the latest checkpoint needs is ever touched (`_last_checkpoint` is never deleted and
//! keeps naming the latest checkpoint). Data files the table no longer adds (a replacement's
//! old file) are deleted once their `remove` is older than `delta.deletedFileRetentionDuration`
//! (default 7 days): until then readers of older versions still read them.
//!
//! The decisions are pure functions of listings and a clock ([`expired_log_files`],
//! [`expired_data_files`]); [`super::DeltaTable::clean_up`] is the I/O around them.

use std::collections::{BTreeMap, BTreeSet};

use futures::TryStreamExt;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectMeta, ObjectStore, ObjectStoreExt};
use serde_json::Value;

use super::actions::{
    Action, Metadata, checkpoint_file_name, commit_file_name, decode_path, parse_commit_file_name,
};
use super::repair::read_manifest;
use super::table::{DeltaError, DeltaTable, committed_path, range_of_path};
use crate::partition::LedgerRange;

pub const LOG_RETENTION_KEY: &str = "delta.logRetentionDuration";
pub const DELETED_FILE_RETENTION_KEY: &str = "delta.deletedFileRetentionDuration";
const DAY_MS: i64 = 24 * 3600 * 1000;
/// Delta's default `delta.logRetentionDuration`: `interval 30 days`.
pub const DEFAULT_LOG_RETENTION_MS: i64 = 30 * DAY_MS;
/// Delta's default `delta.deletedFileRetentionDuration`: `interval 1 week`.
pub const DEFAULT_DELETED_FILE_RETENTION_MS: i64 = 7 * DAY_MS;

/// A Delta interval (`interval 30 days`, `interval 1 week`, `interval 12 hours`…) in
/// milliseconds; `None` when it is not one.
pub fn parse_interval(text: &str) -> Option<i64> {
    let mut words = text.split_whitespace();
    let first = words.next()?;
    let number = match first.eq_ignore_ascii_case("interval") {
        true => words.next()?,
        false => first,
    };
    let n: i64 = number.parse().ok().filter(|n| *n >= 0)?;
    let unit = words.next()?.to_ascii_lowercase();
    if words.next().is_some() {
        return None;
    }
    let ms = match unit.trim_end_matches('s') {
        "millisecond" => 1,
        "second" => 1000,
        "minute" => 60 * 1000,
        "hour" => 3600 * 1000,
        "day" => DAY_MS,
        "week" => 7 * DAY_MS,
        _ => return None,
    };
    n.checked_mul(ms)
}

/// The two retentions of a table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    pub log_ms: i64,
    pub deleted_file_ms: i64,
}

impl Retention {
    /// From the table's `metaData.configuration` (Delta's defaults when a key is absent); a value
    /// that is not an interval is an error naming the key, and nothing is cleaned.
    pub fn of(metadata: &Metadata) -> Result<Retention, String> {
        let read = |key: &str, default: i64| {
            match metadata.configuration.get(key) {
            None => Ok(default),
            Some(Value::String(s)) => parse_interval(s).ok_or_else(|| {
                format!("metaData.configuration {key} is {s:?}, not an interval such as \"interval 30 days\"")
            }),
            Some(other) => Err(format!("metaData.configuration {key} is {other}, not a string")),
        }
        };
        Ok(Retention {
            log_ms: read(LOG_RETENTION_KEY, DEFAULT_LOG_RETENTION_MS)?,
            deleted_file_ms: read(
                DELETED_FILE_RETENTION_KEY,
                DEFAULT_DELETED_FILE_RETENTION_MS,
            )?,
        })
    }
}

/// What a file of `_delta_log/` is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogKind {
    Commit,
    Checkpoint,
}

/// A commit or checkpoint file of the log, as listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogFile {
    pub version: u64,
    pub kind: LogKind,
    /// Its last modification, in ms since the epoch.
    pub modified_ms: i64,
}

/// The log files to delete at `now_ms`: those before the newest checkpoint older than the
/// retention (and at or before `last_checkpoint`, the one readers start from), themselves older
/// than the retention. Nothing when no checkpoint is old enough.
pub fn expired_log_files(
    files: &[LogFile],
    last_checkpoint: Option<u64>,
    retention_ms: i64,
    now_ms: i64,
) -> Vec<LogFile> {
    let cutoff = now_ms.saturating_sub(retention_ms);
    let Some(last) = last_checkpoint else {
        return Vec::new();
    };
    let keep_from = files
        .iter()
        .filter(|f| f.kind == LogKind::Checkpoint && f.modified_ms <= cutoff && f.version <= last)
        .map(|f| f.version)
        .max();
    let Some(keep_from) = keep_from else {
        return Vec::new();
    };
    let mut out: Vec<LogFile> = files
        .iter()
        .filter(|f| f.version < keep_from && f.modified_ms <= cutoff)
        .cloned()
        .collect();
    // Oldest first: a cleanup cut short leaves a log that starts later, never one with a hole.
    out.sort_by_key(|f| (f.version, f.kind == LogKind::Checkpoint));
    out
}

/// A data file of the table folder that the table's latest version does not add and its
/// partition's manifest does not commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Superseded {
    /// Relative to the table root (`range=S-E/part-S-E.parquet`).
    pub path: String,
    pub modified_ms: i64,
}

/// The superseded files to delete at `now_ms`: those whose `remove` (`tombstones`: path →
/// `deletionTimestamp`) is older than the retention. A file without a tombstone in the log
/// (removed before the oldest commit kept, or left by a crash before its commit) is deleted
/// when both it and the oldest commit kept (`log_floor_ms`) are older than the retention.
pub fn expired_data_files(
    superseded: &[Superseded],
    tombstones: &BTreeMap<String, i64>,
    log_floor_ms: Option<i64>,
    retention_ms: i64,
    now_ms: i64,
) -> Vec<String> {
    let cutoff = now_ms.saturating_sub(retention_ms);
    superseded
        .iter()
        .filter(|f| match tombstones.get(&f.path) {
            Some(deleted) => *deleted <= cutoff,
            None => f.modified_ms <= cutoff && log_floor_ms.is_some_and(|floor| floor <= cutoff),
        })
        .map(|f| f.path.clone())
        .collect()
}

/// The version and kind of a `_delta_log/` file name (`None` for `_last_checkpoint` and others).
pub fn parse_log_file_name(name: &str) -> Option<(u64, LogKind)> {
    if let Some(v) = parse_commit_file_name(name) {
        return Some((v, LogKind::Commit));
    }
    let digits = name.strip_suffix(".checkpoint.parquet")?;
    (digits.len() == 20 && digits.bytes().all(|b| b.is_ascii_digit()))
        .then(|| digits.parse().ok().map(|v| (v, LogKind::Checkpoint)))
        .flatten()
}

/// What the cleanup needs of the table's latest state.
pub struct Live<'a> {
    /// The paths the latest version adds.
    pub paths: &'a BTreeSet<String>,
    pub metadata: &'a Metadata,
    pub last_checkpoint: Option<u64>,
    /// List the table folder for removed files (a full listing: not after every checkpoint of
    /// a run that only appends).
    pub data: bool,
}

fn store_error(key: &ObjectPath) -> impl FnOnce(object_store::Error) -> DeltaError + '_ {
    move |source| DeltaError::Store {
        key: key.to_string(),
        source,
    }
}

async fn delete(store: &dyn ObjectStore, key: &ObjectPath) -> Result<(), DeltaError> {
    match store.delete(key).await {
        Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
        Err(e) => Err(store_error(key)(e)),
    }
}

/// Deletes the expired data files, then the expired log files (see the module docs), at
/// `now_ms`.
pub async fn clean_up(
    table: &DeltaTable,
    live: Live<'_>,
    now_ms: i64,
) -> Result<Cleaned, DeltaError> {
    let retention = Retention::of(live.metadata).map_err(|message| DeltaError::Corrupt {
        key: table.uri(),
        message,
    })?;
    let store = table.store().clone();
    let log_prefix = table.log_key("");
    let listed: Vec<ObjectMeta> = store
        .list(Some(&log_prefix))
        .try_collect()
        .await
        .map_err(store_error(&log_prefix))?;
    let log: Vec<LogFile> = listed
        .iter()
        .filter_map(|m| {
            let (version, kind) = parse_log_file_name(m.location.filename()?)?;
            Some(LogFile {
                version,
                kind,
                modified_ms: m.last_modified.timestamp_millis(),
            })
        })
        .collect();
    let expired_log = expired_log_files(&log, live.last_checkpoint, retention.log_ms, now_ms);
    let superseded = match live.data {
        true => superseded_files(table, live.paths).await?,
        false => Vec::new(),
    };
    let mut cleaned = Cleaned::default();
    if !superseded.is_empty() {
        let mut tombstones = BTreeMap::new();
        let commits = log.iter().filter(|f| f.kind == LogKind::Commit);
        for f in commits.clone() {
            for action in table.read_commit(f.version).await?.unwrap_or_default() {
                if let Action::Remove(r) = action {
                    let at = r.deletion_timestamp.unwrap_or(f.modified_ms);
                    tombstones.insert(decode_path(&r.path), at);
                }
            }
        }
        let floor = commits.map(|f| f.modified_ms).min();
        let expired = expired_data_files(
            &superseded,
            &tombstones,
            floor,
            retention.deleted_file_ms,
            now_ms,
        );
        for path in &expired {
            delete(store.as_ref(), &table.data_key(path)).await?;
            tracing::info!(file = %path, "delta: removed file deleted after delta.deletedFileRetentionDuration");
        }
        cleaned.data_files = expired.len();
        cleaned.data_files_kept = superseded.len() - expired.len();
    }
    for f in &expired_log {
        let name = match f.kind {
            LogKind::Commit => commit_file_name(f.version),
            LogKind::Checkpoint => checkpoint_file_name(f.version),
        };
        delete(store.as_ref(), &table.log_key(&name)).await?;
    }
    cleaned.log_files = expired_log.len();
    if cleaned.log_files + cleaned.data_files > 0 {
        tracing::info!(
            log_files = cleaned.log_files,
            data_files = cleaned.data_files,
            "delta: log cleanup"
        );
    }
    Ok(cleaned)
}

/// The partition files of the table folder that the latest version does not add and that their
/// partition's manifest does not commit (a folder without a manifest is not the table's).
async fn superseded_files(
    table: &DeltaTable,
    live: &BTreeSet<String>,
) -> Result<Vec<Superseded>, DeltaError> {
    let prefix = table.data_key("");
    let listed: Vec<ObjectMeta> = table
        .store()
        .list(Some(&prefix))
        .try_collect()
        .await
        .map_err(store_error(&prefix))?;
    let mut by_range: BTreeMap<LedgerRange, Vec<Superseded>> = BTreeMap::new();
    for meta in listed {
        let Some(rel) = meta
            .location
            .as_ref()
            .strip_prefix(prefix.as_ref())
            .map(|r| r.trim_start_matches('/').to_string())
        else {
            continue;
        };
        if let Some(range) = range_of_path(&rel).filter(|_| !live.contains(&rel)) {
            by_range.entry(range).or_default().push(Superseded {
                path: rel,
                modified_ms: meta.last_modified.timestamp_millis(),
            });
        }
    }
    let mut out = Vec::new();
    for (range, files) in by_range {
        let location = table.location();
        let Some(manifest) = read_manifest(location, table.layout(), range).await? else {
            continue;
        };
        let committed = committed_path(&manifest);
        out.extend(files.into_iter().filter(|f| f.path != committed));
    }
    Ok(out)
}

/// What one cleanup deleted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Cleaned {
    pub log_files: usize,
    pub data_files: usize,
    /// Removed files still within `delta.deletedFileRetentionDuration` (kept for now).
    pub data_files_kept: usize,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intervals_parse_as_delta_writes_them() {
        assert_eq!(parse_interval("interval 30 days"), Some(30 * DAY_MS));
        assert_eq!(parse_interval("interval 1 week"), Some(7 * DAY_MS));
        assert_eq!(parse_interval("INTERVAL 2 Hours"), Some(2 * 3600 * 1000));
        assert_eq!(parse_interval("interval 0 seconds"), Some(0));
        assert_eq!(parse_interval("45 minutes"), Some(45 * 60 * 1000));
        for bad in [
            "",
            "interval",
            "interval days",
            "interval -1 days",
            "interval 3 fortnights",
            "interval 1 day extra",
        ] {
            assert_eq!(parse_interval(bad), None, "{bad}");
        }
    }

    #[test]
    fn retention_comes_from_the_table_configuration_or_deltas_defaults() {
        let init =
            super::super::actions::initial_actions("d", 0, crate::parquet::IntegerTypes::Signed);
        let super::super::actions::Action::Metadata(mut m) = init[1].clone() else {
            panic!()
        };
        assert_eq!(
            Retention::of(&m),
            Ok(Retention {
                log_ms: DEFAULT_LOG_RETENTION_MS,
                deleted_file_ms: DEFAULT_DELETED_FILE_RETENTION_MS
            })
        );
        m.configuration
            .insert(LOG_RETENTION_KEY.into(), "interval 2 days".into());
        m.configuration
            .insert(DELETED_FILE_RETENTION_KEY.into(), "interval 1 hour".into());
        assert_eq!(
            Retention::of(&m),
            Ok(Retention {
                log_ms: 2 * DAY_MS,
                deleted_file_ms: 3600 * 1000
            })
        );
        m.configuration
            .insert(LOG_RETENTION_KEY.into(), "forever".into());
        assert!(Retention::of(&m).unwrap_err().contains(LOG_RETENTION_KEY));
    }

    fn log(
        versions: std::ops::RangeInclusive<u64>,
        every: u64,
        modified: impl Fn(u64) -> i64,
    ) -> Vec<LogFile> {
        let mut out = Vec::new();
        for v in versions {
            out.push(LogFile {
                version: v,
                kind: LogKind::Commit,
                modified_ms: modified(v),
            });
            if v > 0 && v % every == 0 {
                out.push(LogFile {
                    version: v,
                    kind: LogKind::Checkpoint,
                    modified_ms: modified(v),
                });
            }
        }
        out
    }

    /// Versions 0..=35, one a day, checkpoints every 10; 30 days of retention on day 40: the
    /// newest checkpoint older than the cutoff (day 10) is 10, so versions 0..=9 go (commit
    /// files; there is no checkpoint before 10), and 10 with everything after it stays.
    #[test]
    fn only_what_precedes_the_newest_expired_checkpoint_goes() {
        let files = log(0..=35, 10, |v| v as i64 * DAY_MS);
        let expired = expired_log_files(&files, Some(30), 30 * DAY_MS, 40 * DAY_MS);
        assert_eq!(
            expired
                .iter()
                .map(|f| (f.version, f.kind))
                .collect::<Vec<_>>(),
            (0..10).map(|v| (v, LogKind::Commit)).collect::<Vec<_>>()
        );
        // Day 65: checkpoint 30 (day 30) is expired: everything before it goes, checkpoints
        // 10 and 20 included; 30 and later stay.
        let expired = expired_log_files(&files, Some(30), 30 * DAY_MS, 65 * DAY_MS);
        assert!(expired.iter().all(|f| f.version < 30));
        assert_eq!(expired.len(), 30 + 2);
        assert!(
            expired
                .iter()
                .any(|f| f.version == 20 && f.kind == LogKind::Checkpoint)
        );
        // Far in the future: still nothing at or after the last checkpoint.
        let expired = expired_log_files(&files, Some(30), 30 * DAY_MS, 1000 * DAY_MS);
        assert!(expired.iter().all(|f| f.version < 30), "{expired:?}");
        // No checkpoint old enough (or none at all): nothing.
        assert!(expired_log_files(&files, Some(30), 30 * DAY_MS, 39 * DAY_MS).is_empty());
        assert!(expired_log_files(&files, None, 30 * DAY_MS, 1000 * DAY_MS).is_empty());
    }

    /// A checkpoint newer than `_last_checkpoint` (written, pointer not yet moved) is not one
    /// readers start from: the cut is at the last checkpoint at most.
    #[test]
    fn the_cut_never_passes_the_last_checkpoint() {
        let files = log(0..=25, 10, |v| v as i64);
        let expired = expired_log_files(&files, Some(10), 0, 1000);
        assert_eq!(expired.iter().map(|f| f.version).max(), Some(9));
    }

    #[test]
    fn removed_files_go_after_their_retention_and_untracked_ones_only_when_old() {
        let f = |path: &str, modified_ms| Superseded {
            path: path.into(),
            modified_ms,
        };
        let superseded = vec![f("a", 0), f("b", 0), f("c", 0), f("d", 95)];
        let tombstones = BTreeMap::from([("a".to_string(), 50), ("b".to_string(), 95)]);
        // Day 100, retention 10: a's remove is old (50), b's recent (95); c has no tombstone
        // and is old, d has none and is new.
        assert_eq!(
            expired_data_files(&superseded, &tombstones, Some(0), 10, 100),
            ["a", "c"]
        );
        // While the oldest commit kept is within the retention, a file without a tombstone may
        // have been removed inside it: kept.
        assert_eq!(
            expired_data_files(&superseded, &tombstones, Some(95), 10, 100),
            ["a"]
        );
    }
}
