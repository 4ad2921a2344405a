//! The outbox: where events are made durable before anything else sees them. An event is
//! written once, with create-if-absent semantics, under a name derived from its chain and range,
//! so a retry, a restart or a second writer can never put two different events at one place.
//!
//! Two implementations behind [`Outbox`]:
//! * [`FileOutbox`]: the standalone copier's `pas.backup_dir`, in the original's layout
//!   (`<network>_<era>_<version>_<start>-<end>.json`, indented, plus `pas-chain-heads.json`);
//! * [`ObjectStoreOutbox`]: `<storage prefix>_pas/<network>/<era>/<version>/<start>-<end>.json`
//!   in the output bucket, written with `PutMode::Create`; for the Kubernetes operator, where a
//!   conditional create also fences a second operator.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use futures::TryStreamExt;
use futures::future::BoxFuture;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};
use serde::{Deserialize, Serialize};

use super::event::{ChainId, PasEvent};
use super::gojson::{GoValue, to_indented};
use crate::partition::LedgerRange;
use crate::store::Location;

pub const HEADS_FILE: &str = "pas-chain-heads.json";
pub const DELIVERY_FILE: &str = "pas-delivery.json";

#[derive(Debug, thiserror::Error)]
pub enum OutboxError {
    #[error("PAS outbox: cannot {op} {path}: {source}")]
    Io {
        op: &'static str,
        path: String,
        source: std::io::Error,
    },
    #[error("PAS outbox: cannot {op} {key}: {source}")]
    Store {
        op: &'static str,
        key: String,
        source: object_store::Error,
    },
    #[error("PAS outbox: {path} is unreadable: {message}")]
    Corrupt { path: String, message: String },
}

/// One stored event as found, parsed or not.
#[derive(Debug, Clone)]
pub struct OutboxEntry {
    /// File path or object key.
    pub location: String,
    /// The range its name says.
    pub name_range: LedgerRange,
    /// The revision its name says: 0 for a partition's first event, `n` for the `n`-th event
    /// recording a replacement of that partition (`<start>-<end>.r<n>.json`).
    pub revision: u32,
    pub bytes: Vec<u8>,
    pub parsed: Result<PasEvent, String>,
}

/// The outcome of a conditional create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Created {
    Written,
    /// Something was already stored at that place (it is returned, parsed).
    Existing(Box<PasEvent>),
}

/// The last event delivered over HTTP, per chain. `ledger_end == 0` means none yet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Delivered {
    pub event_hash: String,
    pub event_id: String,
    pub ledger_start: u32,
    pub ledger_end: u32,
}

/// Durable storage of one or more chains' events, their recorded head and delivery cursor.
pub trait Outbox: Send + Sync {
    /// Where it is, for logs and errors.
    fn describe(&self) -> String;
    /// Where the (first) event of `range` is (or would be) stored.
    fn location_of(&self, chain: &ChainId, range: LedgerRange) -> String {
        self.location_of_revision(chain, range, 0)
    }
    /// Where revision `revision` of the events of `range` is (or would be) stored.
    fn location_of_revision(&self, chain: &ChainId, range: LedgerRange, revision: u32) -> String;
    /// Every stored event of `chain`, in no particular order.
    fn load<'a>(
        &'a self,
        chain: &'a ChainId,
    ) -> BoxFuture<'a, Result<Vec<OutboxEntry>, OutboxError>>;
    /// Stores `event` durably as revision `revision` of its range, unless something is
    /// already stored there.
    fn create<'a>(
        &'a self,
        event: &'a PasEvent,
        revision: u32,
    ) -> BoxFuture<'a, Result<Created, OutboxError>>;
    /// The chain head as last recorded (a hint: the events themselves are the truth).
    fn recorded_head<'a>(
        &'a self,
        chain: &'a ChainId,
    ) -> BoxFuture<'a, Result<Option<String>, OutboxError>>;
    fn record_head<'a>(
        &'a self,
        chain: &'a ChainId,
        event_hash: &'a str,
    ) -> BoxFuture<'a, Result<(), OutboxError>>;
    /// As [`Self::record_head`], saying where the head event is stored (revision `revision` of
    /// `range`), so [`Self::head_event`] can read it alone.
    fn record_head_at<'a>(
        &'a self,
        chain: &'a ChainId,
        event_hash: &'a str,
        _at: (LedgerRange, u32),
    ) -> BoxFuture<'a, Result<(), OutboxError>> {
        self.record_head(chain, event_hash)
    }
    /// The recorded head and the stored event it names, read alone (two reads, whatever the
    /// chain's length); `None` when the recorded head does not say where its event is.
    fn head_event<'a>(
        &'a self,
        _chain: &'a ChainId,
    ) -> BoxFuture<'a, Result<Option<(String, OutboxEntry)>, OutboxError>> {
        Box::pin(async { Ok(None) })
    }
    fn delivered<'a>(
        &'a self,
        chain: &'a ChainId,
    ) -> BoxFuture<'a, Result<Option<Delivered>, OutboxError>>;
    fn record_delivered<'a>(
        &'a self,
        chain: &'a ChainId,
        delivered: &'a Delivered,
    ) -> BoxFuture<'a, Result<(), OutboxError>>;
}

