//! `verify` of the Delta log against the manifests: every committed partition added exactly
//! once, with its file's size, and nothing added that has no manifest. Findings name the log
//! version and the partition.

use std::collections::BTreeMap;

use super::actions::{Action, decode_path};
use super::checkpoint::CheckpointState;
use super::table::{DeltaTable, range_of_path};
use crate::parquet::IntegerTypes;
use crate::partition::LedgerRange;
use crate::verify::{Report, VerifiedPartition};

/// What the log's replay says about one path.
struct Live {
    version: u64,
    size: i64,
    modification_time: i64,
}

/// Checks the log of `table` against the `verified` partitions (pure once the commits are read);
/// `table_types`: the integer types the table's metadata says its files have. `base`: the
/// checkpoint the replay starts from when the log's first versions were cleaned up (the
/// commits after it are replayed); `None`: every commit from version 0.
pub fn check_commits(
    table_uri: &str,
    commits: &[(u64, Vec<Action>)],
    base: Option<(u64, &CheckpointState)>,
    verified: &[VerifiedPartition],
    table_types: Option<IntegerTypes>,
    report: &mut Report,
) -> BTreeMap<String, u64> {
    let mut live: BTreeMap<String, Live> = BTreeMap::new();
    if let Some((version, state)) = base {
        for add in &state.adds {
            let live_file = Live {
                version,
                size: add.size,
                modification_time: add.modification_time,
            };
            live.insert(decode_path(&add.path), live_file);
        }
    }
    let from = base.map_or(0, |(v, _)| v + 1);
    let commits: Vec<&(u64, Vec<Action>)> = commits.iter().filter(|(v, _)| *v >= from).collect();
    // Readers replay every version from 0 (or from a checkpoint): a hole makes the table
    // unreadable past it.
    let mut expected = from;
    for (version, _) in commits.iter().copied() {
        if *version != expected {
            report.problem(
                None,
                format!("{table_uri}/_delta_log"),
                "delta.gap",
                format!(
                    "versions {expected} to {} are missing from the log",
                    version - 1
                ),
            );
        }
        expected = version + 1;
    }
    for (version, actions) in commits.iter().copied() {
        for action in actions {
            match action {
                Action::Add(add) => {
                    let path = decode_path(&add.path);
                    let range = range_of_path(&path);
                    // The same add again; a replacement (`era.allow_overwrite`) has a newer
                    // manifest, so another modificationTime.
                    if let Some(prev) = live.get(&path)
                        && prev.size == add.size
                        && prev.modification_time == add.modification_time
                    {
                        report.problem(
                            range,
                            format!("{table_uri}/_delta_log"),
                            "delta.duplicate_add",
                            format!(
                                "version {version} adds {path} again (already added by version {})",
                                prev.version
                            ),
                        );
                    }
                    live.insert(
                        path,
                        Live {
                            version: *version,
                            size: add.size,
                            modification_time: add.modification_time,
                        },
                    );
                }
                Action::Remove(r) => {
                    live.remove(&decode_path(&r.path));
                }
                _ => {}
            }
        }
    }
    check_live_files(table_uri, &live, verified, table_types, report);
    let latest = commits.last().map(|(v, _)| *v).or(base.map(|(v, _)| v));
    for p in verified {
        let path = super::table::committed_path(&p.manifest);
        if !live.contains_key(&path) {
            report.problem(
                Some(p.range),
                format!("{table_uri}/{path}"),
                "delta.missing_add",
                format!(
                    "partition {} is committed but no version of the log adds it (latest version {}); the next run adds it",
                    p.range,
                    latest.map_or("none".to_string(), |v| v.to_string())
                ),
            );
        }
    }
    live.into_iter().map(|(p, f)| (p, f.version)).collect()
}

