//! Positive tests on real ledgers, checked against a full stellar-xdr decode.

mod common;

use std::io::Cursor;

use bronze_ledger::{
    DEFAULT_DEPTH_LIMIT, ErrorKind, encode_batch, extract_row, header_hash_matches, header_layout,
    relink_header, split_batch, validate_lcm, validate_xdr_heap_only,
};
use common::{batches, lcm_samples, limits, loadtest_samples, oracle_row};
use sha2::{Digest, Sha256};
use stellar_xdr::{LedgerCloseMeta, LedgerCloseMetaBatch, Limited, ReadXdr};

/// For each sample: stellar-xdr decodes it, we validate it, every row field matches the oracle,
/// and our skip ends exactly where stellar-xdr's reader stops.
fn check_sample(name: &str, lcm: &[u8], expect_hash_ok: bool) -> (u32, u32) {
    let decoded = LedgerCloseMeta::from_xdr(lcm, limits())
        .unwrap_or_else(|e| panic!("{name}: stellar-xdr rejects the sample: {e}"));
    validate_lcm(lcm).unwrap_or_else(|e| panic!("{name}: {e}"));
    // The heap-stack interpreter (used past the recursion budget) agrees on real data too.
    validate_xdr_heap_only("LedgerCloseMeta", lcm, DEFAULT_DEPTH_LIMIT)
        .unwrap_or_else(|e| panic!("{name} (heap-stack interpreter): {e}"));
    let row = extract_row(lcm).unwrap_or_else(|e| panic!("{name}: {e}"));
    assert_eq!(row, oracle_row(&decoded), "{name}");

    // Same consumption as stellar-xdr when more bytes follow: append junk, compare where each
    // stops.
    let mut padded = lcm.to_vec();
    padded.extend_from_slice(&[0xAB; 12]);
    let mut cur = Limited::new(Cursor::new(&padded[..]), limits());
    LedgerCloseMeta::read_xdr(&mut cur).unwrap();
    let theirs = cur.inner.position() as usize;
    let err = validate_lcm(&padded).unwrap_err();
    assert_eq!(
        err.kind,
        ErrorKind::TrailingBytes { remaining: 12 },
        "{name}"
    );
    assert_eq!(err.offset, theirs, "{name}: consumed bytes differ");

    if expect_hash_ok {
        assert!(header_hash_matches(lcm).unwrap(), "{name}: header hash");
    }
    (row.tx_count, row.tx_processing_count)
}

#[test]
fn real_samples_match_stellar_xdr() {
    let samples = lcm_samples();
    assert!(samples.len() >= 17, "only {} samples", samples.len());
    let mut versions = [0usize; 3];
    for (name, lcm) in &samples {
        let (txs, processed) = check_sample(name, lcm, true);
        // Product requirement: the worker cross-checks these; they agree on all real data.
        assert_eq!(txs, processed, "{name}: tx_count != tx_processing_count");
        versions[extract_row(lcm).unwrap().lcm_version as usize] += 1;
    }
    // The samples exercise all three LedgerCloseMeta versions.
    assert!(versions.iter().all(|&n| n > 0), "{versions:?}");
}

#[test]
fn pubnet_ledger_known_values() {
    let lcm = common::pubnet_lcm();
    assert_eq!(lcm.len(), 372_480);
    let row = extract_row(&lcm).unwrap();
    assert_eq!(row.ledger_sequence, 53_312_000);
    assert_eq!(row.lcm_version, 1);
    assert_eq!(row.protocol_version, 21);
    assert_eq!(row.tx_count, 163);
    // 2024-09-02 (UTC)
    assert!(
        (1_725_235_200..1_725_321_600).contains(&row.close_time),
        "{}",
        row.close_time
    );
}

#[test]
fn loadtest_ledgers_validate() {
    let samples = loadtest_samples();
    let big = samples.iter().filter(|(_, l)| l.len() > 1_500_000).count();
    assert!(big >= 4, "only {big} large load-test ledgers");
    for (name, lcm) in &samples {
        // Synthetic: their hashes do not chain, so no header-hash expectation.
        let (txs, processed) = check_sample(name, lcm, false);
        assert_eq!(txs, processed, "{name}");
    }
}