/// `<network>_<era>_<version>_<start>-<end>.json`, the original's backup file name.
pub fn backup_file_name(chain: &ChainId, range: LedgerRange) -> String {
    backup_file_name_revision(chain, range, 0)
}

/// The backup file of revision `revision` of `range`: the original's name for 0,
/// `<network>_<era>_<version>_<start>-<end>.r<n>.json` for the `n`-th replacement.
pub fn backup_file_name_revision(chain: &ChainId, range: LedgerRange, revision: u32) -> String {
    format!("{}{}", file_prefix(chain), event_name(range, revision))
}

/// `<start>-<end>.json`, or `<start>-<end>.r<n>.json` for revision `n` > 0.
pub fn event_name(range: LedgerRange, revision: u32) -> String {
    match revision {
        0 => format!("{range}.json"),
        n => format!("{range}.r{n}.json"),
    }
}

/// The range and revision in `S-E.json` / `S-E.rN.json` (N ≥ 1, no leading zero).
fn parse_event_name(rest: &str) -> Option<(LedgerRange, u32)> {
    let stem = rest.strip_suffix(".json")?;
    let (range, revision) = match stem.split_once(".r") {
        None => (stem, 0),
        Some((range, n)) => {
            if n.is_empty() || n.starts_with('0') || !n.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            (range, n.parse().ok()?)
        }
    };
    Some((range.parse().ok()?, revision))
}

fn file_prefix(chain: &ChainId) -> String {
    format!(
        "{}_{}_{}_",
        chain.network, chain.era_id, chain.version_label
    )
}

fn entry(location: String, name: (LedgerRange, u32), bytes: Vec<u8>) -> OutboxEntry {
    let parsed = PasEvent::from_json(&bytes).map_err(|e| e.to_string());
    OutboxEntry {
        location,
        name_range: name.0,
        revision: name.1,
        bytes,
        parsed,
    }
}

/// Writes `bytes` to `path` atomically and durably ([`crate::atomic_file`]).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), OutboxError> {
    crate::atomic_file::replace(path, bytes).map_err(|e| OutboxError::Io {
        op: e.op,
        path: path.display().to_string(),
        source: e.source,
    })
}

/// The standalone outbox: `pas.backup_dir`.
#[derive(Debug, Clone)]
pub struct FileOutbox {
    dir: PathBuf,
}

impl FileOutbox {
    /// Creates the directory if needed.
    pub fn open(dir: impl Into<PathBuf>) -> Result<Self, OutboxError> {
        let dir = dir.into();
        std::fs::create_dir_all(&dir).map_err(|source| OutboxError::Io {
            op: "create the directory",
            path: dir.display().to_string(),
            source,
        })?;
        Ok(Self { dir })
    }

