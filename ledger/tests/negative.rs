//! Corrupt, truncated and adversarial inputs: every one must fail cleanly (no panic) with the
//! right error kind, and agree with stellar-xdr on what is invalid.

mod common;

use std::time::Instant;

use bronze_ledger::{
    ErrorKind, encode_batch, extract_row, header_hash_matches, header_layout, split_batch,
    validate_lcm, validate_xdr,
};
use common::{limits, small_lcm};
use stellar_xdr::{LedgerCloseMeta, ReadXdr, ScVal, TransactionEnvelope, WriteXdr};

fn set_u32(b: &mut [u8], at: usize, v: u32) {
    b[at..at + 4].copy_from_slice(&v.to_be_bytes());
}

fn find(haystack: &[u8], needle: &[u8], from: usize) -> usize {
    from + haystack[from..]
        .windows(needle.len())
        .position(|w| w == needle)
        .expect("needle present")
}

/// Offset and value of the first transaction envelope of a real LCM, located by searching for
/// stellar-xdr's own encoding of it after the header.
fn first_envelope(lcm: &[u8]) -> (usize, TransactionEnvelope) {
    let decoded = LedgerCloseMeta::from_xdr(lcm, limits()).unwrap();
    let env = match &decoded {
        LedgerCloseMeta::V0(v) => v.tx_set.txs[0].clone(),
        LedgerCloseMeta::V1(v) => first_generalized(&v.tx_set),
        LedgerCloseMeta::V2(v) => first_generalized(&v.tx_set),
    };
    let bytes = env.to_xdr(limits()).unwrap();
    let after_header = header_layout(lcm).unwrap().header_end;
    (find(lcm, &bytes, after_header), env)
}

fn first_generalized(set: &stellar_xdr::GeneralizedTransactionSet) -> TransactionEnvelope {
    let stellar_xdr::GeneralizedTransactionSet::V1(v1) = set;
    for phase in v1.phases.iter() {
        match phase {
            stellar_xdr::TransactionPhase::V0(cs) => {
                for c in cs.iter() {
                    let stellar_xdr::TxSetComponent::TxsetCompTxsMaybeDiscountedFee(c) = c;
                    if let Some(e) = c.txs.first() {
                        return e.clone();
                    }
                }
            }
            stellar_xdr::TransactionPhase::V1(p) => {
                if let Some(e) = p
                    .execution_stages
                    .iter()
                    .flat_map(|s| s.0.iter())
                    .flat_map(|c| c.0.iter())
                    .next()
                {
                    return e.clone();
                }
            }
        }
    }
    panic!("no envelope in tx set")
}

#[test]
fn every_truncation_fails_cleanly() {
    for name in [
        "v0-protocol-19",
        "v1-protocol-22-soroban",
        "v2-protocol-23-soroban",
    ] {
        let lcm = small_lcm(name);
        validate_lcm(&lcm).unwrap();
        let full = extract_row(&lcm).unwrap();
        for len in 0..lcm.len() {
            let prefix = &lcm[..len];
            let err = validate_lcm(prefix).expect_err("a strict prefix is never a whole LCM");
            assert!(
                matches!(err.kind, ErrorKind::UnexpectedEnd { .. }),
                "{name} cut at {len}: {err}"
            );
            assert!(err.offset <= len, "{name} cut at {len}: {err}");
            assert!(LedgerCloseMeta::from_xdr(prefix, limits()).is_err());
            // The partial readers never panic; whatever they return from a prefix must be
            // what the full ledger says (they read only what is there).
            if let Ok(row) = extract_row(prefix) {
                assert_eq!(row, full, "{name} cut at {len}");
            }
            if let Ok(layout) = header_layout(prefix) {
                assert!(layout.header_end <= len);
                assert!(header_hash_matches(prefix).unwrap());
            }
            let batch = encode_batch(1, 1, &[prefix]);
            assert!(split_batch(&batch).is_err());
        }
    }
}

#[test]
fn extract_row_needs_header_tx_set_and_processing_length() {
    let lcm = small_lcm("v1-protocol-21");
    let layout = header_layout(&lcm).unwrap();
    // Cut inside the header: extract fails, with a path into the header.
    let err = extract_row(&lcm[..layout.header_end - 1]).unwrap_err();
    assert!(matches!(err.kind, ErrorKind::UnexpectedEnd { .. }), "{err}");
    assert!(
        err.path.contains("LedgerHeaderHistoryEntry.header"),
        "{err}"
    );
}

