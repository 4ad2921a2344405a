//! The generated LedgerCloseMeta walker (`src/walk_gen.rs`) against the interpreter it was
//! generated from: on every sample ledger and on many mutated and truncated variants, both
//! must return the same verdict, the same end position (checked through `split_batch`, whose
//! slices are the end positions) and the same `XdrError` (kind, offset, type, path), also with
//! small depth limits and with small recursion budgets that send values to the heap-stack
//! machine. The same for `extract_row`, whose hand navigation skips transaction envelopes,
//! operations, memos, ... with `Walker::skip` (generated code or interpreter by engine), and
//! for other types validated on their own.

mod common;

use bronze_ledger::{
    DEFAULT_DEPTH_LIMIT, Engine, ErrorKind, LedgerRow, RECURSION_BUDGET, XdrError, encode_batch,
    extract_row, extract_row_with, split_batch_with, validate_xdr_with,
};
use common::{Rng, lcm_samples, loadtest_samples, mutate};

const LCM: &str = "LedgerCloseMeta";

/// Both walkers on `xdr` with `limit` and `budget`: identical results.
fn same(xdr: &[u8], limit: u32, budget: u32, what: &str) -> bool {
    verdict(xdr, limit, budget, what).is_ok()
}

fn verdict(xdr: &[u8], limit: u32, budget: u32, what: &str) -> Result<(), XdrError> {
    let generated = validate_xdr_with(LCM, xdr, limit, Engine::Generated, budget);
    let interpreted = validate_xdr_with(LCM, xdr, limit, Engine::Interpreter, budget);
    assert_eq!(
        generated, interpreted,
        "{what} (depth limit {limit}, budget {budget})"
    );
    generated
}

/// Both walkers splitting a batch: identical slices (so identical end positions) or errors.
fn same_split(batch: &[u8], what: &str) {
    let generated = split_batch_with(batch, Engine::Generated);
    let interpreted = split_batch_with(batch, Engine::Interpreter);
    assert_eq!(generated, interpreted, "{what}");
}

fn samples() -> Vec<(String, Vec<u8>)> {
    lcm_samples()
        .into_iter()
        .chain(loadtest_samples())
        .collect()
}

/// Mutants per sample: many for small ledgers, fewer for the big ones (debug builds are slow).
fn mutants_for(len: usize) -> usize {
    match len {
        0..=20_000 => 300,
        20_001..=400_000 => 40,
        _ => 10,
    }
}

#[test]
fn samples_and_mutants_agree() {
    let mut accepted = 0;
    let mut rejected = 0;
    for (k, (name, lcm)) in samples().into_iter().enumerate() {
        assert!(same(&lcm, DEFAULT_DEPTH_LIMIT, RECURSION_BUDGET, &name));
        // Whole ledgers as batch members: the same slices.
        same_split(&encode_batch(1, 2, &[&lcm, &lcm]), &name);
        let mut rng = Rng(0xD1FF ^ (k as u64) << 8);
        for i in 0..mutants_for(lcm.len()) {
            let m = mutate(&mut rng, &lcm);
            let what = format!("{name} mutant {i}");
            if same(&m, DEFAULT_DEPTH_LIMIT, RECURSION_BUDGET, &what) {
                accepted += 1;
            } else {
                rejected += 1;
            }
            if i % 8 == 0 {
                same_split(&encode_batch(1, 2, &[&lcm, &m]), &what);
            }
        }
    }
    println!("{accepted} mutants accepted, {rejected} rejected by both");
    assert!(accepted > 100 && rejected > 1_000, "{accepted}/{rejected}");
}

#[test]
fn truncations_agree() {
    for (name, lcm) in samples() {
        // Every prefix of small ledgers, about 200 spread over big ones.
        let step = (lcm.len() / 200).max(1);
        for n in (0..lcm.len()).step_by(step) {
            assert!(!same(
                &lcm[..n],
                DEFAULT_DEPTH_LIMIT,
                RECURSION_BUDGET,
                &name
            ));
        }
    }
}

