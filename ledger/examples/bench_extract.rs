//! Micro benchmark: split + validate + extract vs a full stellar-xdr decode, on the real 372 KB
//! pubnet ledger 53,312,000 (a genuine Galexie batch object).
//!
//! Run: `cargo run --release -p bronze-ledger --example bench_extract`; with the argument
//! `walkers`, only the comparison of the generated LedgerCloseMeta walker with the interpreter
//! (`split_batch` on the pubnet ledger and the pubnet variants in `$LEDGERDATA/pubnet-variants`,
//! default `/work/shared/ledgerdata`, else the one variant in `tests/data`); with `extract`, the
//! same comparison for `extract_row` on the ledgers of those batches; with `once
//! interpreter|generated`, one split of each of those batches (for callgrind).

use std::hint::black_box;
use std::path::Path;
use std::time::{Duration, Instant};

use bronze_ledger::{
    DEFAULT_DEPTH_LIMIT, Engine, RECURSION_BUDGET, encode_batch, extract_row, extract_row_with,
    header_hash_matches, split_batch, split_batch_with, validate_lcm,
};
use stellar_xdr::{LedgerCloseMetaBatch, Limits, ReadXdr};

/// Run `f` repeatedly for about `budget`; return the fastest per-call time in ns. The minimum
/// is reported because the benchmark machine is shared: slower runs measure other processes.
fn time(label: &str, budget: Duration, mut f: impl FnMut()) -> f64 {
    // Warm up (and fault in the schema's LazyLock).
    for _ in 0..3 {
        f();
    }
    let mut samples = Vec::new();
    let start = Instant::now();
    while start.elapsed() < budget {
        let t = Instant::now();
        for _ in 0..10 {
            f();
        }
        samples.push(t.elapsed().as_nanos() as f64 / 10.0);
    }
    samples.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let (min, median) = (samples[0], samples[samples.len() / 2]);
    println!(
        "{label:<44} {min:>10.0} ns/ledger min {median:>10.0} median ({} x10 runs)",
        samples.len()
    );
    min
}

fn unzstd(path: &Path) -> Vec<u8> {
    zstd::stream::decode_all(std::fs::File::open(path).unwrap()).unwrap()
}

/// Pubnet batches: the real ledger 53,312,000 plus each pubnet variant as a one-ledger batch.
fn pubnet_batches(batch: &[u8]) -> Vec<Vec<u8>> {
    let data = std::env::var("LEDGERDATA").unwrap_or_else(|_| "/work/shared/ledgerdata".into());
    let mut dir = Path::new(&data).join("pubnet-variants");
    if !dir.is_dir() {
        dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/pubnet-variants");
    }
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(".xdr.zst"))
        .collect();
    files.sort();
    let mut out = vec![batch.to_vec()];
    for f in files {
        out.push(encode_batch(1, 1, &[&unzstd(&f)]));
    }
    out
}

/// The engines the comparisons time, in the order of their results.
const ENGINES: [(&str, Engine); 2] = [
    ("interpreter", Engine::Interpreter),
    ("generated", Engine::Generated),
];

/// Runs `work` once per engine, interleaved, for about twice `budget`; returns each engine's
/// minimum ns per ledger (`work` covers `ledgers` ledgers) and the number of rounds. The
/// minimum, because the machine is shared: slower rounds measure other processes.
fn interleaved_min(
    budget: Duration,
    ledgers: usize,
    mut work: impl FnMut(Engine),
) -> ([f64; 2], u32) {
    let mut best = [f64::MAX; 2];
    let start = Instant::now();
    let mut rounds = 0;
    while start.elapsed() < budget * 2 {
        for (k, &(_, engine)) in ENGINES.iter().enumerate() {
            let t = Instant::now();
            work(engine);
            best[k] = best[k].min(t.elapsed().as_nanos() as f64 / ledgers as f64);
        }
        rounds += 1;
    }
    (best, rounds)
}

/// `split_batch` with the interpreter vs the generated walker, interleaved in the same run so
/// that machine noise hits both; min ns per ledger over all rounds.
fn compare_walkers(batch: &[u8], budget: Duration) {
    let batches = pubnet_batches(batch);
    let ledgers: usize = batches
        .iter()
        .map(|b| split_batch(b).unwrap().ledgers.len())
        .sum();
    let bytes: usize = batches.iter().map(Vec::len).sum();
    println!(
        "walkers: {} batches, {ledgers} ledgers, {:.1} MB",
        batches.len(),
        bytes as f64 / 1e6
    );
    let (best, rounds) = interleaved_min(budget, ledgers, |engine| {
        for b in &batches {
            black_box(split_batch_with(black_box(b), engine).unwrap());
        }
    });
    for (k, (name, _)) in ENGINES.iter().enumerate() {
        println!(
            "split_batch, {name:<12} {:>10.0} ns/ledger min  ({:.2} GB/s, {rounds} rounds)",
            best[k],
            bytes as f64 / ledgers as f64 / best[k]
        );
    }
    println!("interpreter / generated = {:.2}x", best[0] / best[1]);
}

