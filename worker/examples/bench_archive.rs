//! The archive check's benchmark input: writes the Stellar history archive of a local
//! datastore (one ledger per object, as `generate-datastore` writes it) exactly as stellar-core
//! lays it out (`bronze::archive::write_archive`: each ledger's own `LedgerHeaderHistoryEntry`,
//! record-marked, gzipped, per checkpoint of 64 ledgers, and the HAS). Prints the newest
//! checkpoint and its ledger hash, a trusted ledger for `archive.trusted_ledger`.
//!
//! `cargo run --release -p bronze --example bench_archive -- DATASTORE_DIR ARCHIVE_DIR PASSPHRASE`

use std::path::{Path, PathBuf};

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
    let usage = "usage: bench_archive DATASTORE_DIR ARCHIVE_DIR PASSPHRASE";
    let mut args = std::env::args().skip(1);
    let datastore = PathBuf::from(args.next().expect(usage));
    let archive = PathBuf::from(args.next().expect(usage));
    let passphrase = args.next().expect(usage);
    let mut files = Vec::new();
    objects(&datastore, &mut files);
    let mut lcms = Vec::with_capacity(files.len());
    let mut buffer = Vec::new();
    for file in &files {
        let object = std::fs::read(file).expect("read");
        bronze::source::decompress_batch(&object, &mut buffer).expect("zstd");
        let batch = bronze_ledger::split_batch(&buffer).expect("a LedgerCloseMetaBatch");
        lcms.extend(batch.ledgers.iter().map(|l| l.to_vec()));
    }
    let written =
        bronze::archive::write_archive(&archive, &passphrase, lcms.iter().map(Vec::as_slice))
            .expect("write the archive");
    let newest = lcms
        .iter()
        .map(|lcm| bronze::archive::entry_of_lcm(lcm).expect("a header").0)
        .find(|e| e.ledger == written.newest)
        .expect("the newest checkpoint's ledger");
    println!(
        "archive: {} checkpoint files, newest {} hash {}",
        written.files.len(),
        written.newest,
        hex::encode(newest.hash)
    );
}