/// Each file the latest version adds, against its partition's manifest: one file per partition,
/// the manifest's file, its size, its integer types.
fn check_live_files(
    table_uri: &str,
    live: &BTreeMap<String, Live>,
    verified: &[VerifiedPartition],
    table_types: Option<IntegerTypes>,
    report: &mut Report,
) {
    let by_range: BTreeMap<LedgerRange, &VerifiedPartition> =
        verified.iter().map(|p| (p.range, p)).collect();
    let mut live_of_range: BTreeMap<LedgerRange, &str> = BTreeMap::new();
    for (path, file) in live {
        let object = format!("{table_uri}/{path}");
        if crate::sequence::tip::TipFile::parse(path).is_some() {
            // A provisional file (docs/tip.md): checked by the tip's own verify.
            continue;
        }
        let Some(range) = range_of_path(path) else {
            report.problem(
                None,
                object,
                "delta.unknown_file",
                format!(
                    "version {} adds a file that is no partition of this dataset",
                    file.version
                ),
            );
            continue;
        };
        if let Some(other) = live_of_range.insert(range, path) {
            report.problem(
                Some(range),
                object.clone(),
                "delta.duplicate_partition",
                format!(
                    "version {} adds {path} while {other} of the same partition {range} is still in the table (no remove of it): readers read the partition twice",
                    file.version
                ),
            );
        }
        let manifest = by_range.get(&range).map(|p| &p.manifest);
        if let Some(m) = manifest.filter(|m| super::table::committed_path(m) != *path) {
            report.problem(
                Some(range),
                object.clone(),
                "delta.stale_file",
                format!(
                    "version {} adds {path}, but partition {range}'s manifest commits {}: the log does not have its replacement yet; the next run commits it",
                    file.version,
                    super::table::committed_path(m)
                ),
            );
            continue;
        }
        match manifest.and_then(|m| m.primary()) {
            None => report.problem(
                Some(range),
                object.clone(),
                "delta.no_manifest",
                format!(
                    "version {} adds partition {range}, which has no committed manifest",
                    file.version
                ),
            ),
            Some(t) if t.byte_size as i64 != file.size => report.problem(
                Some(range),
                object.clone(),
                "delta.size",
                format!(
                    "version {} adds partition {range} with size {}, its manifest says {} bytes",
                    file.version, file.size, t.byte_size
                ),
            ),
            Some(_) => {}
        }
        if let Some(partition) = by_range.get(&range) {
            check_file_types(&object, file.version, partition, table_types, report);
        }
    }
}

/// Every file the latest version adds is in storage (`existing`, relative to the table root):
/// an add without its file makes every reader of the table fail.
pub fn check_files_exist(
    table_uri: &str,
    live: &BTreeMap<String, u64>,
    existing: &std::collections::BTreeSet<String>,
    report: &mut Report,
) {
    for (path, version) in live {
        if existing.contains(path) || range_of_path(path).is_none() {
            continue;
        }
        report.problem(
            range_of_path(path),
            format!("{table_uri}/{path}"),
            "delta.missing_file",
            format!(
                "version {version} adds {path}, which is not in storage: readers of the table fail on it (repair: {})",
                super::table::REPAIR_COMMAND
            ),
        );
    }
}

/// A live file whose `ledger_sequence`/`protocol_version` types are not the table's: readers
/// that check the file against the table's schema refuse it.
fn check_file_types(
    object: &str,
    version: u64,
    partition: &VerifiedPartition,
    table_types: Option<IntegerTypes>,
    report: &mut Report,
) {
    let file = partition.rows.as_ref().and_then(|r| r.integers);
    if let (Some(file), Some(table)) = (file, table_types)
        && file != table
    {
        report.problem(
            Some(partition.range),
            object.to_string(),
            "delta.column_types",
            format!(
                "version {version} adds partition {}, whose file stores ledger_sequence and protocol_version as {file} integers; the table's schema says {table} (docs/formats.md#integer-types)",
                partition.range
            ),
        );
    }
}

/// Reads the log of `table` and checks it (see [`check_commits`]).
pub async fn check_log(table: &DeltaTable, verified: &[VerifiedPartition], report: &mut Report) {
    let uri = table.uri();
    match table.read_all_commits().await {
        Ok(commits) if commits.is_empty() => report.problem(
            None,
            format!("{uri}/_delta_log"),
            "delta.missing",
            "storage.table_format is delta but the table has no log yet; the next run writes it",
        ),
        Ok(commits) => {
            let table_types = match table.integer_types().await {
                Ok(t) => t,
                Err(e) => {
                    report.problem(
                        None,
                        format!("{uri}/_delta_log"),
                        "delta.read",
                        e.to_string(),
                    );
                    None
                }
            };
            let checkpoint = match table.read_last_checkpoint().await {
                Ok(found) => found,
                Err(e) => {
                    report.problem(
                        None,
                        format!("{uri}/_delta_log"),
                        "delta.checkpoint",
                        e.to_string(),
                    );
                    None
                }
            };
            // A log whose first versions were cleaned up is read from its last checkpoint.
            let cleaned = commits.first().is_some_and(|(v, _)| *v > 0);
            let base = checkpoint
                .as_ref()
                .filter(|_| cleaned)
                .map(|(v, state)| (*v, state));
            let live = check_commits(&uri, &commits, base, verified, table_types, report);
            match table.data_files().await {
                Ok(existing) => check_files_exist(&uri, &live, &existing, report),
                Err(e) => report.problem(None, uri.clone(), "delta.read", e.to_string()),
            }
            if let Some((version, state)) = &checkpoint {
                check_checkpoint(&uri, &commits, *version, state, report);
            }
        }
        Err(e) => report.problem(
            None,
            format!("{uri}/_delta_log"),
            "delta.read",
            e.to_string(),
        ),
    }
}