/// `extract_row` with the interpreter vs the generated walker for the skipped fields,
/// interleaved like [`compare_walkers`]; min ns per ledger over all rounds.
fn compare_extract(batch: &[u8], budget: Duration) {
    let batches = pubnet_batches(batch);
    let views: Vec<_> = batches.iter().map(|b| split_batch(b).unwrap()).collect();
    let ledgers: Vec<&[u8]> = views
        .iter()
        .flat_map(|v| v.ledgers.iter().copied())
        .collect();
    for &(_, engine) in &ENGINES {
        for l in &ledgers {
            assert_eq!(
                extract_row_with(l, DEFAULT_DEPTH_LIMIT, engine, RECURSION_BUDGET),
                extract_row(l)
            );
        }
    }
    let (best, rounds) = interleaved_min(budget, 10 * ledgers.len(), |engine| {
        for _ in 0..10 {
            for l in &ledgers {
                black_box(
                    extract_row_with(black_box(l), DEFAULT_DEPTH_LIMIT, engine, RECURSION_BUDGET)
                        .unwrap(),
                );
            }
        }
    });
    println!("extract: {} ledgers", ledgers.len());
    for (k, (name, _)) in ENGINES.iter().enumerate() {
        println!(
            "extract_row, {name:<12} {:>10.0} ns/ledger min  ({rounds} rounds)",
            best[k]
        );
    }
    println!(
        "extract_row interpreter / generated = {:.2}x",
        best[0] / best[1]
    );
}

fn main() {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/pubnet/FCD285FF--53312000.xdr.zstd");
    let batch = unzstd(&path);
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("walkers") => return compare_walkers(&batch, Duration::from_secs(3)),
        Some("extract") => return compare_extract(&batch, Duration::from_secs(3)),
        // One split of every pubnet batch, for instruction counts that machine noise cannot
        // blur: `valgrind --tool=callgrind --toggle-collect='*split_batch_with*' <this> once
        // interpreter` (or `generated`).
        Some("once") => {
            let engine = match args.get(1).map(String::as_str) {
                Some("interpreter") => Engine::Interpreter,
                _ => Engine::Generated,
            };
            // Compile the schema outside of the measured function.
            validate_lcm(&[]).unwrap_err();
            for b in pubnet_batches(&batch) {
                black_box(split_batch_with(black_box(&b), engine).unwrap());
            }
            return;
        }
        _ => {}
    }
    let view = split_batch(&batch).unwrap();
    let lcm = view.ledgers[0];
    let row = extract_row(lcm).unwrap();
    println!(
        "ledger {} : {} bytes of LCM XDR, {} txs, {} ops",
        row.ledger_sequence,
        lcm.len(),
        row.tx_count,
        row.operation_count
    );
    let budget = Duration::from_secs(3);
    compare_walkers(&batch, budget);
    compare_extract(&batch, budget);

    let ours = time("ours: split_batch + extract_row", budget, || {
        let v = split_batch(black_box(&batch)).unwrap();
        for l in &v.ledgers {
            black_box(extract_row(l).unwrap());
        }
    });
    time("ours: validate_lcm only", budget, || {
        validate_lcm(black_box(lcm)).unwrap();
    });
    time("ours: extract_row only", budget, || {
        black_box(extract_row(black_box(lcm)).unwrap());
    });
    time("ours: header_hash_matches", budget, || {
        assert!(header_hash_matches(black_box(lcm)).unwrap());
    });
    let theirs = time(
        "stellar-xdr: LedgerCloseMetaBatch::from_xdr",
        budget,
        || {
            black_box(
                LedgerCloseMetaBatch::from_xdr(black_box(&batch), Limits::depth(500)).unwrap(),
            );
        },
    );
    println!(
        "full decode / ours = {:.1}x  ({:.1} MB/s ours)",
        theirs / ours,
        lcm.len() as f64 / ours * 1e3
    );

    // For scale: a 1.8 MB synthetic Soroban-heavy ledger (record-marked stream, first big one).
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/standalone-loadtest/load-test-ledgers-v24.xdr.zstd");
    let stream = zstd::stream::decode_all(std::fs::File::open(&path).unwrap()).unwrap();
    let (mut at, mut big) = (0, &stream[..0]);
    while at < stream.len() {
        let len =
            (u32::from_be_bytes(stream[at..at + 4].try_into().unwrap()) & 0x7fff_ffff) as usize;
        if len > big.len() {
            big = &stream[at + 4..at + 4 + len];
        }
        at += 4 + len;
    }
    println!("load-test ledger: {} bytes", big.len());
    let ours = time("ours: validate_lcm + extract_row", budget, || {
        validate_lcm(black_box(big)).unwrap();
        black_box(extract_row(big).unwrap());
    });
    let theirs = time("stellar-xdr: LedgerCloseMeta::from_xdr", budget, || {
        black_box(
            stellar_xdr::LedgerCloseMeta::from_xdr(black_box(big), Limits::depth(500)).unwrap(),
        );
    });
    println!("full decode / ours = {:.1}x", theirs / ours);
}
