//! The archive check of a copy: the checkpoint files a partition needs, fetched once per
//! process from every configured archive and cached (bounded: [`CACHE_FILES`] decoded files,
//! least recently used out first), then every ledger of the partition compared with its entry.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use tokio::sync::OnceCell;

use super::anchor::{AnchorFile, ArchiveAnchor, TrustedAnchor};
use super::compare::{Difference, archives_agree, compare};
use super::error::ArchiveError;
use super::file::{CheckpointFile, HeaderEntry, decode_checkpoint_file};
use super::has::{HistoryArchiveState, check_network, parse_has};
use super::layout::{HAS_PATH, checkpoint_of, checkpoints_covering, ledger_file_path};
use super::reader::{ArchiveReader, ReadError, ReaderSettings};
use super::trust::{TrustError, TrustedChain, TrustedLedger};
use crate::config::{Config, TrustedLedgerConfig};
use crate::hash::checksum_string;
use crate::partition::LedgerRange;

/// Decoded checkpoint files kept at most (about 30 KB each: some 30 MB).
pub const CACHE_FILES: usize = 1024;
/// Checkpoint files of one partition fetched at once.
pub const FILES_AHEAD: usize = 8;

/// `archive.*` of a config, resolved.
#[derive(Debug, Clone)]
pub struct ArchiveSettings {
    pub urls: Vec<String>,
    pub allow_unanchored: bool,
    /// Following the tip: a partition beyond the archive's newest checkpoint waits for it.
    pub follow: bool,
    pub poll_interval: Duration,
    /// The era's network passphrase, which each archive's HAS must name.
    pub passphrase: Option<String>,
    /// `archive.trusted_ledger`, checked (and parsed) when the archives are opened.
    pub trusted_ledger: Option<TrustedLedgerConfig>,
    pub reader: ReaderSettings,
}

impl ArchiveSettings {
    /// The settings of `config`, `None` when no archive is configured.
    pub fn from_config(config: &Config) -> Option<Self> {
        let urls = config.archive.all_urls();
        if urls.is_empty() {
            return None;
        }
        Some(Self::with_urls(config, urls))
    }

    /// As [`Self::from_config`] with other archive URLs (`verify --archive URL`).
    pub fn with_urls(config: &Config, urls: Vec<String>) -> Self {
        let a = &config.archive;
        let or = |own: &str, source: &str| if own.is_empty() { source } else { own }.to_string();
        Self {
            urls,
            allow_unanchored: a.allow_unanchored,
            follow: config.follows_tip(),
            poll_interval: Duration::from_millis(config.source.poll_interval_ms)
                .max(Duration::from_secs(1)),
            passphrase: crate::network::expected_passphrase(config),
            trusted_ledger: a.trusted_ledger.clone(),
            reader: ReaderSettings {
                s3_endpoint: or(&a.s3_endpoint, &config.source.s3_endpoint),
                s3_region: or(&a.s3_region, &config.source.s3_region),
                retry_attempts: config.perf.retry_attempts,
                first_backoff: crate::source::read_policy::first_backoff(
                    config.perf.retry_backoff_ms,
                ),
            },
        }
    }
}

/// A checkpoint file as the archives agree on it (`None`: no reachable archive has it).
#[derive(Debug)]
pub struct AgreedFile {
    pub checkpoint: u32,
    pub path: String,
    pub file: Option<CheckpointFile>,
}

/// The files a partition is checked against.
#[derive(Debug)]
pub struct PartitionFiles {
    pub range: LedgerRange,
    pub files: Vec<Arc<AgreedFile>>,
    pub unanchored_from: Option<u32>,
    /// The trusted ledger the checked ledgers were proven to hash-link to, if one is set.
    pub trusted: Option<TrustedLedger>,
}

type Slot = Arc<OnceCell<Arc<AgreedFile>>>;

#[derive(Default)]
struct Cache {
    slots: HashMap<u32, (Slot, u64)>,
    clock: u64,
}