/// Small depth limits: the generated walker must fail at the same item with the same
/// `DepthExceeded`, and accept from the same limit on.
#[test]
fn depth_limits_agree() {
    for (name, lcm) in samples() {
        let mut first_ok = None;
        for limit in 0..64 {
            if same(&lcm, limit, RECURSION_BUDGET, &name) && first_ok.is_none() {
                first_ok = Some(limit);
            }
        }
        assert!(first_ok.is_some(), "{name} needs more than 63 frames");
    }
    // And mutants under tight limits.
    let (name, lcm) = lcm_samples().swap_remove(0);
    let mut rng = Rng(99);
    for i in 0..500 {
        let m = mutate(&mut rng, &lcm);
        let limit = 5 + rng.below(30) as u32;
        same(&m, limit, RECURSION_BUDGET, &format!("{name} mutant {i}"));
    }
}

/// Small recursion budgets hand nested values to the heap-stack machine at every possible
/// level: the generated walker's fallback must redo them exactly as the interpreter's does.
#[test]
fn heap_fallback_agrees() {
    for (name, lcm) in samples() {
        for budget in [0, 1, 2, 3, 5, 8] {
            assert!(same(&lcm, DEFAULT_DEPTH_LIMIT, budget, &name));
        }
    }
    for (k, (name, lcm)) in lcm_samples().into_iter().take(12).enumerate() {
        let mut rng = Rng(0xFA11 + k as u64);
        for i in 0..100 {
            let m = mutate(&mut rng, &lcm);
            let budget = rng.below(6) as u32;
            let limit = if i % 2 == 0 {
                DEFAULT_DEPTH_LIMIT
            } else {
                8 + rng.below(20) as u32
            };
            let what = format!("{name} mutant {i}");
            let r = verdict(&m, limit, budget, &what);
            // The heap-only machine agrees too.
            let heap = validate_xdr_with(LCM, &m, limit, Engine::HeapOnly, budget);
            assert_eq!(heap, r, "{what}");
        }
    }
}

// --- extract_row (the hand navigation's skips) -------------------------------------------------

/// `extract_row` under both walkers (and the heap machine alone) with `limit` and `budget`:
/// identical rows or errors.
fn row(lcm: &[u8], limit: u32, budget: u32, what: &str) -> Result<LedgerRow, XdrError> {
    let generated = extract_row_with(lcm, limit, Engine::Generated, budget);
    let interpreted = extract_row_with(lcm, limit, Engine::Interpreter, budget);
    assert_eq!(
        generated, interpreted,
        "extract_row: {what} (depth limit {limit}, budget {budget})"
    );
    let heap = extract_row_with(lcm, limit, Engine::HeapOnly, budget);
    assert_eq!(heap, generated, "extract_row heap only: {what}");
    generated
}

/// A mutant of `lcm`; half of them confined to its first half, where the header and the
/// transaction set (all that `extract_row` walks) mostly are.
fn mutant(rng: &mut Rng, lcm: &[u8]) -> Vec<u8> {
    if rng.below(2) == 0 {
        mutate(rng, lcm)
    } else {
        let half = lcm.len() / 2 / 4 * 4;
        let mut m = mutate(rng, &lcm[..half]);
        m.extend_from_slice(&lcm[half..]);
        m
    }
}

#[test]
fn extract_row_samples_and_mutants_agree() {
    let (mut accepted, mut rejected) = (0, 0);
    for (k, (name, lcm)) in samples().into_iter().enumerate() {
        let r = row(&lcm, DEFAULT_DEPTH_LIMIT, RECURSION_BUDGET, &name);
        assert_eq!(
            r,
            extract_row(&lcm),
            "{name}: the default is the generated walker"
        );
        r.unwrap_or_else(|e| panic!("{name}: {e}"));
        let mut rng = Rng(0xE7AC ^ (k as u64) << 8);
        for i in 0..mutants_for(lcm.len()) {
            let m = mutant(&mut rng, &lcm);
            let what = format!("{name} mutant {i}");
            match row(&m, DEFAULT_DEPTH_LIMIT, RECURSION_BUDGET, &what) {
                Ok(_) => accepted += 1,
                Err(_) => rejected += 1,
            }
        }
    }
    println!("extract_row: {accepted} mutants accepted, {rejected} rejected by both");
    assert!(accepted > 100 && rejected > 1_000, "{accepted}/{rejected}");
}