#[test]
fn bad_lcm_version_is_a_bad_discriminant() {
    let mut lcm = small_lcm("v2-protocol-25");
    set_u32(&mut lcm, 0, 3);
    for err in [
        validate_lcm(&lcm).unwrap_err(),
        extract_row(&lcm).unwrap_err(),
    ] {
        assert_eq!(err.kind, ErrorKind::BadDiscriminant { value: 3 });
        assert_eq!(err.offset, 0);
        assert_eq!(err.ty, "LedgerCloseMeta");
    }
    assert!(LedgerCloseMeta::from_xdr(&lcm, limits()).is_err());
}

#[test]
fn envelope_type_errors_name_the_place() {
    for name in ["v0-protocol-12", "v1-protocol-21", "v2-protocol-28-soroban"] {
        let lcm = small_lcm(name);
        let (at, _) = first_envelope(&lcm);

        // ENVELOPE_TYPE_SCP (1) is a declared EnvelopeType but not a TransactionEnvelope arm.
        let mut m = lcm.clone();
        set_u32(&mut m, at, 1);
        for err in [validate_lcm(&m).unwrap_err(), extract_row(&m).unwrap_err()] {
            assert_eq!(err.kind, ErrorKind::BadDiscriminant { value: 1 }, "{name}");
            assert_eq!(err.offset, at, "{name}");
            assert_eq!(err.ty, "TransactionEnvelope", "{name}");
            assert!(err.path.contains("txSet"), "{name}: {err}");
        }
        assert!(LedgerCloseMeta::from_xdr(&m, limits()).is_err());

        // 99 is not an EnvelopeType at all.
        set_u32(&mut m, at, 99);
        let err = validate_lcm(&m).unwrap_err();
        assert_eq!(err.kind, ErrorKind::BadEnumValue { value: 99 }, "{name}");
        assert!(LedgerCloseMeta::from_xdr(&m, limits()).is_err());
    }
}

#[test]
fn too_many_operations_exceeds_max() {
    let lcm = small_lcm("v1-protocol-21");
    let (at, env) = first_envelope(&lcm);
    let ops = match &env {
        TransactionEnvelope::TxV0(e) => &e.tx.operations,
        TransactionEnvelope::Tx(e) => &e.tx.operations,
        TransactionEnvelope::TxFeeBump(e) => {
            let stellar_xdr::FeeBumpTransactionInnerTx::Tx(inner) = &e.tx.inner_tx;
            &inner.tx.operations
        }
    };
    // The operations count sits right before the first operation's encoding.
    let op0 = ops[0].to_xdr(limits()).unwrap();
    let count_at = find(&lcm, &op0, at) - 4;
    assert_eq!(
        u32::from_be_bytes(lcm[count_at..count_at + 4].try_into().unwrap()) as usize,
        ops.len()
    );
    let mut m = lcm.clone();
    set_u32(&mut m, count_at, 101);
    for err in [validate_lcm(&m).unwrap_err(), extract_row(&m).unwrap_err()] {
        assert_eq!(err.kind, ErrorKind::LengthExceedsMax { len: 101, max: 100 });
        assert_eq!(err.offset, count_at);
    }
    assert!(LedgerCloseMeta::from_xdr(&m, limits()).is_err());
}

#[test]
fn huge_lengths_fail_fast() {
    // txProcessing of a v0 ledger: the field right after the tx set.
    let lcm = small_lcm("v0-protocol-19");
    let LedgerCloseMeta::V0(v0) = LedgerCloseMeta::from_xdr(&lcm, limits()).unwrap() else {
        panic!("v0 sample");
    };
    let at = 4
        + v0.ledger_header.to_xdr(limits()).unwrap().len()
        + v0.tx_set.to_xdr(limits()).unwrap().len();
    assert_eq!(
        u32::from_be_bytes(lcm[at..at + 4].try_into().unwrap()) as usize,
        v0.tx_processing.len()
    );
    let mut m = lcm.clone();
    set_u32(&mut m, at, u32::MAX);
    let t = Instant::now();
    let err = validate_lcm(&m).unwrap_err();
    let row_err = extract_row(&m).unwrap_err();
    assert!(t.elapsed().as_millis() < 50, "took {:?}", t.elapsed());
    for err in [err, row_err] {
        assert!(matches!(err.kind, ErrorKind::UnexpectedEnd { needed, .. } if needed > 1 << 32));
        assert!(err.path.contains("txProcessing"), "{err}");
    }

    // A batch claiming 2^32-1 ledgers.
    let mut batch = encode_batch(1, 1, &[&lcm]);
    set_u32(&mut batch, 8, u32::MAX);
    let t = Instant::now();
    let err = split_batch(&batch).unwrap_err();
    assert!(t.elapsed().as_millis() < 50);
    assert!(matches!(err.kind, ErrorKind::UnexpectedEnd { .. }), "{err}");
    assert_eq!(err.offset, 12);
}

