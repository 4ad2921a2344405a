//! The Delta table of a dataset: reading its state (last checkpoint, then the commits after it)
//! and appending one partition's file per commit, each commit a conditional create of the next
//! version (`PutMode::Create`), so two writers never both commit one version.

use std::collections::BTreeMap;
use std::sync::Arc;

use futures::TryStreamExt;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};
use serde_json::json;
use tokio::sync::Mutex;

use super::actions::{
    Action, Add, INTEGER_TYPES_KEY, Metadata, Protocol, Remove, checkpoint_file_name,
    commit_file_name, decode_commit, decode_path, encode_commit, encode_path, initial_actions,
    integer_types_of, parse_commit_file_name,
};
use super::checkpoint::{self, CHECKPOINT_INTERVAL, CheckpointState, LastCheckpoint};
use super::cleanup::{self, Cleaned};
use super::stats;
use crate::parquet::IntegerTypes;
use crate::partition::LedgerRange;
use crate::publish::{DatasetLayout, Manifest};
use crate::store::Location;

pub const LOG_DIR: &str = "_delta_log";
pub const LAST_CHECKPOINT: &str = "_last_checkpoint";

#[derive(Debug, thiserror::Error)]
pub enum DeltaError {
    #[error("{key}: {source}")]
    Store {
        key: String,
        source: object_store::Error,
    },
    #[error("{key}: {message}")]
    Corrupt { key: String, message: String },
    /// The log already adds this partition's path with another size, and this is not a
    /// replacement: the log and storage disagree (`verify` names it).
    #[error(
        "{key}: version {version} adds {path} with {logged} bytes, but the committed file has {size} bytes"
    )]
    Conflict {
        key: String,
        version: u64,
        path: String,
        logged: i64,
        size: u64,
    },
    /// A damaged log: a missing version, a bad checkpoint, an add whose file is not in storage.
    #[error(
        "{key}: the Delta log is damaged: {damage}; nothing is appended to it (nothing committed was changed); {repair}"
    )]
    Damaged {
        key: String,
        damage: String,
        repair: String,
    },
    /// A file whose `ledger_sequence`/`protocol_version` types are not the table's: adding it
    /// would make the table's files disagree (docs/formats.md#integer-types).
    #[error(
        "{key}: {path} stores ledger_sequence and protocol_version as {file} integers, but the table's files are {table} (metaData.configuration {INTEGER_TYPES_KEY}); a table whose files disagree is refused: see docs/formats.md#integer-types"
    )]
    Types {
        key: String,
        path: String,
        file: IntegerTypes,
        table: IntegerTypes,
    },
}

/// The repair of a damaged log (docs/runbook.md#repair-a-damaged-delta-log).
pub const REPAIR_COMMAND: &str = "bronze-copier repair-delta-log -config <config>";

impl DeltaError {
    /// The log is damaged (`damage` says where): nothing may be appended to it until it is
    /// repaired.
    pub fn damaged(key: impl Into<String>, damage: impl Into<String>) -> DeltaError {
        DeltaError::Damaged {
            key: key.into(),
            damage: damage.into(),
            repair: format!(
                "repair it with `{REPAIR_COMMAND}` (moves the damaged log aside and rebuilds it from the manifests: docs/runbook.md#repair-a-damaged-delta-log)"
            ),
        }
    }

    pub fn is_transient(&self) -> bool {
        matches!(self, DeltaError::Store { .. })
    }
}

/// A file the log adds (its latest add), by decoded path.
#[derive(Debug, Clone, PartialEq)]
pub struct LoggedFile {
    pub size: i64,
    /// `add.modificationTime`: Bronze writes the manifest's `created_at`, so the same
    /// partition always has the same value and a replacement another.
    pub modification_time: i64,
    /// The version of that add (0 when it came from a checkpoint: the exact version is not kept).
    pub version: u64,
}

#[derive(Debug, Default)]
struct State {
    /// The latest version read (`None`: no table yet).
    version: Option<u64>,
    last_checkpoint: Option<u64>,
    protocol: Option<Protocol>,
    metadata: Option<Metadata>,
    files: BTreeMap<String, (LoggedFile, Add)>,
    /// The live path of each partition (its latest add), for replacements under a new name.
    by_range: BTreeMap<LedgerRange, String>,
    /// Removed files may be waiting for the data cleanup: a remove was read or committed, or
    /// the last cleanup left removed files within their retention.
    removed_files_pending: bool,
}

impl State {
    fn insert(&mut self, path: String, file: LoggedFile, add: Add) {
        if let Some(range) = range_of_path(&path) {
            self.by_range.insert(range, path.clone());
        }
        self.files.insert(path, (file, add));
    }

    fn remove(&mut self, path: &str) {
        self.files.remove(path);
        if let Some(range) = range_of_path(path)
            && self.by_range.get(&range).is_some_and(|p| p == path)
        {
            self.by_range.remove(&range);
        }
    }

    /// The live file of partition `range`: its path and what the log says about it.
    fn of_range(&self, range: LedgerRange) -> Option<(&String, &LoggedFile, &Add)> {
        let path = self.by_range.get(&range)?;
        let (file, add) = self.files.get(path)?;
        Some((path, file, add))
    }
}

/// A partition's add, ready to commit.
#[derive(Debug, Clone)]
pub struct PreparedAdd {
    pub range: LedgerRange,
    pub add: Add,
    /// The integer types of the file (`None` when its footer could not be read).
    pub integers: Option<IntegerTypes>,
}

/// Files removed and added in one commit ([`DeltaTable::commit_changes`]): paths relative to
/// the table root, decoded.
#[derive(Debug, Clone, PartialEq)]
pub struct Changes {
    pub removes: Vec<String>,
    pub adds: Vec<Add>,
    /// `commitInfo.operation` (`WRITE`, `DELETE`).
    pub operation: &'static str,
    /// `commitInfo.operationParameters`.
    pub parameters: serde_json::Value,
}

/// What [`DeltaTable::append`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Appended {
    Added { version: u64 },
    AlreadyThere { version: u64 },
}

/// The dataset folder as a Delta table.
pub struct DeltaTable {
    store: Arc<dyn ObjectStore>,
    location: Location,
    /// The dataset folder, relative to the storage root (the table root).
    dir: String,
    layout: DatasetLayout,
    state: Mutex<State>,
    /// The data cleanup has listed the table folder once in this process (later only after a
    /// remove: a run of appends never lists the folder again).
    data_scanned: std::sync::atomic::AtomicBool,
}

/// A partition's file path relative to the table root (`range=S-E/part-S-E.parquet`).
pub fn relative_path(range: LedgerRange) -> String {
    format!("range={range}/{}", DatasetLayout::parquet_file_name(range))
}