#[test]
fn extract_row_truncations_agree() {
    for (name, lcm) in samples() {
        let step = (lcm.len() / 200).max(1);
        for n in (0..lcm.len()).step_by(step) {
            // A prefix may still hold all that extract_row walks; only agreement matters.
            let _ = row(&lcm[..n], DEFAULT_DEPTH_LIMIT, RECURSION_BUDGET, &name);
        }
    }
}

/// Small depth limits fail at the same skipped field with the same `DepthExceeded`; small
/// budgets send skipped values to the heap machine at every level.
#[test]
fn extract_row_depth_limits_and_budgets_agree() {
    for (name, lcm) in samples() {
        let mut first_ok = None;
        for limit in 0..48 {
            if row(&lcm, limit, RECURSION_BUDGET, &name).is_ok() && first_ok.is_none() {
                first_ok = Some(limit);
            }
        }
        assert!(first_ok.is_some(), "{name} needs more than 47 frames");
        for budget in [0, 1, 2, 3, 5, 8] {
            row(&lcm, DEFAULT_DEPTH_LIMIT, budget, &name).unwrap();
        }
    }
    for (k, (name, lcm)) in lcm_samples().into_iter().take(12).enumerate() {
        let mut rng = Rng(0xDE97 + k as u64);
        for i in 0..100 {
            let m = mutant(&mut rng, &lcm);
            let budget = rng.below(6) as u32;
            let limit = if i % 2 == 0 {
                DEFAULT_DEPTH_LIMIT
            } else {
                6 + rng.below(24) as u32
            };
            let _ = row(&m, limit, budget, &format!("{name} mutant {i}"));
        }
    }
}

// --- other types on their own ------------------------------------------------------------------

/// Types the hand navigation skips (and so now walks with generated code), validated alone
/// from every 4-byte-aligned offset of small ledgers and their mutants: mostly errors, some
/// accepted values (`TrailingBytes` carries the end position), all identical under both
/// walkers, also with small budgets.
#[test]
fn other_types_agree() {
    const TYPES: [&str; 14] = [
        "TransactionEnvelope",
        "TransactionV1Envelope",
        "Transaction",
        "Memo",
        "Preconditions",
        "LedgerHeader",
        "StellarValue",
        "LedgerHeaderHistoryEntry",
        "GeneralizedTransactionSet",
        "TransactionPhase",
        "TransactionResultMeta",
        "LedgerEntry",
        "SCVal",
        "Operation",
    ];
    let mut accepted = 0;
    let mut rng = Rng(0x07E4);
    for (name, lcm) in lcm_samples().into_iter().filter(|(_, l)| l.len() < 20_000) {
        let variants = [lcm.clone(), mutate(&mut rng, &lcm), mutate(&mut rng, &lcm)];
        for (v, buf) in variants.iter().enumerate() {
            for start in (0..buf.len()).step_by(4) {
                for ty in TYPES {
                    let what = format!("{ty} at {start} of {name} variant {v}");
                    let budget = if start % 3 == 0 { 1 } else { RECURSION_BUDGET };
                    let generated =
                        validate_xdr_with(ty, &buf[start..], 40, Engine::Generated, budget);
                    let interpreted =
                        validate_xdr_with(ty, &buf[start..], 40, Engine::Interpreter, budget);
                    assert_eq!(generated, interpreted, "{what}");
                    if generated.as_ref().map_or_else(
                        |e| matches!(e.kind, ErrorKind::TrailingBytes { .. }),
                        |()| true,
                    ) {
                        accepted += 1;
                    }
                }
            }
        }
    }
    println!("{accepted} values accepted (maybe with trailing bytes) by both");
    assert!(accepted > 100, "{accepted}");
}
