//! Galexie datastores for the tests: generated ones of real ledgers relinked into a valid chain,
//! the bundled fixtures, and access to their object files.

use std::path::{Path, PathBuf};

use bronze::generate::{GenerateSpec, generate_datastore};

/// The testnet passphrase, as the datastores' `.config.json` records it.
pub const TESTNET: &str = "Test SDF Network ; September 2015";

/// The first ledger of every generated datastore.
pub const FIRST_LEDGER: u32 = 2;

/// The workspace root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// A file or folder under `tests/fixtures`.
pub fn fixture(rel: &str) -> PathBuf {
    repo_root().join("tests/fixtures").join(rel)
}

/// Small real ledgers of every LCM version (v0, v1, v2), used as generator templates where size
/// does not matter.
pub fn small_templates() -> PathBuf {
    repo_root().join("ledger/tests/data/stellar-core-protocols")
}

/// How a generated datastore packs its ledgers into objects and folders.
#[derive(Debug, Clone, Copy)]
pub struct Layout {
    pub ledgers_per_object: u32,
    pub objects_per_folder: u32,
}

impl Layout {
    /// One ledger per object, all in one folder: every ledger is its own file.
    pub const ONE_PER_OBJECT: Layout = Layout {
        ledgers_per_object: 1,
        objects_per_folder: 64_000,
    };
}

/// Writes a testnet datastore of `ledgers` small ledgers (every LCM version) from
/// [`FIRST_LEDGER`] into `out`.
pub fn generate_testnet(out: &Path, ledgers: u32, layout: Layout) {
    generate_datastore(&GenerateSpec {
        ledgers_per_batch: layout.ledgers_per_object,
        batches_per_partition: layout.objects_per_folder,
        first_close_time: 1_700_000_000,
        genesis_previous_hash: [7; 32],
        ..GenerateSpec::new(out, vec![small_templates()], TESTNET, FIRST_LEDGER, ledgers)
    })
    .expect("generate datastore");
}

/// Writes a pubnet datastore of `ledgers` real-sized ledgers from [`FIRST_LEDGER`] into `out`.
pub fn generate_pubnet(out: &Path, ledgers: u32) {
    generate_datastore(&GenerateSpec {
        first_ledger: FIRST_LEDGER,
        ..GenerateSpec::pubnet_variants(out, &repo_root(), ledgers)
    })
    .expect("generate datastore");
}

/// Every object file of a local datastore (recursively), by name.
pub fn object_files(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if path.to_string_lossy().contains(".xdr.zst") {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

/// The object file holding `seq` (one ledger per object).
pub fn object_for(root: &Path, seq: u32) -> PathBuf {
    let suffix = format!("--{seq}.xdr.zst");
    object_files(root)
        .into_iter()
        .find(|p| p.file_name().unwrap().to_string_lossy().ends_with(&suffix))
        .unwrap_or_else(|| panic!("no object for ledger {seq}"))
}

/// Decompresses an object's bytes.
pub fn unzstd(bytes: &[u8]) -> Vec<u8> {
    zstd::decode_all(bytes).unwrap()
}

/// zstd with a content checksum, as Galexie writes.
pub fn zstd(bytes: &[u8]) -> Vec<u8> {
    let mut c = zstd::bulk::Compressor::new(1).unwrap();
    c.include_checksum(true).unwrap();
    c.compress(bytes).unwrap()
}
