//! Depth accounting must match stellar-xdr's `Limits::depth` exactly: for every real ledger and
//! for deeply nested recursive values, the smallest limit we accept equals the smallest limit
//! stellar-xdr accepts.

mod common;

use bronze_ledger::{ErrorKind, validate_lcm, validate_xdr, validate_xdr_heap_only};
use common::{lcm_samples, loadtest_samples};
use stellar_xdr::{ClaimPredicate, LedgerCloseMeta, Limits, ReadXdr, ScVal};

/// Smallest limit in 1..=hi that `ok` accepts (monotone), or None.
fn min_limit(hi: u32, ok: impl Fn(u32) -> bool) -> Option<u32> {
    if !ok(hi) {
        return None;
    }
    let (mut lo, mut hi) = (0u32, hi); // ok(hi) holds; find the first ok
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        if ok(mid) { hi = mid } else { lo = mid }
    }
    Some(hi)
}

/// stellar-xdr recurses on the thread stack (hundreds of bytes per frame); give its decodes
/// room so that only the depth limit, never a stack overflow, decides.
fn with_big_stack<R: Send + 'static>(f: impl FnOnce() -> R + Send + 'static) -> R {
    std::thread::Builder::new()
        .stack_size(1 << 30)
        .spawn(f)
        .unwrap()
        .join()
        .unwrap()
}

fn assert_same_min_depth<T: ReadXdr + 'static>(ty: &str, bytes: &[u8], what: &str) -> Option<u32> {
    let owned = bytes.to_vec();
    let theirs =
        with_big_stack(move || min_limit(2_000, |d| T::from_xdr(&owned, Limits::depth(d)).is_ok()));
    let ours = min_limit(2_000, |d| validate_xdr(ty, bytes, d).is_ok());
    assert_eq!(ours, theirs, "{what}");
    // The heap-stack interpreter (normally only for values nested past the recursion budget)
    // counts depth identically.
    let heap = min_limit(2_000, |d| validate_xdr_heap_only(ty, bytes, d).is_ok());
    assert_eq!(heap, theirs, "{what} (heap-stack interpreter)");
    if let Some(d) = ours {
        let err = validate_xdr(ty, bytes, d - 1).unwrap_err();
        assert_eq!(
            err.kind,
            ErrorKind::DepthExceeded { limit: d - 1 },
            "{what}"
        );
    }
    ours
}

#[test]
fn real_ledgers_need_the_same_depth() {
    for (name, lcm) in lcm_samples().into_iter().chain(loadtest_samples()) {
        let d = assert_same_min_depth::<LedgerCloseMeta>("LedgerCloseMeta", &lcm, &name);
        let d = d.expect("real ledgers decode");
        assert!(d < 100, "{name} needs depth {d}");
    }
}

fn words(ws: &[u32]) -> Vec<u8> {
    ws.iter().flat_map(|w| w.to_be_bytes()).collect()
}

/// SCVal vec nested `n` deep around a void: vec(Some([vec(Some([ ... void ]))])).
fn nested_scval(n: usize) -> Vec<u8> {
    let mut ws = Vec::new();
    for _ in 0..n {
        ws.extend_from_slice(&[16, 1, 1]); // SCV_VEC, present, one element
    }
    ws.push(1); // SCV_VOID
    words(&ws)
}

/// ClaimPredicate: `not` chains (stellar-xdr boxes these: an extra frame per level) ending in
/// an `and` of two unconditionals.
fn nested_predicate(nots: usize) -> Vec<u8> {
    let mut ws = Vec::new();
    for _ in 0..nots {
        ws.extend_from_slice(&[3, 1]); // NOT, present
    }
    ws.extend_from_slice(&[1, 2, 0, 0]); // AND [UNCONDITIONAL, UNCONDITIONAL]
    words(&ws)
}

#[test]
fn nested_scval_depth_matches() {
    for n in [0, 1, 2, 10, 100, 124, 125, 126, 200, 400] {
        let b = nested_scval(n);
        let d = assert_same_min_depth::<ScVal>("SCVal", &b, &format!("SCVal nested {n}"));
        // Whether the default limit accepts it is also the same.
        let theirs = with_big_stack(move || ScVal::from_xdr(&b, Limits::depth(500)).is_ok());
        assert_eq!(
            validate_xdr("SCVal", &nested_scval(n), 500).is_ok(),
            theirs,
            "{n}"
        );
        assert!(d.is_some() || n >= 400);
    }
}

#[test]
fn nested_claim_predicate_depth_matches() {
    for n in [0, 1, 2, 50, 99, 100, 101, 300] {
        let b = nested_predicate(n);
        assert_same_min_depth::<ClaimPredicate>("ClaimPredicate", &b, &format!("not x{n}"));
    }
}

#[test]
fn deep_nesting_inside_a_ledger_is_rejected_without_overflow() {
    // 100k levels of SCVal nesting, validated with no depth limit at all: our walk keeps its
    // nesting on the heap, so this succeeds on a normal test thread (2 MiB stack) and in a
    // debug build.
    let b = nested_scval(100_000);
    validate_xdr("SCVal", &b, u32::MAX).unwrap();
    let err = validate_xdr("SCVal", &b, 500).unwrap_err();
    assert!(
        matches!(err.kind, ErrorKind::DepthExceeded { limit: 500 }),
        "{err}"
    );
    // And an LCM-shaped garbage input cannot recurse either.
    assert!(validate_lcm(&b).is_err());
}
