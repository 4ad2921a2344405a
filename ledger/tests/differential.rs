//! The generated LedgerCloseMeta walker (`src/walk_gen.rs`) against the interpreter it was
//! generated from: on every sample ledger and on many mutated and truncated variants, both
//! must return the same verdict, the same end position (checked through `split_batch`, whose
//! slices are the end positions) and the same `XdrError` (kind, offset, type, path), also with
//! small depth limits and with small recursion budgets that send values to the heap-stack
//! machine.

mod common;

use bronze_ledger::{
    DEFAULT_DEPTH_LIMIT, Engine, RECURSION_BUDGET, XdrError, encode_batch, split_batch_with,
    validate_xdr_with,
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
