//! A datastore generator: writes a realistic Galexie datastore of N ledgers from real template
//! ledgers, rewritten into a consistent chain (sequence, previous hash, close time, header hash),
//! so tests and benchmarks can use thousands of real-sized ledgers.
//!
//! Templates are cycled in order. Use several different ones (the `pubnet-variants` set): copies
//! of a single ledger compress unrealistically well inside Parquet pages.

use std::path::{Path, PathBuf};

use crate::source::schema::{DatastoreManifest, DatastoreSchema};
use crate::source::{DecodeError, decompress_batch};

#[derive(Debug, Clone)]
pub struct GenerateSpec {
    pub out: PathBuf,
    pub templates: Vec<PathBuf>,
    pub first_ledger: u32,
    pub ledgers: u32,
    pub ledgers_per_batch: u32,
    pub batches_per_partition: u32,
    pub network_passphrase: String,
    pub zstd_level: i32,
    /// Close time of the first ledger (unix seconds); each next ledger closes 5 s later.
    pub first_close_time: u64,
    /// Hash the first ledger links to.
    pub genesis_previous_hash: [u8; 32],
}

/// Close time of the first generated ledger by default: 2024-09-02, near the pubnet template.
pub const DEFAULT_FIRST_CLOSE_TIME: u64 = 1_725_235_200;

impl GenerateSpec {
    /// `ledgers` ledgers from `first_ledger` into `out`, laid out like a default Galexie
    /// datastore (one ledger per object, 64,000 objects per folder), zstd level 1, the first
    /// ledger linking to an all-zero hash. Override fields with struct-update syntax.
    pub fn new(
        out: impl Into<PathBuf>,
        templates: Vec<PathBuf>,
        network_passphrase: impl Into<String>,
        first_ledger: u32,
        ledgers: u32,
    ) -> Self {
        GenerateSpec {
            out: out.into(),
            templates,
            first_ledger,
            ledgers,
            ledgers_per_batch: 1,
            batches_per_partition: 64_000,
            network_passphrase: network_passphrase.into(),
            zstd_level: 1,
            first_close_time: DEFAULT_FIRST_CLOSE_TIME,
            genesis_previous_hash: [0; 32],
        }
    }

    /// `ledgers` real-sized pubnet ledgers from ledger 2, cycling the 16 `pubnet-variants`
    /// templates under `workspace` (the repository root): the tests' and benchmarks' usual data.
    pub fn pubnet_variants(out: impl Into<PathBuf>, workspace: &Path, ledgers: u32) -> Self {
        Self::new(
            out,
            vec![workspace.join("tests/fixtures/pubnet-variants")],
            crate::network::PUBNET_PASSPHRASE,
            2,
            ledgers,
        )
    }
}