/// The path, relative to the table root, of the file `manifest` commits
/// (`range=S-E/part-S-E.parquet`, or a replacement's `range=S-E/part-S-E.<tag>.parquet`).
pub fn committed_path(manifest: &Manifest) -> String {
    let range = manifest.range();
    match manifest.primary() {
        Some(t) if DatasetLayout::is_partition_file_name(range, &t.file) => {
            format!("range={range}/{}", t.file)
        }
        _ => relative_path(range),
    }
}

/// The range of a relative path Bronze writes (`None` for any other file).
pub fn range_of_path(path: &str) -> Option<LedgerRange> {
    let (folder, file) = path.split_once('/')?;
    let range = DatasetLayout::parse_partition_dir_name(folder)?;
    DatasetLayout::is_partition_file_name(range, file).then_some(range)
}

/// The first version of `from..=latest` missing from `listed` (the commit versions after the
/// last checkpoint), or a version listed past a hole after `latest`: the damage, in words.
pub fn missing_version(listed: &[u64], from: u64, latest: u64) -> Option<String> {
    let present: std::collections::BTreeSet<u64> = listed.iter().copied().collect();
    if let Some(v) = (from..=latest).find(|v| !present.contains(v)) {
        return Some(format!(
            "commit version {v} is missing (the log has versions up to {latest})"
        ));
    }
    let beyond = present.range(latest + 1..).next()?;
    Some(format!(
        "commit version {} is missing (the log goes on at version {beyond})",
        latest + 1
    ))
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

impl DeltaTable {
    pub fn new(location: &Location, layout: &DatasetLayout) -> Self {
        Self {
            store: location.store.clone(),
            location: location.clone(),
            dir: layout.dataset_dir(),
            layout: layout.clone(),
            state: Mutex::new(State::default()),
            data_scanned: Default::default(),
        }
    }

    pub fn uri(&self) -> String {
        self.location.uri_of(&self.dir)
    }

    pub fn layout(&self) -> &DatasetLayout {
        &self.layout
    }

    pub(super) fn log_key(&self, name: &str) -> ObjectPath {
        self.location.key(&format!("{}/{LOG_DIR}/{name}", self.dir))
    }

    /// The key of `path` (relative to the table root).
    pub(super) fn data_key(&self, path: &str) -> ObjectPath {
        self.location.key(&format!("{}/{path}", self.dir))
    }

    pub(super) fn store(&self) -> &Arc<dyn ObjectStore> {
        &self.store
    }

    /// The store and location of the table (to write files beside the log).
    pub fn location(&self) -> &Location {
        &self.location
    }

    async fn get_opt(&self, key: &ObjectPath) -> Result<Option<bytes::Bytes>, DeltaError> {
        match self.store.get(key).await {
            Ok(r) => r
                .bytes()
                .await
                .map(Some)
                .map_err(|source| DeltaError::Store {
                    key: key.to_string(),
                    source,
                }),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(source) => Err(DeltaError::Store {
                key: key.to_string(),
                source,
            }),
        }
    }

    pub(super) async fn read_commit(
        &self,
        version: u64,
    ) -> Result<Option<Vec<Action>>, DeltaError> {
        let key = self.log_key(&commit_file_name(version));
        let Some(bytes) = self.get_opt(&key).await? else {
            return Ok(None);
        };
        decode_commit(key.as_ref(), &bytes)
            .map(Some)
            .map_err(|message| DeltaError::Corrupt {
                key: key.to_string(),
                message,
            })
    }

    /// The commit versions in the log after `after` (all with `None`), ascending.
    pub async fn commit_versions_after(&self, after: Option<u64>) -> Result<Vec<u64>, DeltaError> {
        let prefix = self.log_key("");
        let listed: Vec<object_store::ObjectMeta> = match after {
            Some(v) => {
                let offset = self.log_key(&commit_file_name(v));
                self.store
                    .list_with_offset(Some(&prefix), &offset)
                    .try_collect()
                    .await
            }
            None => self.store.list(Some(&prefix)).try_collect().await,
        }
        .map_err(|source| DeltaError::Store {
            key: prefix.to_string(),
            source,
        })?;
        let mut versions: Vec<u64> = listed
            .iter()
            .filter_map(|m| m.location.filename().and_then(parse_commit_file_name))
            .filter(|v| after.is_none_or(|a| *v > a))
            .collect();
        versions.sort_unstable();
        Ok(versions)
    }

    fn apply(state: &mut State, version: u64, actions: &[Action]) {
        for a in actions {
            match a {
                Action::Protocol(p) => state.protocol = Some(p.clone()),
                Action::Metadata(m) => state.metadata = Some(m.clone()),
                Action::Add(add) => {
                    let file = LoggedFile {
                        size: add.size,
                        modification_time: add.modification_time,
                        version,
                    };
                    state.insert(decode_path(&add.path), file, add.clone());
                }
                Action::Remove(r) => {
                    state.remove(&decode_path(&r.path));
                    state.removed_files_pending = true;
                }
                _ => {}
            }
        }
        state.version = Some(state.version.map_or(version, |v| v.max(version)));
    }

    /// Brings the in-memory state up to the latest version: the first time from the last
    /// checkpoint on, later from the version already read.
    async fn refresh(&self, state: &mut State) -> Result<(), DeltaError> {
        if state.version.is_none()
            && let Some(bytes) = self.get_opt(&self.log_key(LAST_CHECKPOINT)).await?
        {
            let key = self.log_key(LAST_CHECKPOINT).to_string();
            let last: LastCheckpoint =
                serde_json::from_slice(&bytes).map_err(|e| DeltaError::Corrupt {
                    key: key.clone(),
                    message: e.to_string(),
                })?;
            let cp_key = self.log_key(&checkpoint_file_name(last.version));
            let Some(cp) = self.get_opt(&cp_key).await? else {
                return Err(DeltaError::Corrupt {
                    key,
                    message: format!("names checkpoint {cp_key}, which does not exist"),
                });
            };
            let cp = checkpoint::decode(cp).map_err(|message| DeltaError::Corrupt {
                key: cp_key.to_string(),
                message,
            })?;
            state.protocol = Some(cp.protocol);
            state.metadata = Some(cp.metadata);
            for add in cp.adds {
                let file = LoggedFile {
                    size: add.size,
                    modification_time: add.modification_time,
                    version: 0,
                };
                state.insert(decode_path(&add.path), file, add);
            }
            state.version = Some(last.version);
            state.last_checkpoint = Some(last.version);
        }
        if let Some(mut version) = state.version {
            // Already read up to `version`: probe the next ones (one GET when nothing is new,
            // rather than listing a log of thousands of files at every commit).
            while let Some(actions) = self.read_commit(version + 1).await? {
                version += 1;
                Self::apply(state, version, &actions);
            }
            return Ok(());
        }
        let versions = self.commit_versions_after(None).await?;
        let mut expected = 0;
        for version in versions {
            if version != expected {
                return Err(DeltaError::Corrupt {
                    key: self.log_key(&commit_file_name(expected)).to_string(),
                    message: format!("missing: the log jumps to version {version}"),
                });
            }
            let actions = self
                .read_commit(version)
                .await?
                .ok_or_else(|| DeltaError::Corrupt {
                    key: self.log_key(&commit_file_name(version)).to_string(),
                    message: "listed but unreadable".into(),
                })?;
            Self::apply(state, version, &actions);
            expected = version + 1;
        }
        Ok(())
    }

    /// Checks that the log is safe to append to (run before a writer's first commit): every
    /// version after the last checkpoint is there, the checkpoint reads, and every file the
    /// latest version adds is in storage. A damaged log is [`DeltaError::Damaged`], naming the
    /// version and partition; nothing is written.
    pub async fn check_damage(&self) -> Result<(), DeltaError> {
        let mut state = self.state.lock().await;
        if let Err(e) = self.refresh(&mut state).await {
            return Err(match e {
                DeltaError::Corrupt { key, message } => DeltaError::damaged(key, message),
                other => other,
            });
        }
        let Some(latest) = state.version else {
            return Ok(());
        };
        let listed = self.commit_versions_after(state.last_checkpoint).await?;
        let from = state.last_checkpoint.map_or(0, |c| c + 1);
        if let Some(damage) = missing_version(&listed, from, latest) {
            return Err(DeltaError::damaged(self.log_key("").to_string(), damage));
        }
        let existing = self.data_files().await?;
        for (path, (file, _)) in &state.files {
            if existing.contains(path) {
                continue;
            }
            let by = match (file.version, state.last_checkpoint) {
                (0, Some(c)) => format!("the checkpoint of version {c}"),
                (v, _) => format!("version {v}"),
            };
            let range = range_of_path(path);
            let partition = range.map_or("no partition".into(), |r| format!("partition {r}"));
            let mut err = DeltaError::damaged(
                self.data_key(path).to_string(),
                format!(
                    "{by} adds {path} ({partition}), which is not in storage: readers of the table fail on it"
                ),
            );
            // The partition's own committed file is gone: no log can fix that.
            let manifest = match range {
                Some(r) => super::repair::read_manifest(&self.location, &self.layout, r).await?,
                None => None,
            };
            if let (DeltaError::Damaged { repair, .. }, Some(m)) = (&mut err, manifest)
                && committed_path(&m) == *path
            {
                *repair = String::from(
                    "the partition's committed file itself is missing: restore it from a copy of the dataset (its manifest's checksum names the bytes), then run again; `bronze-copier verify` lists every such partition (docs/runbook.md#repair-a-damaged-delta-log)",
                );
            }
            return Err(err);
        }
        Ok(())
    }

    /// The data files in the table folder (partitions and provisional tip files; not the log),
    /// relative to the table root.
    pub(super) async fn data_files(
        &self,
    ) -> Result<std::collections::BTreeSet<String>, DeltaError> {
        let prefix = self.data_key("");
        let listed: Vec<object_store::ObjectMeta> = self
            .store
            .list(Some(&prefix))
            .try_collect()
            .await
            .map_err(|source| DeltaError::Store {
                key: prefix.to_string(),
                source,
            })?;
        Ok(listed
            .iter()
            .filter_map(|m| {
                let rel = m.location.as_ref().strip_prefix(prefix.as_ref())?;
                let rel = rel.trim_start_matches('/');
                // Partition files and the provisional tip's (`_tip/`): every file an add may
                // name; the log's own folder (and a damaged log moved aside) is not data.
                (!rel.starts_with("_delta_log")).then(|| rel.to_string())
            })
            .collect())
    }

    /// The partitions the log adds, in ledger order, with the logged file sizes (read from the
    /// last checkpoint on). Files that are not Bronze partitions are left out.
    pub async fn recorded(&self) -> Result<Vec<(LedgerRange, LoggedFile)>, DeltaError> {
        let mut state = self.state.lock().await;
        self.refresh(&mut state).await?;
        let mut out: Vec<(LedgerRange, LoggedFile)> = state
            .files
            .iter()
            .filter_map(|(p, (f, _))| range_of_path(p).map(|r| (r, f.clone())))
            .collect();
        out.sort_by_key(|(r, _)| (r.start, r.end));
        Ok(out)
    }

    /// The latest version (`None`: no table yet).
    pub async fn version(&self) -> Result<Option<u64>, DeltaError> {
        let mut state = self.state.lock().await;
        self.refresh(&mut state).await?;
        Ok(state.version)
    }

    /// Conditionally creates commit `version`; `false` when another writer created it first.
    async fn try_commit(&self, version: u64, actions: &[Action]) -> Result<bool, DeltaError> {
        let key = self.log_key(&commit_file_name(version));
        let opts = PutOptions {
            mode: PutMode::Create,
            ..Default::default()
        };
        match self
            .store
            .put_opts(&key, PutPayload::from(encode_commit(actions)), opts)
            .await
        {
            Ok(_) => Ok(true),
            Err(object_store::Error::AlreadyExists { .. }) => Ok(false),
            Err(source) => Err(DeltaError::Store {
                key: key.to_string(),
                source,
            }),
        }
    }

    /// The integer types of the table's files (`None`: no table yet). A table without
    /// [`INTEGER_TYPES_KEY`] was created by an earlier version: unsigned.
    pub async fn integer_types(&self) -> Result<Option<IntegerTypes>, DeltaError> {
        let mut state = self.state.lock().await;
        self.refresh(&mut state).await?;
        self.types_of(&state)
    }

    fn types_of(&self, state: &State) -> Result<Option<IntegerTypes>, DeltaError> {
        let Some(metadata) = &state.metadata else {
            return Ok(None);
        };
        integer_types_of(metadata)
            .map(Some)
            .ok_or_else(|| DeltaError::Corrupt {
                key: self.uri(),
                message: format!(
                    "metaData.configuration {INTEGER_TYPES_KEY} is {}, neither signed nor unsigned",
                    metadata.configuration[INTEGER_TYPES_KEY]
                ),
            })
    }

    /// Version 0 (protocol, metadata for files of `integers` types), unless the table exists.
    async fn ensure_created(
        &self,
        state: &mut State,
        integers: IntegerTypes,
    ) -> Result<(), DeltaError> {
        self.refresh(state).await?;
        if state.version.is_none() {
            let actions = initial_actions(&self.dir, now_ms(), integers);
            if self.try_commit(0, &actions).await? {
                tracing::info!(table = %self.uri(), "delta: table created (version 0)");
            }
            self.refresh(state).await?;
        }
        Ok(())
    }

    /// Adds the partition of `manifest` in the next version, unless the log already adds its file
    /// with the same size (idempotent: a retried or repaired partition is never added twice).
    /// `replace`: the partition was replaced (`era.allow_overwrite`), so a logged add with another
    /// size is superseded by a new add of the same path rather than refused.
    pub async fn append(&self, manifest: &Manifest, replace: bool) -> Result<Appended, DeltaError> {
        let prepared = self.prepare(manifest).await?;
        self.commit_prepared(prepared, replace).await
    }

    /// The add of `manifest`'s partition, with its statistics (reads the Parquet footer; no
    /// change to the log). Preparing many at once and committing them in order is how a
    /// backfill of the log overlaps the reads.
    pub async fn prepare(&self, manifest: &Manifest) -> Result<PreparedAdd, DeltaError> {
        let range = manifest.range();
        let table = manifest.primary().ok_or_else(|| DeltaError::Corrupt {
            key: self.layout.manifest_key(range),
            message: "the manifest has no ledgers_lcm_raw table".into(),
        })?;
        let parquet_key = self.location.key(&self.layout.committed_file_key(manifest));
        let footer = stats::read_footer(self.store.as_ref(), &parquet_key, table.byte_size).await;
        let footer = match footer {
            Ok(f) => Some(f),
            Err(e) => {
                // The add is still correct without min/max; readers just cannot prune this file.
                tracing::warn!(partition = %range, error = %e, "delta: no column statistics for this file");
                None
            }
        };
        Ok(PreparedAdd {
            range,
            integers: footer.as_ref().and_then(stats::integer_types_of_footer),
            add: Add {
                path: encode_path(&committed_path(manifest)),
                partition_values: Default::default(),
                size: table.byte_size as i64,
                modification_time: crate::time::rfc3339_to_millis(&manifest.created_at)
                    .unwrap_or_else(now_ms),
                data_change: true,
                stats: Some(stats::stats_json(table.row_count, footer.as_ref())),
            },
        })
    }

    /// Commits a [`DeltaTable::prepare`]d add as the next version (see [`DeltaTable::append`]).
    pub async fn commit_prepared(
        &self,
        prepared: PreparedAdd,
        replace: bool,
    ) -> Result<Appended, DeltaError> {
        let (appended, _) = self
            .commit_partition(prepared, replace, |_| Vec::new())
            .await?;
        Ok(appended)
    }

    /// As [`DeltaTable::commit_prepared`], and in the same version removes the files
    /// `also_remove` picks from the table's current files (decoded paths): how the provisional
    /// tip's files of a partition leave the table in the commit that seals it (docs/tip.md).
    /// When the partition's add is already logged, those removes are committed alone (a crash
    /// between two writers). Returns what was done and how many files were removed.
    pub async fn commit_partition<F>(
        &self,
        prepared: PreparedAdd,
        replace: bool,
        also_remove: F,
    ) -> Result<(Appended, usize), DeltaError>
    where
        F: Fn(&BTreeMap<String, (LoggedFile, Add)>) -> Vec<String>,
    {
        let PreparedAdd {
            range,
            add,
            integers,
        } = prepared;
        let path = decode_path(&add.path);
        let mut state = self.state.lock().await;
        // A new table takes the types of its first file (a dataset of earlier versions turned
        // into a table stays unsigned); without a readable footer, this version's: signed.
        self.ensure_created(&mut state, integers.unwrap_or(IntegerTypes::Signed))
            .await?;
        self.check_types(&state, &path, integers)?;
        loop {
            let removes: Vec<Action> = also_remove(&state.files)
                .iter()
                .filter_map(|p| state.files.get(p))
                .map(|(_, logged)| Action::Remove(Remove::of(logged, add.modification_time)))
                .collect();
            let removed = removes.len();
            let mut actions = match self.actions_for(&state, range, &path, &add, replace)? {
                Ok(actions) => actions,
                Err(version) if removes.is_empty() => {
                    return Ok((Appended::AlreadyThere { version }, 0));
                }
                Err(_) => vec![super::actions::commit_info(
                    now_ms(),
                    "DELETE",
                    json!({"partition": range.to_string(), "removed": removed.to_string()}),
                )],
            };
            if !removes.is_empty() {
                let info = actions.len() - 1; // the commit info closes the actions
                if let Action::CommitInfo(c) = &mut actions[info] {
                    c["isBlindAppend"] = json!(false);
                }
                actions.splice(0..0, removes);
            }
            if let Some(version) = self.commit_next(&mut state, &actions).await? {
                tracing::info!(partition = %range, version, removed, "delta: partition committed to the log");
                return Ok((Appended::Added { version }, removed));
            }
            // Another writer took this version: read what it committed, then decide again.
            self.refresh(&mut state).await?;
        }
    }

    /// What adding `add` (partition `range`, file `path`) commits: the add (and the commit
    /// info), or, when the log adds another file for the partition and this is its replacement,
    /// the remove of that file and the add, in one version (readers of the new version see the
    /// new file with its own size and statistics; readers of older versions keep reading the old
    /// file, left in storage). `Err(version)`: the log already adds this file, at `version`.
    fn actions_for(
        &self,
        state: &State,
        range: LedgerRange,
        path: &str,
        add: &Add,
        replace: bool,
    ) -> Result<Result<Vec<Action>, u64>, DeltaError> {
        let conflict = |logged: &LoggedFile, path: &str| DeltaError::Conflict {
            key: self.uri(),
            version: logged.version,
            path: path.to_string(),
            logged: logged.size,
            size: add.size as u64,
        };
        let info = |replaced: Option<&str>| {
            let mut parameters = json!({"mode": "Append", "partition": range.to_string()});
            if let Some(old) = replaced {
                parameters["replaced"] = json!(old);
            }
            super::actions::commit_info(now_ms(), "WRITE", parameters)
        };
        let logged = state.of_range(range);
        if let Some((logged_path, logged, old)) = logged.filter(|(p, _, _)| *p != path) {
            // A replacement under a new name: the manifest (the commit) names the new file. The
            // log may learn of it without `replace` after a crash between the manifest and the
            // log; the newer manifest is the partition's, as it is for every reader of storage.
            if !replace && add.modification_time <= logged.modification_time {
                return Err(conflict(logged, logged_path));
            }
            let mut info = info(Some(logged_path));
            if let Action::CommitInfo(c) = &mut info {
                c["isBlindAppend"] = json!(false);
            }
            let remove = Action::Remove(Remove::of(old, add.modification_time));
            return Ok(Ok(vec![remove, Action::Add(add.clone()), info]));
        }
        if let Some((_, logged, _)) = logged {
            // The same partition (same manifest) is logged: done. A replacement's manifest
            // is newer, so it is added again even when its file has the same size.
            if logged.size == add.size
                && (logged.modification_time == add.modification_time || !replace)
            {
                return Ok(Err(logged.version));
            }
            if !replace {
                return Err(conflict(logged, path));
            }
        }
        Ok(Ok(vec![Action::Add(add.clone()), info(None)]))
    }

    /// Conditionally commits `actions` as the next version and applies them to the state
    /// (writing the checkpoint when one is due); `None` when another writer took that version
    /// first (refresh, then decide again).
    async fn commit_next(
        &self,
        state: &mut State,
        actions: &[Action],
    ) -> Result<Option<u64>, DeltaError> {
        let version = state.version.map_or(0, |v| v + 1);
        if !self.try_commit(version, actions).await? {
            return Ok(None);
        }
        Self::apply(state, version, actions);
        if version.is_multiple_of(CHECKPOINT_INTERVAL) {
            self.write_checkpoint(state).await?;
            // After each checkpoint (Delta's writers do the same): never fails the commit.
            if let Err(e) = self.clean_up_state(state, now_ms(), false).await {
                tracing::warn!(table = %self.uri(), error = %e, "delta: log cleanup failed; it is retried after the next checkpoint");
            }
        }
        Ok(Some(version))
    }

    /// Deletes what has expired at `now_ms` (docs/formats.md#log-cleanup): log files per
    /// `delta.logRetentionDuration`, removed data files per
    /// `delta.deletedFileRetentionDuration`. Runs after every checkpoint; callable on its own
    /// (a clock of the caller's).
    pub async fn clean_up(&self, now_ms: i64) -> Result<Cleaned, DeltaError> {
        let mut state = self.state.lock().await;
        self.refresh(&mut state).await?;
        self.clean_up_state(&mut state, now_ms, true).await
    }

    /// The cleanup; the table folder is listed for removed files when `all`, the first time in
    /// this process, or after a remove (see [`State::removed_files_pending`]).
    async fn clean_up_state(
        &self,
        state: &mut State,
        now_ms: i64,
        all: bool,
    ) -> Result<Cleaned, DeltaError> {
        let first = !self
            .data_scanned
            .swap(true, std::sync::atomic::Ordering::Relaxed);
        let data = all || first || state.removed_files_pending;
        let Some(metadata) = &state.metadata else {
            return Ok(Cleaned::default());
        };
        let paths: std::collections::BTreeSet<String> = state.files.keys().cloned().collect();
        let live = cleanup::Live {
            paths: &paths,
            metadata,
            last_checkpoint: state.last_checkpoint,
            data,
        };
        let cleaned = cleanup::clean_up(self, live, now_ms).await?;
        if data {
            state.removed_files_pending = cleaned.data_files_kept > 0;
        }
        Ok(cleaned)
    }

    /// A file of other integer types than the table's is never added (the files would disagree).
    fn check_types(
        &self,
        state: &State,
        path: &str,
        integers: Option<IntegerTypes>,
    ) -> Result<(), DeltaError> {
        match (integers, self.types_of(state)?) {
            (Some(file), Some(table)) if file != table => Err(DeltaError::Types {
                key: self.uri(),
                path: path.to_string(),
                file,
                table,
            }),
            _ => Ok(()),
        }
    }

    /// Commits many [`DeltaTable::prepare`]d adds (in ledger order, none a replacement) as one
    /// version: how a backfill or repair of the log from the manifests commits thousands of
    /// partitions in seconds. Partitions the log already adds with the same file and size are
    /// skipped (a batch that finds all of them logged commits nothing); one logged with another
    /// file or size is a conflict, as in [`DeltaTable::append`]. Returns how many were added.
    pub async fn commit_batch(&self, batch: &[PreparedAdd]) -> Result<usize, DeltaError> {
        let Some(first) = batch.first() else {
            return Ok(0);
        };
        let mut state = self.state.lock().await;
        self.ensure_created(&mut state, first.integers.unwrap_or(IntegerTypes::Signed))
            .await?;
        loop {
            let mut adds = Vec::new();
            for prepared in batch {
                let path = decode_path(&prepared.add.path);
                self.check_types(&state, &path, prepared.integers)?;
                match state.of_range(prepared.range) {
                    Some((p, logged, _)) if *p == path && logged.size == prepared.add.size => {}
                    Some((p, logged, _)) => {
                        return Err(DeltaError::Conflict {
                            key: self.uri(),
                            version: logged.version,
                            path: p.clone(),
                            logged: logged.size,
                            size: prepared.add.size as u64,
                        });
                    }
                    None => adds.push(prepared),
                }
            }
            let (Some(lo), Some(hi)) = (adds.first(), adds.last()) else {
                return Ok(0);
            };
            let mut actions: Vec<Action> =
                adds.iter().map(|p| Action::Add(p.add.clone())).collect();
            actions.push(super::actions::commit_info(
                now_ms(),
                "WRITE",
                json!({
                    "mode": "Append",
                    "partitions": format!("{}..{}", lo.range, hi.range),
                    "count": adds.len().to_string(),
                }),
            ));
            if let Some(version) = self.commit_next(&mut state, &actions).await? {
                tracing::info!(
                    first = %lo.range,
                    last = %hi.range,
                    partitions = adds.len(),
                    version,
                    "delta: partitions added to the log in one commit"
                );
                return Ok(adds.len());
            }
            // Another writer took this version: read what it committed, then decide again.
            self.refresh(&mut state).await?;
        }
    }

    /// Commits, as the next version, the [`Changes`] that `plan` makes of the table's current
    /// files (by decoded path): removes and adds in one commit, so a reader of any version sees
    /// the files before or after, never a mix. When another writer takes the version first, the
    /// state is read again and `plan` asked again (its decision always rests on the latest
    /// version: the precondition of every commit here). `plan` returning `None` commits nothing.
    /// A new table is created first, for files of `integers` types. Returns the version.
    pub async fn commit_changes<F>(
        &self,
        integers: IntegerTypes,
        mut plan: F,
    ) -> Result<Option<u64>, DeltaError>
    where
        F: FnMut(&BTreeMap<String, (LoggedFile, Add)>) -> Result<Option<Changes>, DeltaError>,
    {
        let mut state = self.state.lock().await;
        self.ensure_created(&mut state, integers).await?;
        loop {
            let Some(changes) = plan(&state.files)? else {
                return Ok(None);
            };
            let now = now_ms();
            let mut actions: Vec<Action> = changes
                .removes
                .iter()
                .map(|path| match state.files.get(path) {
                    Some((_, add)) => Action::Remove(Remove::of(add, now)),
                    None => Action::Remove(Remove {
                        path: encode_path(path),
                        deletion_timestamp: Some(now),
                        data_change: true,
                        extended_file_metadata: None,
                        partition_values: None,
                        size: None,
                    }),
                })
                .collect();
            actions.extend(changes.adds.iter().cloned().map(Action::Add));
            let mut info =
                super::actions::commit_info(now, changes.operation, changes.parameters.clone());
            if let Action::CommitInfo(value) = &mut info {
                // A commit that removes files read from the table is no blind append.
                value["isBlindAppend"] = json!(changes.removes.is_empty());
            }
            actions.push(info);
            if let Some(version) = self.commit_next(&mut state, &actions).await? {
                tracing::debug!(
                    version,
                    removes = changes.removes.len(),
                    adds = changes.adds.len(),
                    operation = changes.operation,
                    "delta: files removed and added in one commit"
                );
                return Ok(Some(version));
            }
            // Another writer took this version: read what it committed, then plan again.
            self.refresh(&mut state).await?;
        }
    }

    /// The table's current files by decoded path (for `verify` and the tip's start).
    pub async fn files(&self) -> Result<BTreeMap<String, (LoggedFile, Add)>, DeltaError> {
        let mut state = self.state.lock().await;
        self.refresh(&mut state).await?;
        Ok(state.files.clone())
    }

    /// The table root's key of a path relative to it.
    pub fn key_of(&self, relative: &str) -> ObjectPath {
        self.location.key(&format!("{}/{relative}", self.dir))
    }

    /// Writes the checkpoint of the current version and points `_last_checkpoint` at it.
    async fn write_checkpoint(&self, state: &mut State) -> Result<(), DeltaError> {
        let Some(version) = state.version else {
            return Ok(());
        };
        let key = self.log_key(&checkpoint_file_name(version));
        let (Some(protocol), Some(metadata)) = (state.protocol.clone(), state.metadata.clone())
        else {
            return Err(DeltaError::Corrupt {
                key: key.to_string(),
                message: "no protocol or metaData in the log".into(),
            });
        };
        let adds: Vec<Add> = state
            .files
            .values()
            .map(|(_, a)| Add {
                data_change: false,
                ..a.clone()
            })
            .collect();
        let n = adds.len() as u64;
        let bytes = checkpoint::encode(&CheckpointState {
            protocol,
            metadata,
            adds,
        })
        .map_err(|message| DeltaError::Corrupt {
            key: key.to_string(),
            message,
        })?;
        let put = |key: ObjectPath, bytes: Vec<u8>| async move {
            self.store
                .put(&key, PutPayload::from(bytes))
                .await
                .map(|_| ())
                .map_err(|source| DeltaError::Store {
                    key: key.to_string(),
                    source,
                })
        };
        // A checkpoint is the same state whoever writes it, so overwriting one is harmless.
        put(key, bytes).await?;
        let last = LastCheckpoint {
            version,
            size: n + 2,
            num_of_add_files: Some(n),
        };
        put(
            self.log_key(LAST_CHECKPOINT),
            serde_json::to_vec(&last).expect("serialisable"),
        )
        .await?;
        state.last_checkpoint = Some(version);
        tracing::info!(version, files = n, "delta: log checkpoint written");
        Ok(())
    }

    /// Writes the checkpoint a crash skipped (the last multiple of the interval has none), at the
    /// latest version: a checkpoint may be at any version.
    pub async fn ensure_checkpoint(&self) -> Result<(), DeltaError> {
        let mut state = self.state.lock().await;
        self.refresh(&mut state).await?;
        let Some(version) = state.version else {
            return Ok(());
        };
        let due = version - version % CHECKPOINT_INTERVAL;
        if due > 0 && state.last_checkpoint.is_none_or(|c| c < due) {
            self.write_checkpoint(&mut state).await?;
        }
        Ok(())
    }

    /// Every commit of the log with its actions, ascending (for `verify`).
    pub async fn read_all_commits(&self) -> Result<Vec<(u64, Vec<Action>)>, DeltaError> {
        let mut out = Vec::new();
        for version in self.commit_versions_after(None).await? {
            if let Some(actions) = self.read_commit(version).await? {
                out.push((version, actions));
            }
        }
        Ok(out)
    }

    /// The checkpoint `_last_checkpoint` names, with its version (`None` without one).
    pub async fn read_last_checkpoint(&self) -> Result<Option<(u64, CheckpointState)>, DeltaError> {
        let key = self.log_key(LAST_CHECKPOINT);
        let Some(bytes) = self.get_opt(&key).await? else {
            return Ok(None);
        };
        let last: LastCheckpoint =
            serde_json::from_slice(&bytes).map_err(|e| DeltaError::Corrupt {
                key: key.to_string(),
                message: e.to_string(),
            })?;
        let cp_key = self.log_key(&checkpoint_file_name(last.version));
        let Some(cp) = self.get_opt(&cp_key).await? else {
            return Err(DeltaError::Corrupt {
                key: key.to_string(),
                message: format!("names checkpoint {cp_key}, which does not exist"),
            });
        };
        checkpoint::decode(cp)
            .map(|state| Some((last.version, state)))
            .map_err(|message| DeltaError::Corrupt {
                key: cp_key.to_string(),
                message,
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::publish::DatasetLayout;

    fn layout() -> DatasetLayout {
        DatasetLayout {
            prefix: "bronze/".into(),
            network: "testnet".into(),
            era_id: "e".into(),
            version_label: "v1".into(),
        }
    }

    /// A committed-looking partition: a (non-Parquet) file and its manifest.
    fn partition(dir: &std::path::Path, i: u32) -> Manifest {
        let range = LedgerRange::new(2 + 10 * i, 11 + 10 * i);
        let folder = dir.join(layout().partition_dir(range));
        std::fs::create_dir_all(&folder).unwrap();
        std::fs::write(folder.join(DatasetLayout::parquet_file_name(range)), b"x").unwrap();
        Manifest::from_json(
            json!({
                "partition": {"start": range.start, "end": range.end, "era_id": "e", "version": "v1", "network": "testnet"},
                "tables": {"ledgers_lcm_raw": {
                    "file": DatasetLayout::parquet_file_name(range),
                    "checksum": "sha256:00", "row_count": 10, "byte_size": 1
                }},
                "producer": {"name": "bronze-copier", "version": "0.1.0", "git_sha": "x"},
                "created_at": "2026-11-25T18:54:21.246229699Z"
            })
            .to_string()
            .as_bytes(),
        )
        .unwrap()
    }

    fn table(dir: &std::path::Path) -> DeltaTable {
        let location =
            crate::store::local("storage.local_dir", dir.to_str().unwrap(), true).unwrap();
        DeltaTable::new(&location, &layout())
    }

    /// Two writers appending the same partitions at once: every version is committed by one of
    /// them, each partition is added exactly once, in ledger order, and the versions are
    /// contiguous.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn two_writers_never_commit_one_version_or_one_partition_twice() {
        let dir = tempfile::tempdir().unwrap();
        let manifests: Vec<Manifest> = (0..25).map(|i| partition(dir.path(), i)).collect();
        let writer = |t: DeltaTable, ms: Vec<Manifest>| {
            tokio::spawn(async move {
                for m in &ms {
                    t.append(m, false).await.unwrap();
                }
            })
        };
        let a = writer(table(dir.path()), manifests.clone());
        let b = writer(table(dir.path()), manifests.clone());
        a.await.unwrap();
        b.await.unwrap();

        let reader = table(dir.path());
        let commits = reader.read_all_commits().await.unwrap();
        assert_eq!(
            commits.iter().map(|(v, _)| *v).collect::<Vec<_>>(),
            (0..=25).collect::<Vec<u64>>()
        );
        let added: Vec<String> = commits
            .iter()
            .flat_map(|(_, actions)| actions.iter())
            .filter_map(|a| match a {
                Action::Add(add) => Some(add.path.clone()),
                _ => None,
            })
            .collect();
        let expected: Vec<String> = manifests.iter().map(|m| relative_path(m.range())).collect();
        assert_eq!(added, expected);
        let recorded = reader.recorded().await.unwrap();
        assert_eq!(recorded.len(), 25);
    }

    /// Partition `i` replaced in a Delta table: a file of its own name (`part-S-E.<tag>.parquet`)
    /// of `bytes`, and a newer manifest committing it.
    fn replacement(dir: &std::path::Path, i: u32, bytes: &[u8], created_at: &str) -> Manifest {
        let mut manifest = partition(dir, i);
        let range = manifest.range();
        let checksum = format!("sha256:{}", "ab".repeat(32));
        let name = DatasetLayout::replacement_file_name(range, &checksum);
        let folder = dir.join(layout().partition_dir(range));
        std::fs::write(folder.join(&name), bytes).unwrap();
        let t = manifest.tables.values_mut().next().unwrap();
        t.file = name;
        t.checksum = checksum;
        t.byte_size = bytes.len() as u64;
        manifest.created_at = created_at.into();
        std::fs::write(
            folder.join(crate::publish::MANIFEST_FILE),
            manifest.to_json(),
        )
        .unwrap();
        manifest
    }

    /// A replacement under a new name is one version: the remove of the old file (with its
    /// deletion time, dataChange) and the add of the new one with its own size; the partition
    /// is then in the table once, and committing it again adds nothing.
    #[tokio::test]
    async fn a_replacement_removes_the_old_file_and_adds_the_new_one_in_one_version() {
        let dir = tempfile::tempdir().unwrap();
        let t = table(dir.path());
        for i in 0..3 {
            t.append(&partition(dir.path(), i), false).await.unwrap();
        }
        let new = replacement(dir.path(), 1, b"rebuilt", "2026-12-01T00:00:00Z");
        assert_eq!(
            t.append(&new, true).await.unwrap(),
            Appended::Added { version: 4 }
        );
        let commits = t.read_all_commits().await.unwrap();
        let (version, actions) = commits.last().unwrap();
        assert_eq!(*version, 4);
        let Action::Remove(remove) = &actions[0] else {
            panic!("{actions:?}")
        };
        assert_eq!(remove.path, "range=12-21/part-12-21.parquet");
        assert!(remove.data_change);
        assert_eq!(
            remove.deletion_timestamp,
            crate::time::rfc3339_to_millis("2026-12-01T00:00:00Z")
        );
        assert_eq!(remove.size, Some(1));
        let Action::Add(add) = &actions[1] else {
            panic!("{actions:?}")
        };
        assert_eq!(add.path, committed_path(&new));
        assert_eq!(add.size, 7);
        assert!(matches!(actions[2], Action::CommitInfo(_)));
        assert_eq!(actions.len(), 3);
        let recorded = t.recorded().await.unwrap();
        assert_eq!(recorded.len(), 3);
        assert_eq!(recorded[1].0, new.range());
        assert_eq!(recorded[1].1.size, 7);
        // Idempotent, and a fresh reader (replaying the log) sees the same.
        assert_eq!(
            t.append(&new, true).await.unwrap(),
            Appended::AlreadyThere { version: 4 }
        );
        assert_eq!(table(dir.path()).recorded().await.unwrap(), recorded);
    }

    /// A crash between the new manifest and its commit: the next run meets the partition as
    /// committed (not as a replacement) and the log still adds the old file. The newer manifest
    /// is the partition's, so the log takes the replacement; an older one is a conflict.
    #[tokio::test]
    async fn a_replacement_the_log_missed_is_committed_and_an_older_manifest_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let t = table(dir.path());
        for i in 0..2 {
            t.append(&partition(dir.path(), i), false).await.unwrap();
        }
        let older = replacement(dir.path(), 0, b"older", "2020-01-01T00:00:00Z");
        let err = t.append(&older, false).await.unwrap_err();
        assert!(
            matches!(&err, DeltaError::Conflict { path, .. } if path == "range=2-11/part-2-11.parquet"),
            "{err}"
        );
        assert_eq!(t.version().await.unwrap(), Some(2));
        let newer = replacement(dir.path(), 0, b"newer", "2026-12-01T00:00:00Z");
        assert_eq!(
            t.append(&newer, false).await.unwrap(),
            Appended::Added { version: 3 }
        );
        let recorded = t.recorded().await.unwrap();
        assert_eq!(recorded.len(), 2);
        assert_eq!(recorded[0].1.size, 5);
    }

    /// The log cleanup with an injected clock: nothing has expired today; a week and a day on,
    /// the replaced file goes (its remove is older than `delta.deletedFileRetentionDuration`)
    /// and the log stays; a month and a day on, every commit and checkpoint before the last
    /// checkpoint goes, `_last_checkpoint` stays, and a fresh reader sees the same table.
    #[tokio::test]
    async fn the_cleanup_deletes_expired_log_files_and_removed_files_only() {
        let dir = tempfile::tempdir().unwrap();
        let t = table(dir.path());
        for i in 0..34 {
            t.append(&partition(dir.path(), i), false).await.unwrap();
        }
        let now = chrono::Utc::now();
        let created = now.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true);
        let new = replacement(dir.path(), 1, b"rebuilt", &created);
        assert_eq!(
            t.append(&new, true).await.unwrap(),
            Appended::Added { version: 35 }
        );
        let dataset = dir.path().join(layout().dataset_dir());
        let old_file = dataset.join(relative_path(new.range()));
        let new_file = dataset.join(committed_path(&new));
        let log = dataset.join(LOG_DIR);
        let recorded = t.recorded().await.unwrap();
        let now_ms = now.timestamp_millis();
        let day = 24 * 3600 * 1000;

        let cleaned = t.clean_up(now_ms).await.unwrap();
        assert_eq!(
            (
                cleaned.data_files,
                cleaned.data_files_kept,
                cleaned.log_files
            ),
            (0, 1, 0)
        );
        assert!(old_file.exists());
        let cleaned = t.clean_up(now_ms + 8 * day).await.unwrap();
        assert_eq!((cleaned.data_files, cleaned.log_files), (1, 0));
        assert!(!old_file.exists() && new_file.exists());
        assert!(log.join(commit_file_name(0)).exists());

        let cleaned = t.clean_up(now_ms + 31 * day).await.unwrap();
        // Commits 0..=29 and the checkpoints at 10 and 20; the last checkpoint is 30.
        assert_eq!((cleaned.data_files, cleaned.log_files), (0, 32));
        for v in 0..30 {
            assert!(!log.join(commit_file_name(v)).exists(), "{v}");
        }
        for v in 30..=35 {
            assert!(log.join(commit_file_name(v)).exists(), "{v}");
        }
        assert!(log.join(checkpoint_file_name(30)).exists());
        assert!(!log.join(checkpoint_file_name(20)).exists());
        let last: LastCheckpoint =
            serde_json::from_slice(&std::fs::read(log.join(LAST_CHECKPOINT)).unwrap()).unwrap();
        assert_eq!(last.version, 30);
        let fresh = table(dir.path());
        assert_eq!(fresh.version().await.unwrap(), Some(35));
        let mut again = fresh.recorded().await.unwrap();
        // Versions from a checkpoint are not kept (0): compare the files.
        for (_, f) in again.iter_mut() {
            f.version = 0;
        }
        let mut expected = recorded.clone();
        for (_, f) in expected.iter_mut() {
            f.version = 0;
        }
        assert_eq!(again, expected);
        // Appending goes on after the cleanup.
        assert_eq!(
            fresh
                .append(&partition(dir.path(), 34), false)
                .await
                .unwrap(),
            Appended::Added { version: 36 }
        );
        // Nothing more to clean: idempotent.
        assert_eq!(
            fresh.clean_up(now_ms + 31 * day).await.unwrap(),
            Cleaned::default()
        );
    }

    #[test]
    fn a_missing_version_is_named() {
        assert_eq!(missing_version(&[11, 12, 13], 11, 13), None);
        assert_eq!(missing_version(&[], 11, 10), None);
        assert_eq!(
            missing_version(&[11, 13], 11, 13).as_deref(),
            Some("commit version 12 is missing (the log has versions up to 13)")
        );
        // Read up to 11 (12 is missing), but the log goes on at 13.
        assert_eq!(
            missing_version(&[11, 13, 14], 11, 11).as_deref(),
            Some("commit version 12 is missing (the log goes on at version 13)")
        );
    }

    /// `commit_changes` commits its plan as the next version after other writers, with a full
    /// remove (size and partition values) of a logged file.
    #[tokio::test]
    async fn commit_changes_commits_one_version_after_the_latest() {
        let dir = tempfile::tempdir().unwrap();
        let t = table(dir.path());
        let m = partition(dir.path(), 0);
        t.append(&m, false).await.unwrap();
        let other = table(dir.path());
        other
            .append(&partition(dir.path(), 1), false)
            .await
            .unwrap();
        let add = t.prepare(&m).await.unwrap().add;
        let removed = decode_path(&add.path);
        let version = t
            .commit_changes(IntegerTypes::Signed, |_| {
                Ok(Some(Changes {
                    removes: vec![removed.clone()],
                    adds: vec![],
                    operation: "DELETE",
                    parameters: json!({}),
                }))
            })
            .await
            .unwrap();
        assert_eq!(version, Some(3));
        let recorded = table(dir.path()).recorded().await.unwrap();
        assert_eq!(
            recorded.iter().map(|(r, _)| *r).collect::<Vec<_>>(),
            vec![partition(dir.path(), 1).range()]
        );
        let commits = t.read_all_commits().await.unwrap();
        let remove = commits
            .iter()
            .flat_map(|(_, actions)| actions)
            .find_map(|a| match a {
                Action::Remove(r) => Some(r.clone()),
                _ => None,
            })
            .unwrap();
        assert_eq!(remove, Remove::of(&add, remove.deletion_timestamp.unwrap()));
    }

    /// The state is read from the last checkpoint on: with the commits before it gone, a new
    /// reader still sees every partition.
    #[tokio::test]
    async fn the_state_is_read_from_the_last_checkpoint() {
        let dir = tempfile::tempdir().unwrap();
        let t = table(dir.path());
        for i in 0..23 {
            t.append(&partition(dir.path(), i), false).await.unwrap();
        }
        let log = dir.path().join(layout().dataset_dir()).join(LOG_DIR);
        assert!(log.join(checkpoint_file_name(10)).exists());
        assert!(log.join(checkpoint_file_name(20)).exists());
        let last: LastCheckpoint =
            serde_json::from_slice(&std::fs::read(log.join(LAST_CHECKPOINT)).unwrap()).unwrap();
        assert_eq!(last.version, 20);
        for v in 0..=20 {
            std::fs::remove_file(log.join(commit_file_name(v))).unwrap();
        }
        let fresh = table(dir.path());
        assert_eq!(fresh.recorded().await.unwrap().len(), 23);
        assert_eq!(fresh.version().await.unwrap(), Some(23));
        // And appending goes on after it, idempotently.
        assert_eq!(
            fresh
                .append(&partition(dir.path(), 5), false)
                .await
                .unwrap(),
            Appended::AlreadyThere { version: 0 }
        );
        assert_eq!(
            fresh
                .append(&partition(dir.path(), 23), false)
                .await
                .unwrap(),
            Appended::Added { version: 24 }
        );
    }
}
