//! Deterministic mutation fuzzing of real ledgers against the stellar-xdr oracle.
//!
//! For every mutant: nothing panics; `validate_lcm` accepts exactly when stellar-xdr decodes it
//! and re-encodes to the same bytes (the only inputs stellar-xdr decodes but does not
//! round-trip are bools other than 0/1, which we reject by design: then the error must be
//! `BadBool`); accepted mutants give the same row as the oracle; the generated walker
//! (`validate_lcm`) and the heap-stack interpreter return identical results.

mod common;

use std::collections::BTreeMap;

use bronze_ledger::{
    ErrorKind, encode_batch, extract_row, header_hash_matches, header_layout, split_batch,
    validate_lcm, validate_xdr_heap_only,
};
use common::{Rng, limits, mutate, oracle_row, small_lcm};
use stellar_xdr::{LedgerCloseMeta, LedgerCloseMetaBatch, ReadXdr, WriteXdr};

/// Short name of an error kind, for the tally.
fn kind_name(k: ErrorKind) -> String {
    format!("{k:?}")
        .split([' ', '{'])
        .next()
        .unwrap()
        .to_string()
}

/// Check one mutant against the oracle. Returns whether it was accepted; counts the error
/// kinds seen in `tally`.
fn check(m: &[u8], what: &str, tally: &mut BTreeMap<String, usize>) -> bool {
    let ours = validate_lcm(m);
    let heap = validate_xdr_heap_only("LedgerCloseMeta", m, bronze_ledger::DEFAULT_DEPTH_LIMIT);
    assert_eq!(
        ours, heap,
        "{what}: the generated walker and the heap-stack interpreter disagree"
    );
    if let Err(e) = &ours {
        *tally.entry(kind_name(e.kind)).or_default() += 1;
    }
    let theirs = LedgerCloseMeta::from_xdr(m, limits());
    // The partial readers must never panic, whatever the bytes.
    let row = extract_row(m);
    let _ = header_layout(m);
    let _ = header_hash_matches(m);

    match (&ours, &theirs) {
        (Ok(()), Ok(decoded)) => {
            assert_eq!(
                decoded.to_xdr(limits()).unwrap(),
                m,
                "{what}: accepted non-canonical"
            );
            assert_eq!(row.as_ref().unwrap(), &oracle_row(decoded), "{what}");
            true
        }
        (Ok(()), Err(e)) => panic!("{what}: we accept what stellar-xdr rejects ({e})"),
        (Err(err), Ok(decoded)) => {
            let canonical = decoded.to_xdr(limits()).unwrap() == m;
            assert!(!canonical, "{what}: we reject a valid canonical LCM: {err}");
            assert!(
                matches!(err.kind, ErrorKind::BadBool { .. }),
                "{what}: non-canonical for another reason than a bool: {err}"
            );
            false
        }
        (Err(_), Err(_)) => false,
    }
}

fn fuzz(
    name: &str,
    lcm: &[u8],
    iterations: usize,
    seed: u64,
    tally: &mut BTreeMap<String, usize>,
) -> (usize, usize) {
    assert!(
        check(lcm, name, tally),
        "{name}: the unmutated sample must be accepted"
    );
    let mut rng = Rng(seed);
    let mut accepted = 0;
    for i in 0..iterations {
        let m = mutate(&mut rng, lcm);
        if check(&m, &format!("{name} mutant {i}"), tally) {
            accepted += 1;
        }
    }
    (accepted, iterations)
}

#[test]
fn fuzz_small_ledgers() {
    let names = [
        "v0-protocol-0",
        "v0-protocol-19",
        "v1-protocol-20-soroban",
        "v1-protocol-21",
        "v2-protocol-23-soroban",
        "v2-protocol-28-soroban",
    ];
    let mut total_accepted = 0;
    let mut tally = BTreeMap::new();
    for (k, name) in names.iter().enumerate() {
        let lcm = small_lcm(name);
        let seed = 0x9E37_79B9_7F4A_7C15 ^ k as u64;
        let (acc, n) = fuzz(name, &lcm, 4_000, seed, &mut tally);
        println!("{name}: {acc}/{n} mutants accepted");
        total_accepted += acc;
    }
    println!("rejections by kind: {tally:?}");
    // Sanity: the mutator must also produce valid ledgers (mutated hashes, amounts, ...),
    // or the "accepts => stellar-xdr accepts" direction would go untested; and it must reach
    // the interesting rejections, not only truncations.
    assert!(
        total_accepted > 1_000,
        "only {total_accepted} mutants accepted"
    );
    for kind in [
        "UnexpectedEnd",
        "TrailingBytes",
        "BadDiscriminant",
        "BadEnumValue",
        "LengthExceedsMax",
        "BadOptionalFlag",
        "NonZeroPadding",
    ] {
        assert!(
            tally.get(kind).copied().unwrap_or(0) > 0,
            "no {kind} seen: {tally:?}"
        );
    }
}

#[test]
fn fuzz_pubnet_ledger() {
    let lcm = common::pubnet_lcm();
    let mut tally = BTreeMap::new();
    let (acc, n) = fuzz("pubnet 53312000", &lcm, 150, 42, &mut tally);
    println!("pubnet: {acc}/{n} mutants accepted; rejections by kind: {tally:?}");
}

#[test]
fn fuzz_batches() {
    let a = small_lcm("v1-protocol-21");
    let b = small_lcm("v2-protocol-25");
    let batch = encode_batch(10, 11, &[&a, &b]);
    let mut rng = Rng(7);
    for i in 0..1_000 {
        let m = mutate(&mut rng, &batch);
        let ours = split_batch(&m);
        let theirs = LedgerCloseMetaBatch::from_xdr(&m, limits());
        match (&ours, &theirs) {
            (Ok(view), Ok(decoded)) => {
                assert_eq!(decoded.to_xdr(limits()).unwrap(), m, "batch mutant {i}");
                assert_eq!(view.ledgers.len(), decoded.ledger_close_metas.len());
                for (slice, lcm) in view.ledgers.iter().zip(decoded.ledger_close_metas.iter()) {
                    assert_eq!(
                        *slice,
                        &lcm.to_xdr(limits()).unwrap()[..],
                        "batch mutant {i}"
                    );
                }
            }
            (Ok(_), Err(e)) => panic!("batch mutant {i}: accepted, stellar-xdr says {e}"),
            (Err(err), Ok(decoded)) => {
                assert_ne!(
                    decoded.to_xdr(limits()).unwrap(),
                    m,
                    "batch mutant {i}: {err}"
                );
                assert!(matches!(err.kind, ErrorKind::BadBool { .. }), "{err}");
            }
            (Err(_), Err(_)) => {}
        }
    }
}