    /// The directory as it is (nothing created; a missing one holds no events).
    pub fn at(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn path_of(&self, chain: &ChainId, range: LedgerRange, revision: u32) -> PathBuf {
        self.dir
            .join(backup_file_name_revision(chain, range, revision))
    }

    fn load_sync(&self, chain: &ChainId) -> Result<Vec<OutboxEntry>, OutboxError> {
        let io = |op, source| OutboxError::Io {
            op,
            path: self.dir.display().to_string(),
            source,
        };
        let prefix = file_prefix(chain);
        let mut out = Vec::new();
        let listing = match std::fs::read_dir(&self.dir) {
            Ok(l) => l,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
            Err(e) => return Err(io("list", e)),
        };
        for item in listing {
            let item = item.map_err(|e| io("list", e))?;
            let name = item.file_name().to_string_lossy().into_owned();
            let Some(range) = name.strip_prefix(&prefix).and_then(parse_event_name) else {
                continue;
            };
            let path = item.path();
            let bytes = std::fs::read(&path).map_err(|source| OutboxError::Io {
                op: "read",
                path: path.display().to_string(),
                source,
            })?;
            let e = entry(path.display().to_string(), range, bytes);
            // Another chain whose name happens to share the prefix (`_` inside names).
            if matches!(&e.parsed, Ok(ev) if !chain.owns(ev)) {
                continue;
            }
            out.push(e);
        }
        Ok(out)
    }

    fn create_sync(&self, event: &PasEvent, revision: u32) -> Result<Created, OutboxError> {
        let chain = ChainId {
            network: event.partition.network.clone(),
            era_id: event.partition.era_id.clone(),
            version_label: event.partition.version_label.clone(),
        };
        let range = event.range().expect("events we build have start <= end");
        let path = self.path_of(&chain, range, revision);
        let io = |op, source| OutboxError::Io {
            op,
            path: path.display().to_string(),
            source,
        };
        let created = crate::atomic_file::create_new(&path, event.to_indented_json().as_bytes())
            .map_err(|e| io(e.op, e.source))?;
        if created {
            return Ok(Created::Written);
        }
        let bytes = std::fs::read(&path).map_err(|e| io("read", e))?;
        let existing = PasEvent::from_json(&bytes).map_err(|e| OutboxError::Corrupt {
            path: path.display().to_string(),
            message: e.to_string(),
        })?;
        Ok(Created::Existing(Box::new(existing)))
    }

    fn read_json_map<T: serde::de::DeserializeOwned>(
        &self,
        name: &str,
    ) -> Result<BTreeMap<String, T>, OutboxError> {
        let path = self.dir.join(name);
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| OutboxError::Corrupt {
                path: path.display().to_string(),
                message: e.to_string(),
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(BTreeMap::new()),
            Err(source) => Err(OutboxError::Io {
                op: "read",
                path: path.display().to_string(),
                source,
            }),
        }
    }

    fn record_head_sync(&self, chain: &ChainId, hash: &str) -> Result<(), OutboxError> {
        let mut heads: BTreeMap<String, String> = self.read_json_map(HEADS_FILE)?;
        heads.insert(chain.key(), hash.to_string());
        // The original's format: an indented Go map.
        let value = GoValue::sorted_object(
            heads
                .into_iter()
                .map(|(k, v)| (k, GoValue::Str(v)))
                .collect(),
        );
        write_atomic(
            &self.dir.join(HEADS_FILE),
            to_indented(&value, "  ").as_bytes(),
        )
    }

    fn record_delivered_sync(&self, chain: &ChainId, d: &Delivered) -> Result<(), OutboxError> {
        let mut all: BTreeMap<String, Delivered> = self.read_json_map(DELIVERY_FILE)?;
        all.insert(chain.key(), d.clone());
        let mut text = serde_json::to_vec_pretty(&all).expect("delivery state serializes");
        text.push(b'\n');
        write_atomic(&self.dir.join(DELIVERY_FILE), &text)
    }
}

/// Runs blocking filesystem work off the async threads.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, OutboxError> + Send + 'static,
) -> Result<T, OutboxError> {
    tokio::task::spawn_blocking(f)
        .await
        .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()))
}

impl Outbox for FileOutbox {
    fn describe(&self) -> String {
        self.dir.display().to_string()
    }

    fn location_of_revision(&self, chain: &ChainId, range: LedgerRange, revision: u32) -> String {
        self.path_of(chain, range, revision).display().to_string()
    }