#[test]
fn real_batches_split_like_stellar_xdr() {
    for (name, batch) in batches() {
        let view = split_batch(&batch).unwrap_or_else(|e| panic!("{name}: {e}"));
        let decoded = LedgerCloseMetaBatch::from_xdr(&batch, limits()).unwrap();
        assert_eq!(view.start_sequence, decoded.start_sequence, "{name}");
        assert_eq!(view.end_sequence, decoded.end_sequence, "{name}");
        assert_eq!(
            view.ledgers.len(),
            decoded.ledger_close_metas.len(),
            "{name}"
        );
        for (slice, lcm) in view.ledgers.iter().zip(decoded.ledger_close_metas.iter()) {
            assert_eq!(
                *slice,
                &stellar_xdr::WriteXdr::to_xdr(lcm, limits()).unwrap()[..],
                "{name}"
            );
            assert_eq!(extract_row(slice).unwrap(), oracle_row(lcm), "{name}");
        }
    }
}

#[test]
fn multi_ledger_batch_splits_into_its_inputs() {
    let samples = lcm_samples();
    let parts: Vec<&[u8]> = samples.iter().map(|(_, l)| &l[..]).collect();
    let batch = encode_batch(7, 7 + parts.len() as u32 - 1, &parts);
    let view = split_batch(&batch).unwrap();
    assert_eq!(view.start_sequence, 7);
    assert_eq!(view.end_sequence, 7 + parts.len() as u32 - 1);
    assert_eq!(view.ledgers, parts);
    // The slices borrow from the batch, in place.
    let mut at = 12;
    for l in &view.ledgers {
        assert!(std::ptr::eq(l.as_ptr(), batch[at..].as_ptr()));
        at += l.len();
    }
    // stellar-xdr agrees the encoding is a valid batch.
    let decoded = LedgerCloseMetaBatch::from_xdr(&batch, limits()).unwrap();
    assert_eq!(decoded.ledger_close_metas.len(), parts.len());

    let empty = encode_batch(1, 0, &[]);
    assert_eq!(split_batch(&empty).unwrap().ledgers.len(), 0);
}

#[test]
fn header_layout_points_at_the_fields() {
    for (name, lcm) in lcm_samples() {
        let l = header_layout(&lcm).unwrap();
        let row = extract_row(&lcm).unwrap();
        let d = LedgerCloseMeta::from_xdr(&lcm, limits()).unwrap();
        let lhhe = match &d {
            LedgerCloseMeta::V0(v) => &v.ledger_header,
            LedgerCloseMeta::V1(v) => &v.ledger_header,
            LedgerCloseMeta::V2(v) => &v.ledger_header,
        };
        let header_xdr = stellar_xdr::WriteXdr::to_xdr(&lhhe.header, limits()).unwrap();
        assert_eq!(&lcm[l.header_range()], &header_xdr[..], "{name}");
        assert_eq!(lcm[l.hash..l.hash + 32], row.ledger_hash, "{name}");
        assert_eq!(
            lcm[l.previous_ledger_hash..][..32],
            row.previous_ledger_hash
        );
        assert_eq!(lcm[l.tx_set_hash..][..32], row.tx_set_hash);
        assert_eq!(lcm[l.close_time..][..8], row.close_time.to_be_bytes());
        assert_eq!(lcm[l.ledger_seq..][..4], row.ledger_sequence.to_be_bytes());
    }
}

#[test]
fn relink_builds_a_consistent_chain() {
    let samples = lcm_samples();
    let mut prev = [7u8; 32];
    for (i, (name, lcm)) in samples.iter().enumerate() {
        let mut l = lcm.clone();
        let seq = 1_000 + i as u32;
        let hash = relink_header(&mut l, seq, &prev, 1_700_000_000 + 5 * i as u64).unwrap();
        let row = extract_row(&l).unwrap();
        assert_eq!(row.ledger_sequence, seq, "{name}");
        assert_eq!(row.previous_ledger_hash, prev, "{name}");
        assert_eq!(row.close_time, 1_700_000_000 + 5 * i as u64, "{name}");
        assert_eq!(row.ledger_hash, hash, "{name}");
        assert!(header_hash_matches(&l).unwrap(), "{name}");
        let layout = header_layout(&l).unwrap();
        assert_eq!(Sha256::digest(&l[layout.header_range()]).as_slice(), hash);
        validate_lcm(&l).unwrap();
        LedgerCloseMeta::from_xdr(&l, limits()).unwrap();
        prev = hash;
    }
}

#[test]
fn header_hash_mismatch_is_detected() {
    let mut lcm = common::small_lcm("v1-protocol-21");
    assert!(header_hash_matches(&lcm).unwrap());
    let l = header_layout(&lcm).unwrap();
    lcm[l.ledger_seq + 3] ^= 1;
    assert!(!header_hash_matches(&lcm).unwrap());
}