impl Cache {
    fn slot(&mut self, checkpoint: u32) -> Slot {
        self.clock += 1;
        let clock = self.clock;
        if let Some((slot, used)) = self.slots.get_mut(&checkpoint) {
            *used = clock;
            return slot.clone();
        }
        if self.slots.len() >= CACHE_FILES
            && let Some(oldest) = self
                .slots
                .iter()
                .min_by_key(|(_, (_, used))| *used)
                .map(|(k, _)| *k)
        {
            self.slots.remove(&oldest);
        }
        let slot = Slot::default();
        self.slots.insert(checkpoint, (slot.clone(), clock));
        slot
    }
}

/// The history archives of a run, open.
pub struct ArchiveCheck {
    readers: Vec<ArchiveReader>,
    settings: ArchiveSettings,
    cache: Mutex<Cache>,
    /// The newest checkpoint any reachable archive has published.
    newest: tokio::sync::Mutex<u32>,
    /// The ledgers proven to hash-link to `archive.trusted_ledger` (one walk at a time).
    trusted: Option<tokio::sync::Mutex<TrustedChain>>,
}

impl std::fmt::Debug for ArchiveCheck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ArchiveCheck")
            .field("urls", &self.settings.urls)
            .finish()
    }
}

impl ArchiveCheck {
    /// Opens every archive and reads its state: each must be a history archive of the era's
    /// network. An unreachable one is passed over when another answers.
    pub async fn open(settings: ArchiveSettings) -> Result<Self, ArchiveError> {
        let readers = settings
            .urls
            .iter()
            .map(|url| ArchiveReader::open(url, &settings.reader))
            .collect::<Result<Vec<_>, _>>()?;
        let trusted = settings
            .trusted_ledger
            .as_ref()
            .map(|t| {
                t.parse()
                    .map_err(|why| ArchiveError::TrustedInvalid { why })
            })
            .transpose()?;
        let mut check = Self {
            readers,
            settings,
            cache: Mutex::new(Cache::default()),
            newest: tokio::sync::Mutex::new(0),
            trusted: None,
        };
        let newest = check.read_newest().await?;
        *check.newest.lock().await = newest;
        if let Some(trusted) = trusted {
            let chain = check.start_trusted_chain(trusted, newest).await?;
            check.trusted = Some(tokio::sync::Mutex::new(chain));
        }
        tracing::info!(archives = %check.urls(), newest_checkpoint = newest, "history archives open: every ledger is checked against them before its partition is committed");
        Ok(check)
    }

    /// Checks the archive against the trusted ledger before anything is taken from it: its
    /// header for that ledger must hash to the trusted hash.
    async fn start_trusted_chain(
        &self,
        trusted: TrustedLedger,
        newest: u32,
    ) -> Result<TrustedChain, ArchiveError> {
        let checkpoint = checkpoint_of(trusted.sequence);
        let outside = |why: String| ArchiveError::TrustedOutside {
            ledger: trusted.sequence,
            urls: self.urls(),
            why,
        };
        if checkpoint > newest {
            return Err(outside(format!(
                "it is beyond the newest checkpoint the archive has published ({newest})"
            )));
        }
        let file = match self.file(checkpoint, newest).await {
            Err(ArchiveError::Missing { path, .. }) => {
                return Err(outside(format!("the archive has no {path}")));
            }
            other => other?,
        };
        let chain = match TrustedChain::start(trusted, file.file.as_ref().expect("present")) {
            Err(TrustError::NotInArchive { path, .. }) => {
                return Err(outside(format!(
                    "the archive has no entry for it in {path}"
                )));
            }
            other => other.map_err(|source| self.trust_error(source))?,
        };
        tracing::info!(trusted_ledger = trusted.sequence, hash = %hex::encode(trusted.hash), archives = %self.urls(), "the archive's header for the trusted ledger hashes to the trusted hash: every checked ledger must hash-link to it");
        Ok(chain)
    }