#[test]
fn trailing_bytes_are_rejected() {
    let lcm = small_lcm("v2-protocol-23-soroban");
    let mut m = lcm.clone();
    m.extend_from_slice(&[0, 0, 0, 0]);
    let err = validate_lcm(&m).unwrap_err();
    assert_eq!(err.kind, ErrorKind::TrailingBytes { remaining: 4 });
    assert_eq!(err.offset, lcm.len());
    assert!(LedgerCloseMeta::from_xdr(&m, limits()).is_err());

    let mut batch = encode_batch(5, 6, &[&lcm, &lcm]);
    let good = split_batch(&batch).unwrap();
    assert_eq!(good.ledgers.len(), 2);
    batch.push(0);
    let err = split_batch(&batch).unwrap_err();
    assert_eq!(err.kind, ErrorKind::TrailingBytes { remaining: 1 });
    // One byte short of a complete batch is an unexpected end, not a trailing-bytes error.
    batch.truncate(batch.len() - 2);
    let err = split_batch(&batch).unwrap_err();
    assert!(matches!(err.kind, ErrorKind::UnexpectedEnd { .. }), "{err}");
}

// --- synthetic values, hand-encoded, checked against stellar-xdr ------------------------

fn words(ws: &[u32]) -> Vec<u8> {
    ws.iter().flat_map(|w| w.to_be_bytes()).collect()
}

const SCV_BOOL: u32 = 0;
const SCV_SYMBOL: u32 = 15;
const SCV_VEC: u32 = 16;

#[test]
fn bool_must_be_zero_or_one() {
    for v in [0, 1] {
        let b = words(&[SCV_BOOL, v]);
        validate_xdr("SCVal", &b, 500).unwrap();
        ScVal::from_xdr(&b, limits()).unwrap();
    }
    let b = words(&[SCV_BOOL, 2]);
    let err = validate_xdr("SCVal", &b, 500).unwrap_err();
    assert_eq!(err.kind, ErrorKind::BadBool { value: 2 });
    assert_eq!(err.offset, 4);
    // Documented difference: stellar-xdr 30 reads any non-1 value as `false`, so the bytes do
    // not survive a round trip. We reject them instead of storing a non-canonical encoding.
    let theirs = ScVal::from_xdr(&b, limits()).unwrap();
    assert_ne!(theirs.to_xdr(limits()).unwrap(), b);
}

#[test]
fn padding_must_be_zero() {
    // SCV_SYMBOL "abc": length 3, then 'a' 'b' 'c' and one padding byte.
    let mut b = words(&[SCV_SYMBOL, 3]);
    b.extend_from_slice(b"abc\0");
    validate_xdr("SCVal", &b, 500).unwrap();
    ScVal::from_xdr(&b, limits()).unwrap();
    b[11] = 1;
    let err = validate_xdr("SCVal", &b, 500).unwrap_err();
    assert_eq!(err.kind, ErrorKind::NonZeroPadding);
    assert_eq!(err.offset, 11);
    assert!(ScVal::from_xdr(&b, limits()).is_err());
    // Symbols are at most 32 bytes.
    let err = validate_xdr("SCVal", &words(&[SCV_SYMBOL, 33]), 500).unwrap_err();
    assert_eq!(err.kind, ErrorKind::LengthExceedsMax { len: 33, max: 32 });
}

#[test]
fn optional_flag_must_be_zero_or_one() {
    // SCV_VEC with an absent vector, then with a bad presence flag.
    validate_xdr("SCVal", &words(&[SCV_VEC, 0]), 500).unwrap();
    let b = words(&[SCV_VEC, 2]);
    let err = validate_xdr("SCVal", &b, 500).unwrap_err();
    assert_eq!(err.kind, ErrorKind::BadOptionalFlag { value: 2 });
    assert!(ScVal::from_xdr(&b, limits()).is_err());
}

#[test]
fn unknown_type_name() {
    let err = validate_xdr("NoSuchType", &[], 500).unwrap_err();
    assert_eq!(err.kind, ErrorKind::UnknownType);
    assert!(err.path.contains("NoSuchType"));
}

#[test]
fn error_messages_carry_context() {
    let lcm = small_lcm("v1-protocol-20-soroban");
    let (at, _) = first_envelope(&lcm);
    let mut m = lcm.clone();
    set_u32(&mut m, at, 1);
    let msg = validate_lcm(&m).unwrap_err().to_string();
    assert!(msg.contains(&format!("at byte {at}")), "{msg}");
    assert!(msg.contains("TransactionEnvelope"), "{msg}");
    assert!(
        msg.contains("LedgerCloseMeta::v1 > LedgerCloseMetaV1.txSet"),
        "{msg}"
    );
}