/// The last checkpoint holds exactly the files the commits up to its version add (readers start
/// from it, so a wrong checkpoint is a wrong table).
pub fn check_checkpoint(
    table_uri: &str,
    commits: &[(u64, Vec<Action>)],
    version: u64,
    state: &super::checkpoint::CheckpointState,
    report: &mut Report,
) {
    // Without the commits from version 0 the checkpoint cannot be compared.
    if commits.first().map(|(v, _)| *v) != Some(0) {
        return;
    }
    let mut replayed: BTreeMap<String, i64> = BTreeMap::new();
    for (_, actions) in commits.iter().filter(|(v, _)| *v <= version) {
        for action in actions {
            match action {
                Action::Add(a) => {
                    replayed.insert(decode_path(&a.path), a.size);
                }
                Action::Remove(r) => {
                    replayed.remove(&decode_path(&r.path));
                }
                _ => {}
            }
        }
    }
    let in_checkpoint: BTreeMap<String, i64> = state
        .adds
        .iter()
        .map(|a| (decode_path(&a.path), a.size))
        .collect();
    let differ: Vec<&String> = replayed
        .keys()
        .chain(in_checkpoint.keys())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .filter(|p| replayed.get(*p) != in_checkpoint.get(*p))
        .collect();
    if let Some(first) = differ.first() {
        report.problem(
            range_of_path(first),
            format!(
                "{table_uri}/_delta_log/{}",
                super::actions::checkpoint_file_name(version)
            ),
            "delta.checkpoint",
            format!(
                "the checkpoint of version {version} disagrees with the commits up to it on {} file(s), first {first}",
                differ.len()
            ),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::super::actions::{Add, initial_actions};
    use super::super::checkpoint::CheckpointState;
    use super::*;

    fn add(range: &str, size: i64) -> Action {
        let (s, e) = range.split_once('-').unwrap();
        Action::Add(Add {
            path: format!("range={s}-{e}/part-{s}-{e}.parquet"),
            partition_values: Default::default(),
            size,
            modification_time: 1,
            data_change: true,
            stats: None,
        })
    }

    #[test]
    fn a_checkpoint_that_disagrees_with_the_commits_is_reported() {
        let init = initial_actions("d", 0, crate::parquet::IntegerTypes::Signed);
        let (Action::Protocol(protocol), Action::Metadata(metadata)) = (&init[0], &init[1]) else {
            panic!()
        };
        let commits = vec![
            (0, init.clone()),
            (1, vec![add("2-3", 10)]),
            (2, vec![add("4-5", 10)]),
        ];
        let state = |adds: Vec<Action>| CheckpointState {
            protocol: protocol.clone(),
            metadata: metadata.clone(),
            adds: adds
                .into_iter()
                .map(|a| match a {
                    Action::Add(a) => a,
                    _ => unreachable!(),
                })
                .collect(),
        };
        let mut ok = Report::default();
        check_checkpoint(
            "t",
            &commits,
            2,
            &state(vec![add("2-3", 10), add("4-5", 10)]),
            &mut ok,
        );
        assert!(ok.is_clean(), "{:?}", ok.findings);

        let mut bad = Report::default();
        check_checkpoint(
            "t",
            &commits,
            2,
            &state(vec![add("2-3", 10), add("4-5", 11)]),
            &mut bad,
        );
        assert_eq!(bad.findings.len(), 1);
        let f = &bad.findings[0];
        assert_eq!(f.check, "delta.checkpoint");
        assert_eq!(f.range, Some(LedgerRange::new(4, 5)));
        assert!(
            f.detail.contains("version 2") && f.detail.contains("1 file"),
            "{}",
            f.detail
        );
    }
}