    fn trust_error(&self, source: TrustError) -> ArchiveError {
        ArchiveError::Trust {
            urls: self.urls(),
            source,
        }
    }

    /// Proves that every ledger of `first..=last` hash-links to the trusted ledger through the
    /// archive's headers, walking the checkpoint files between (read ahead, through the
    /// cache) from what is proven already; nothing to do without a trusted ledger.
    async fn link_to_trusted(
        &self,
        first: u32,
        last: u32,
        newest: u32,
    ) -> Result<Option<TrustedLedger>, ArchiveError> {
        let Some(chain) = &self.trusted else {
            return Ok(None);
        };
        let mut chain = chain.lock().await;
        // The genesis ledger is in no datastore; an archive built from one may lack it.
        let first = first.max(2);
        if chain.covers(first, last) {
            return Ok(Some(chain.trusted));
        }
        let forward: Vec<u32> = if chain.high < last {
            checkpoints_covering(LedgerRange::new(chain.high + 1, last)).collect()
        } else {
            Vec::new()
        };
        let mut back: Vec<u32> = if first < chain.low {
            checkpoints_covering(LedgerRange::new(first, chain.low - 1)).collect()
        } else {
            Vec::new()
        };
        back.reverse();
        tracing::info!(
            from = first,
            to = last,
            trusted_ledger = chain.trusted.sequence,
            files = forward.len() + back.len(),
            "linking ledgers to the trusted ledger through the archive's headers"
        );
        let mut files = futures::stream::iter(forward)
            .map(|c| self.file(c, newest))
            .buffered(FILES_AHEAD);
        while let Some(file) = files.next().await {
            let file = file?;
            chain
                .extend_forward(file.file.as_ref().expect("present"))
                .map_err(|e| self.trust_error(e))?;
        }
        let mut files = futures::stream::iter(back)
            .map(|c| self.file(c, newest))
            .buffered(FILES_AHEAD);
        while let Some(file) = files.next().await {
            let file = file?;
            chain
                .extend_back(file.file.as_ref().expect("present"))
                .map_err(|e| self.trust_error(e))?;
        }
        debug_assert!(chain.covers(first, last));
        Ok(Some(chain.trusted))
    }

    /// The archives, comma-separated (for messages).
    pub fn urls(&self) -> String {
        self.settings.urls.join(", ")
    }

    /// The state of one archive, its network checked.
    pub async fn state(&self, reader: &ArchiveReader) -> Result<HistoryArchiveState, ArchiveError> {
        let bytes = reader
            .get(HAS_PATH)
            .await?
            .ok_or_else(|| ArchiveError::NoHas {
                url: reader.url.clone(),
                path: HAS_PATH.into(),
            })?;
        let has_err = |source| ArchiveError::Has {
            url: reader.url.clone(),
            path: HAS_PATH.into(),
            source,
        };
        let has = parse_has(&bytes).map_err(has_err)?;
        if let Some(expected) = &self.settings.passphrase
            && !check_network(&has, expected).map_err(has_err)?
        {
            tracing::warn!(archive = %reader.url, "the archive's state names no network passphrase (HAS version 1): its network cannot be checked");
        }
        Ok(has)
    }

    /// The newest checkpoint of the reachable archives (an error if none is reachable).
    async fn read_newest(&self) -> Result<u32, ArchiveError> {
        let mut newest = None;
        let mut unreachable = None;
        for reader in &self.readers {
            match self.state(reader).await {
                Ok(has) => newest = Some(newest.unwrap_or(0).max(has.current_ledger)),
                Err(e) if e.is_unreachable() && self.readers.len() > 1 => {
                    tracing::warn!(archive = %reader.url, error = %e, "archive unreachable; the others are used");
                    unreachable = Some(e);
                }
                Err(e) => return Err(e),
            }
        }
        newest.ok_or_else(|| unreachable.expect("at least one archive"))
    }