    fn load<'a>(
        &'a self,
        chain: &'a ChainId,
    ) -> BoxFuture<'a, Result<Vec<OutboxEntry>, OutboxError>> {
        let (me, chain) = (self.clone(), chain.clone());
        Box::pin(blocking(move || me.load_sync(&chain)))
    }

    fn create<'a>(
        &'a self,
        event: &'a PasEvent,
        revision: u32,
    ) -> BoxFuture<'a, Result<Created, OutboxError>> {
        let (me, event) = (self.clone(), event.clone());
        Box::pin(blocking(move || me.create_sync(&event, revision)))
    }

    fn recorded_head<'a>(
        &'a self,
        chain: &'a ChainId,
    ) -> BoxFuture<'a, Result<Option<String>, OutboxError>> {
        let (me, key) = (self.clone(), chain.key());
        Box::pin(blocking(move || {
            Ok(me.read_json_map::<String>(HEADS_FILE)?.remove(&key))
        }))
    }

    fn record_head<'a>(
        &'a self,
        chain: &'a ChainId,
        event_hash: &'a str,
    ) -> BoxFuture<'a, Result<(), OutboxError>> {
        let (me, chain, hash) = (self.clone(), chain.clone(), event_hash.to_string());
        Box::pin(blocking(move || me.record_head_sync(&chain, &hash)))
    }

    fn delivered<'a>(
        &'a self,
        chain: &'a ChainId,
    ) -> BoxFuture<'a, Result<Option<Delivered>, OutboxError>> {
        let (me, key) = (self.clone(), chain.key());
        Box::pin(blocking(move || {
            Ok(me.read_json_map::<Delivered>(DELIVERY_FILE)?.remove(&key))
        }))
    }

    fn record_delivered<'a>(
        &'a self,
        chain: &'a ChainId,
        delivered: &'a Delivered,
    ) -> BoxFuture<'a, Result<(), OutboxError>> {
        let (me, chain, d) = (self.clone(), chain.clone(), delivered.clone());
        Box::pin(blocking(move || me.record_delivered_sync(&chain, &d)))
    }
}

/// The operator's outbox: events as objects next to the data, created conditionally.
#[derive(Debug, Clone)]
pub struct ObjectStoreOutbox {
    location: Location,
    /// Normalized storage prefix (`bronze/` or empty).
    prefix: String,
}

const HEAD_OBJECT: &str = "_chain-head.json";
const DELIVERY_OBJECT: &str = "_delivery.json";

impl ObjectStoreOutbox {
    pub fn new(location: Location, storage_prefix: &str) -> Self {
        Self {
            location,
            prefix: crate::config::normalize_prefix(storage_prefix),
        }
    }

    /// `<prefix>_pas/<network>/<era>/<version>/`, relative to the location's root.
    pub fn chain_dir(&self, chain: &ChainId) -> String {
        format!(
            "{}_pas/{}/{}/{}/",
            self.prefix, chain.network, chain.era_id, chain.version_label
        )
    }

    fn key(&self, relative: &str) -> ObjectPath {
        self.location.key(relative)
    }

    fn event_key(&self, chain: &ChainId, range: LedgerRange, revision: u32) -> ObjectPath {
        self.key(&format!(
            "{}{}",
            self.chain_dir(chain),
            event_name(range, revision)
        ))
    }

    async fn get_opt(&self, key: &ObjectPath) -> Result<Option<Vec<u8>>, OutboxError> {
        let got = match self.location.store.get(key).await {
            Ok(r) => r.bytes().await,
            Err(e) => Err(e),
        };
        match got {
            Ok(b) => Ok(Some(b.to_vec())),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(source) => Err(OutboxError::Store {
                op: "read",
                key: key.to_string(),
                source,
            }),
        }
    }

    async fn put(&self, key: &ObjectPath, bytes: Vec<u8>) -> Result<(), OutboxError> {
        self.location
            .store
            .put(key, PutPayload::from(bytes))
            .await
            .map(|_| ())
            .map_err(|source| OutboxError::Store {
                op: "write",
                key: key.to_string(),
                source,
            })
    }

    async fn get_json<T: serde::de::DeserializeOwned>(
        &self,
        key: &ObjectPath,
    ) -> Result<Option<T>, OutboxError> {
        match self.get_opt(key).await? {
            None => Ok(None),
            Some(b) => serde_json::from_slice(&b)
                .map(Some)
                .map_err(|e| OutboxError::Corrupt {
                    path: key.to_string(),
                    message: e.to_string(),
                }),
        }
    }
}

#[derive(Serialize, Deserialize)]
struct HeadRecord {
    chain: String,
    event_hash: String,
    /// Where the head event is (absent in records written before it was kept).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ledger_start: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ledger_end: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    revision: Option<u32>,
}

impl ObjectStoreOutbox {
    async fn write_head(
        &self,
        chain: &ChainId,
        event_hash: &str,
        at: Option<(LedgerRange, u32)>,
    ) -> Result<(), OutboxError> {
        let key = self.key(&format!("{}{HEAD_OBJECT}", self.chain_dir(chain)));
        let record = HeadRecord {
            chain: chain.key(),
            event_hash: event_hash.to_string(),
            ledger_start: at.map(|(r, _)| r.start),
            ledger_end: at.map(|(r, _)| r.end),
            revision: at.map(|(_, n)| n),
        };
        self.put(
            &key,
            serde_json::to_vec_pretty(&record).expect("serializes"),
        )
        .await
    }
}