#[derive(Debug, thiserror::Error)]
pub enum GenerateError {
    #[error("cannot read template {path}: {source}")]
    ReadTemplate {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("template {path}: {source}")]
    DecodeTemplate { path: PathBuf, source: DecodeError },
    #[error("template {path} is neither a LedgerCloseMeta nor a LedgerCloseMetaBatch: {source}")]
    BadTemplate {
        path: PathBuf,
        source: bronze_ledger::XdrError,
    },
    #[error("no template ledgers given")]
    NoTemplates,
    #[error("invalid layout: {0}")]
    Schema(#[from] crate::source::schema::SchemaError),
    #[error("ledger range overflows u32")]
    Overflow,
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GenerateReport {
    pub objects: usize,
    pub ledgers: u32,
    pub xdr_bytes: u64,
    pub compressed_bytes: u64,
    pub last_ledger_hash: [u8; 32],
}

/// Loads every LedgerCloseMeta from template files (raw XDR or zstd; a bare LCM or a batch).
/// Directories are expanded to their files in name order.
pub fn load_templates(paths: &[PathBuf]) -> Result<Vec<Vec<u8>>, GenerateError> {
    let mut files = Vec::new();
    for path in paths {
        if path.is_dir() {
            let mut entries: Vec<PathBuf> = std::fs::read_dir(path)
                .map_err(|source| GenerateError::ReadTemplate {
                    path: path.clone(),
                    source,
                })?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| {
                    p.is_file()
                        && !p
                            .file_name()
                            .is_some_and(|n| n.to_string_lossy().starts_with('.'))
                })
                .filter(|p| p.extension().is_some_and(|e| e != "md"))
                .collect();
            entries.sort();
            files.extend(entries);
        } else {
            files.push(path.clone());
        }
    }
    let mut out = Vec::new();
    for path in files {
        let raw = std::fs::read(&path).map_err(|source| GenerateError::ReadTemplate {
            path: path.clone(),
            source,
        })?;
        let name = path.to_string_lossy();
        let xdr = if name.ends_with(".zst") || name.ends_with(".zstd") {
            let mut buf = Vec::new();
            decompress_batch(&raw, &mut buf).map_err(|source| GenerateError::DecodeTemplate {
                path: path.clone(),
                source,
            })?;
            buf
        } else {
            raw
        };
        match bronze_ledger::validate_lcm(&xdr) {
            Ok(()) => out.push(xdr),
            Err(lcm_err) => match bronze_ledger::split_batch(&xdr) {
                Ok(view) => out.extend(view.ledgers.iter().map(|l| l.to_vec())),
                Err(_) => {
                    return Err(GenerateError::BadTemplate {
                        path,
                        source: lcm_err,
                    });
                }
            },
        }
    }
    if out.is_empty() {
        return Err(GenerateError::NoTemplates);
    }
    Ok(out)
}

/// Writes the datastore described by `spec`.
pub fn generate_datastore(spec: &GenerateSpec) -> Result<GenerateReport, GenerateError> {
    let templates = load_templates(&spec.templates)?;
    let schema = DatastoreSchema::new(spec.ledgers_per_batch, spec.batches_per_partition)?;
    let last = spec
        .first_ledger
        .checked_add(spec.ledgers.saturating_sub(1))
        .ok_or(GenerateError::Overflow)?;
    std::fs::create_dir_all(&spec.out).map_err(|source| GenerateError::Write {
        path: spec.out.clone(),
        source,
    })?;
    let manifest = DatastoreManifest {
        network_passphrase: spec.network_passphrase.clone(),
        version: "1.0".into(),
        compression: "zstd".into(),
        ledgers_per_batch: spec.ledgers_per_batch,
        batches_per_partition: spec.batches_per_partition,
    };
    let config_path = spec.out.join(".config.json");
    std::fs::write(
        &config_path,
        serde_json::to_vec_pretty(&manifest).expect("serializes"),
    )
    .map_err(|source| GenerateError::Write {
        path: config_path,
        source,
    })?;

    // Relink sequentially (each hash depends on the previous), compress in parallel.
    let mut previous = spec.genesis_previous_hash;
    let mut batches: Vec<(PathBuf, Vec<u8>)> = Vec::new();
    let mut xdr_bytes = 0u64;
    let mut index = 0usize;
    for batch in schema.batches_covering(spec.first_ledger, last) {
        let mut lcms = Vec::new();
        for seq in batch.start.max(spec.first_ledger)..=batch.end.min(last) {
            let mut lcm = templates[index % templates.len()].clone();
            index += 1;
            let close = spec.first_close_time + 5 * u64::from(seq - spec.first_ledger);
            previous = bronze_ledger::relink_header(&mut lcm, seq, &previous, close)
                .expect("templates were validated");
            xdr_bytes += lcm.len() as u64;
            lcms.push(lcm);
        }
        let first = batch.start.max(spec.first_ledger);
        let end = first + lcms.len() as u32 - 1;
        let refs: Vec<&[u8]> = lcms.iter().map(Vec::as_slice).collect();
        // A batch's own bounds are the ledgers it really holds (Galexie's first and last batch of
        // a partial range are partial too).
        let xdr = bronze_ledger::encode_batch(first, end, &refs);
        batches.push((spec.out.join(format!("{}.xdr.zst", batch.stem)), xdr));
    }
    let compressed = compress_all(batches, spec.zstd_level)?;
    Ok(GenerateReport {
        objects: compressed.0,
        ledgers: spec.ledgers,
        xdr_bytes,
        compressed_bytes: compressed.1,
        last_ledger_hash: previous,
    })
}

fn compress_all(
    batches: Vec<(PathBuf, Vec<u8>)>,
    level: i32,
) -> Result<(usize, u64), GenerateError> {
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .max(1);
    let chunk = batches.len().div_ceil(threads).max(1);
    let count = batches.len();
    let results: Vec<Result<u64, GenerateError>> = std::thread::scope(|scope| {
        let handles: Vec<_> = batches
            .chunks(chunk)
            .map(|part| {
                scope.spawn(move || {
                    let mut total = 0u64;
                    // Galexie's frames carry a content checksum; so do ours.
                    let mut compressor = zstd::bulk::Compressor::new(level)
                        .and_then(|mut c| c.include_checksum(true).map(|()| c))
                        .map_err(|source| GenerateError::Write {
                            path: PathBuf::from("zstd"),
                            source,
                        })?;
                    for (path, xdr) in part {
                        let data =
                            compressor
                                .compress(xdr)
                                .map_err(|source| GenerateError::Write {
                                    path: path.clone(),
                                    source,
                                })?;
                        write_file(path, &data)?;
                        total += data.len() as u64;
                    }
                    Ok(total)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("compression thread"))
            .collect()
    });
    let mut total = 0;
    for r in results {
        total += r?;
    }
    Ok((count, total))
}

fn write_file(path: &Path, data: &[u8]) -> Result<(), GenerateError> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|source| GenerateError::Write {
            path: dir.to_path_buf(),
            source,
        })?;
    }
    std::fs::write(path, data).map_err(|source| GenerateError::Write {
        path: path.to_path_buf(),
        source,
    })
}