    /// Every checkpoint file `range` needs, fetched (or taken from the cache). Ledgers beyond
    /// the newest published checkpoint: waited for when following the tip, else unanchored
    /// with `archive.allow_unanchored`, else an error.
    pub async fn partition_files(
        &self,
        range: LedgerRange,
    ) -> Result<PartitionFiles, ArchiveError> {
        let needed = checkpoint_of(range.end);
        let mut newest = *self.newest.lock().await;
        if needed > newest {
            newest = self.refresh_newest().await?;
        }
        let mut waited = false;
        while needed > newest && self.settings.follow {
            if !waited {
                tracing::info!(partition = %range, checkpoint = needed, newest, archives = %self.urls(), "waiting for the history archive to publish the checkpoint of the partition's last ledger");
                crate::metrics::retry("archive_wait");
                waited = true;
            }
            tokio::time::sleep(self.settings.poll_interval).await;
            newest = self.refresh_newest().await?;
        }
        let mut unanchored_from = None;
        if needed > newest {
            let first_unpublished = range.start.max(newest.saturating_add(1));
            if !self.settings.allow_unanchored {
                return Err(ArchiveError::NotYetPublished {
                    range,
                    ledger: first_unpublished,
                    newest,
                    urls: self.urls(),
                });
            }
            tracing::warn!(partition = %range, from = first_unpublished, newest, "archive.allow_unanchored: ledgers beyond the archive's newest checkpoint are committed unchecked (recorded in the manifest)");
            unanchored_from = Some(first_unpublished);
        }
        let checked = match unanchored_from {
            Some(from) if from == range.start => None,
            Some(from) => Some(LedgerRange::new(range.start, from - 1)),
            None => Some(range),
        };
        let (files, trusted) = match checked {
            Some(checked) => {
                let files = futures::stream::iter(checkpoints_covering(checked))
                    .map(|c| self.file(c, newest))
                    .buffered(FILES_AHEAD)
                    .try_collect::<Vec<_>>()
                    .await?;
                let trusted = self
                    .link_to_trusted(checked.start, checked.end, newest)
                    .await?;
                (files, trusted)
            }
            None => (Vec::new(), None),
        };
        Ok(PartitionFiles {
            range,
            files,
            unanchored_from,
            trusted,
        })
    }

    async fn refresh_newest(&self) -> Result<u32, ArchiveError> {
        let newest = self.read_newest().await?;
        let mut current = self.newest.lock().await;
        *current = (*current).max(newest);
        Ok(*current)
    }

    /// One checkpoint's file, fetched once per process while it stays in the cache.
    async fn file(&self, checkpoint: u32, newest: u32) -> Result<Arc<AgreedFile>, ArchiveError> {
        let slot = self.cache.lock().expect("not poisoned").slot(checkpoint);
        let file = slot
            .get_or_try_init(|| async { self.fetch(checkpoint).await.map(Arc::new) })
            .await?
            .clone();
        if file.file.is_none() {
            return Err(ArchiveError::Missing {
                urls: self.urls(),
                path: file.path.clone(),
                checkpoint,
                newest,
            });
        }
        Ok(file)
    }

