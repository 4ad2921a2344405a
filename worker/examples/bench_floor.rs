//! The benchmark's floor: the unavoidable work per ledger, measured on the same bytes the copier
//! reads: zstd-decompress each datastore object, sha256 each ledger's XDR, and compress it with
//! the Parquet codec (zstd at Parquet's default level). Single-threaded.
//!
//! `cargo run --release -p bronze --example bench_floor -- DATASTORE_DIR [ZSTD_LEVEL]`

use std::path::{Path, PathBuf};
use std::time::Instant;

use sha2::{Digest, Sha256};

fn objects(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("datastore dir") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            objects(&path, out);
        } else if path.to_string_lossy().contains(".xdr.zst") {
            out.push(path);
        }
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let dir = PathBuf::from(
        args.next()
            .expect("usage: bench_floor DATASTORE_DIR [ZSTD_LEVEL]"),
    );
    let level: i32 = args.next().map_or(1, |l| l.parse().expect("level"));
    let mut files = Vec::new();
    objects(&dir, &mut files);
    files.sort();
    // Read everything first: the floor measures CPU work, not the disk.
    let compressed: Vec<Vec<u8>> = files
        .iter()
        .map(|f| std::fs::read(f).expect("read"))
        .collect();
    let mut buffer = Vec::new();
    let mut ledgers = 0u64;
    let mut xdr_bytes = 0u64;
    let mut sink = 0u64;
    let started = Instant::now();
    let cpu_before = bronze::process::cpu_seconds().unwrap_or(0.0);
    for object in &compressed {
        bronze::source::decompress_batch(object, &mut buffer).expect("zstd");
        // LedgerCloseMetaBatch: start, end, count, then the ledgers (one per object here).
        let count = u32::from_be_bytes(buffer[8..12].try_into().expect("count")) as u64;
        assert_eq!(count, 1, "the floor expects one ledger per object");
        let lcm = &buffer[12..];
        let digest = Sha256::digest(lcm);
        let packed = zstd::bulk::compress(lcm, level).expect("compress");
        sink = sink.wrapping_add(u64::from(digest[0]) + packed.len() as u64);
        ledgers += 1;
        xdr_bytes += lcm.len() as u64;
    }
    let secs = started.elapsed().as_secs_f64();
    let cpu = bronze::process::cpu_seconds().unwrap_or(0.0) - cpu_before;
    println!(
        "floor: {ledgers} ledgers, {:.1} MB XDR in {secs:.2} s: {:.1} ledgers/s, {:.1} MB/s, cpu {cpu:.2} s (checksum {sink})",
        xdr_bytes as f64 / 1e6,
        ledgers as f64 / secs,
        xdr_bytes as f64 / 1e6 / secs
    );
}