impl Outbox for ObjectStoreOutbox {
    fn describe(&self) -> String {
        self.location.uri_of(&format!("{}_pas", self.prefix))
    }

    fn location_of_revision(&self, chain: &ChainId, range: LedgerRange, revision: u32) -> String {
        self.event_key(chain, range, revision).to_string()
    }

    fn load<'a>(
        &'a self,
        chain: &'a ChainId,
    ) -> BoxFuture<'a, Result<Vec<OutboxEntry>, OutboxError>> {
        Box::pin(async move {
            let dir = self.key(&self.chain_dir(chain));
            let listed: Vec<_> = self
                .location
                .store
                .list(Some(&dir))
                .try_collect()
                .await
                .map_err(|source| OutboxError::Store {
                    op: "list",
                    key: dir.to_string(),
                    source,
                })?;
            let mut out = Vec::new();
            for meta in listed {
                let Some(range) = meta.location.filename().and_then(parse_event_name) else {
                    continue;
                };
                if meta.location.prefix_match(&dir).map(|p| p.count()) != Some(1) {
                    continue; // deeper than the chain folder
                }
                if let Some(bytes) = self.get_opt(&meta.location).await? {
                    out.push(entry(meta.location.to_string(), range, bytes));
                }
            }
            Ok(out)
        })
    }

    fn create<'a>(
        &'a self,
        event: &'a PasEvent,
        revision: u32,
    ) -> BoxFuture<'a, Result<Created, OutboxError>> {
        Box::pin(async move {
            let chain = ChainId {
                network: event.partition.network.clone(),
                era_id: event.partition.era_id.clone(),
                version_label: event.partition.version_label.clone(),
            };
            let range = event.range().expect("events we build have start <= end");
            let key = self.event_key(&chain, range, revision);
            let create = PutOptions {
                mode: PutMode::Create,
                ..Default::default()
            };
            let payload = PutPayload::from(event.to_indented_json().into_bytes());
            match self.location.store.put_opts(&key, payload, create).await {
                Ok(_) => Ok(Created::Written),
                Err(object_store::Error::AlreadyExists { .. }) => {
                    let bytes = self
                        .get_opt(&key)
                        .await?
                        .ok_or_else(|| OutboxError::Corrupt {
                            path: key.to_string(),
                            message: "reported as existing, then not found".into(),
                        })?;
                    let existing =
                        PasEvent::from_json(&bytes).map_err(|e| OutboxError::Corrupt {
                            path: key.to_string(),
                            message: e.to_string(),
                        })?;
                    Ok(Created::Existing(Box::new(existing)))
                }
                Err(source) => Err(OutboxError::Store {
                    op: "create",
                    key: key.to_string(),
                    source,
                }),
            }
        })
    }

    fn recorded_head<'a>(
        &'a self,
        chain: &'a ChainId,
    ) -> BoxFuture<'a, Result<Option<String>, OutboxError>> {
        Box::pin(async move {
            let key = self.key(&format!("{}{HEAD_OBJECT}", self.chain_dir(chain)));
            Ok(self
                .get_json::<HeadRecord>(&key)
                .await?
                .map(|h| h.event_hash))
        })
    }

    fn record_head<'a>(
        &'a self,
        chain: &'a ChainId,
        event_hash: &'a str,
    ) -> BoxFuture<'a, Result<(), OutboxError>> {
        Box::pin(self.write_head(chain, event_hash, None))
    }

    fn record_head_at<'a>(
        &'a self,
        chain: &'a ChainId,
        event_hash: &'a str,
        at: (LedgerRange, u32),
    ) -> BoxFuture<'a, Result<(), OutboxError>> {
        Box::pin(self.write_head(chain, event_hash, Some(at)))
    }

    fn head_event<'a>(
        &'a self,
        chain: &'a ChainId,
    ) -> BoxFuture<'a, Result<Option<(String, OutboxEntry)>, OutboxError>> {
        Box::pin(async move {
            let key = self.key(&format!("{}{HEAD_OBJECT}", self.chain_dir(chain)));
            let Some(head) = self.get_json::<HeadRecord>(&key).await? else {
                return Ok(None);
            };
            let (Some(start), Some(end), Some(revision)) =
                (head.ledger_start, head.ledger_end, head.revision)
            else {
                return Ok(None);
            };
            if start > end {
                return Ok(None);
            }
            let range = LedgerRange::new(start, end);
            let event_key = self.event_key(chain, range, revision);
            Ok(self.get_opt(&event_key).await?.map(|bytes| {
                (
                    head.event_hash,
                    entry(event_key.to_string(), (range, revision), bytes),
                )
            }))
        })
    }

    fn delivered<'a>(
        &'a self,
        chain: &'a ChainId,
    ) -> BoxFuture<'a, Result<Option<Delivered>, OutboxError>> {
        Box::pin(async move {
            let key = self.key(&format!("{}{DELIVERY_OBJECT}", self.chain_dir(chain)));
            self.get_json(&key).await
        })
    }

    fn record_delivered<'a>(
        &'a self,
        chain: &'a ChainId,
        delivered: &'a Delivered,
    ) -> BoxFuture<'a, Result<(), OutboxError>> {
        Box::pin(async move {
            let key = self.key(&format!("{}{DELIVERY_OBJECT}", self.chain_dir(chain)));
            self.put(
                &key,
                serde_json::to_vec_pretty(delivered).expect("serializes"),
            )
            .await
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backup_names_follow_the_original_and_parse_back() {
        let parse_range_json =
            |rest: &str| -> Option<LedgerRange> { rest.strip_suffix(".json")?.parse().ok() };
        let chain = ChainId {
            network: "testnet".into(),
            era_id: "pre_p23".into(),
            version_label: "v1".into(),
        };
        let name = backup_file_name(&chain, LedgerRange::new(100001, 110000));
        assert_eq!(name, "testnet_pre_p23_v1_100001-110000.json");
        assert_eq!(
            parse_range_json(name.strip_prefix(&file_prefix(&chain)).unwrap()),
            Some(LedgerRange::new(100001, 110000))
        );
        for bad in ["1-2.json.tmp", "a-2.json", "5-2.json", "-2.json", "1-.json"] {
            assert_eq!(parse_range_json(bad), None, "{bad}");
        }
        let replaced = backup_file_name_revision(&chain, LedgerRange::new(2, 11), 3);
        assert_eq!(replaced, "testnet_pre_p23_v1_2-11.r3.json");
        assert_eq!(
            parse_event_name(replaced.strip_prefix(&file_prefix(&chain)).unwrap()),
            Some((LedgerRange::new(2, 11), 3))
        );
        assert_eq!(
            parse_event_name("2-11.json"),
            Some((LedgerRange::new(2, 11), 0))
        );
        for bad in [
            "2-11.r0.json",
            "2-11.r.json",
            "2-11.r01.json",
            "2-11.rx.json",
            "2-11.r1.json.tmp",
        ] {
            assert_eq!(parse_event_name(bad), None, "{bad}");
        }
    }

    /// The operator's outbox stores and reads back replacement events as revisions of their
    /// range, and a revision is created only once.
    #[tokio::test]
    async fn object_store_outbox_keeps_revisions_apart() {
        use crate::pas::event::tests::manifest;
        let location = Location {
            store: std::sync::Arc::new(object_store::memory::InMemory::new()),
            root: ObjectPath::from("root"),
            uri: "memory:///root".into(),
        };
        let outbox = ObjectStoreOutbox::new(location, "bronze/");
        let chain = ChainId {
            network: "testnet".into(),
            era_id: "pre_p23".into(),
            version_label: "v1".into(),
        };
        let now = chrono::Utc::now();
        let first = PasEvent::for_partition(&chain, &manifest(2, 11, "sha256:a"), "p", "", now);
        let second = PasEvent::replacing(
            &chain,
            &manifest(2, 11, "sha256:b"),
            "p",
            &first.chain.event_hash,
            now,
        );
        assert_eq!(outbox.create(&first, 0).await.unwrap(), Created::Written);
        assert_eq!(outbox.create(&second, 1).await.unwrap(), Created::Written);
        assert!(matches!(
            outbox.create(&first, 1).await.unwrap(),
            Created::Existing(e) if *e == second
        ));
        assert!(
            outbox
                .location_of_revision(&chain, LedgerRange::new(2, 11), 1)
                .ends_with("_pas/testnet/pre_p23/v1/2-11.r1.json")
        );
        let view = crate::pas::analyse(outbox.load(&chain).await.unwrap());
        assert!(view.issues.is_empty(), "{:?}", view.issues);
        let revisions: Vec<u32> = view.events.iter().map(|e| e.revision).collect();
        assert_eq!(revisions, vec![0, 1]);
        assert_eq!(view.current()[&LedgerRange::new(2, 11)].event, second);
    }
}