    /// Fetches a checkpoint's file from every archive; those that have it must agree.
    async fn fetch(&self, checkpoint: u32) -> Result<AgreedFile, ArchiveError> {
        let path = ledger_file_path(checkpoint);
        let mut found: Vec<Option<CheckpointFile>> = Vec::with_capacity(self.readers.len());
        let mut unreachable: Option<ReadError> = None;
        let mut reached = 0;
        for reader in &self.readers {
            let bytes = match reader.get(&path).await {
                Ok(bytes) => bytes,
                Err(e @ ReadError::Unreachable { .. }) if self.readers.len() > 1 => {
                    tracing::warn!(archive = %reader.url, error = %e, "archive unreachable; the others are used");
                    unreachable = Some(e);
                    found.push(None);
                    continue;
                }
                Err(e) => return Err(e.into()),
            };
            reached += 1;
            let file = bytes
                .map(|bytes| decode_checkpoint_file(checkpoint, &path, &bytes))
                .transpose()
                .map_err(|source| ArchiveError::File {
                    url: reader.url.clone(),
                    path: path.clone(),
                    source,
                })?;
            found.push(file);
        }
        if reached == 0 {
            return Err(unreachable.expect("every archive failed").into());
        }
        let refs: Vec<Option<&CheckpointFile>> = found.iter().map(Option::as_ref).collect();
        archives_agree(&refs).map_err(|d| ArchiveError::ArchivesDisagree {
            ledger: d.ledger,
            path: path.clone(),
            first: self.readers[d.first].url.clone(),
            second: self.readers[d.second].url.clone(),
        })?;
        let first = found.iter().position(Option::is_some);
        Ok(AgreedFile {
            checkpoint,
            path,
            file: first.and_then(|i| found.swap_remove(i)),
        })
    }

    /// The archive named in a disagreement: the first configured (with several, the files
    /// are those every reachable archive agrees on).
    pub fn url_of_files(&self) -> String {
        self.settings.urls.first().cloned().unwrap_or_default()
    }

    /// Checks a partition's ledgers (each `HeaderEntry` from its `LedgerCloseMeta`) against
    /// `files`; the anchor to record in its manifest.
    pub fn check(
        &self,
        files: &PartitionFiles,
        ledgers: &[HeaderEntry],
    ) -> Result<ArchiveAnchor, ArchiveError> {
        check_partition(files, ledgers, &self.settings.urls, &self.url_of_files())
    }
}

/// Every ledger of a partition that differs from its archive entry (pure), in ledger order:
/// the ledger, the archive file that should hold it, and what differs. Ledgers from
/// `files.unanchored_from` on are not compared.
pub fn disagreements(
    files: &PartitionFiles,
    ledgers: &[HeaderEntry],
) -> Vec<(u32, String, Difference)> {
    let mut out = Vec::new();
    for ours in ledgers {
        if files
            .unanchored_from
            .is_some_and(|from| ours.ledger >= from)
        {
            continue;
        }
        let checkpoint = checkpoint_of(ours.ledger);
        let agreed = files.files.iter().find(|f| f.checkpoint == checkpoint);
        let entry = agreed
            .and_then(|f| f.file.as_ref())
            .and_then(|f| f.entry(ours.ledger));
        if let Some(difference) = compare(ours, entry) {
            out.push((ours.ledger, ledger_file_path(checkpoint), difference));
        }
    }
    out
}

/// Compares every ledger of a partition with its archive entry (pure): the first that differs
/// is the error; else the anchor to record in the manifest.
pub fn check_partition(
    files: &PartitionFiles,
    ledgers: &[HeaderEntry],
    urls: &[String],
    url: &str,
) -> Result<ArchiveAnchor, ArchiveError> {
    if let Some((ledger, path, difference)) = disagreements(files, ledgers).into_iter().next() {
        return Err(ArchiveError::Disagree {
            range: files.range,
            ledger,
            url: url.to_string(),
            path,
            difference: Box::new(difference),
        });
    }
    Ok(anchor_of(files, urls))
}

/// What a manifest records about a partition's check.
pub fn anchor_of(files: &PartitionFiles, urls: &[String]) -> ArchiveAnchor {
    ArchiveAnchor {
        archives: urls.to_vec(),
        files: files
            .files
            .iter()
            .filter_map(|f| {
                f.file.as_ref().map(|file| AnchorFile {
                    path: f.path.clone(),
                    sha256: checksum_string(&file.sha256),
                })
            })
            .collect(),
        unanchored_from: files.unanchored_from,
        trusted_ledger: files.trusted.map(|t| TrustedAnchor {
            sequence: t.sequence,
            hash: hex::encode(t.hash),
        }),
    }
}
