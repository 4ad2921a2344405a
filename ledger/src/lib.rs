//! Fast, allocation-light parsing of Stellar `LedgerCloseMetaBatch` XDR (the payload of Galexie
//! datastore objects, after zstd).
//!
//! Instead of decoding into the `stellar-xdr` object model (about 4 ms for a 372 KB pubnet
//! ledger), a small interpreter walks the bytes against the official XDR schema (embedded from
//! stellar-xdr 30.0.0, see `xdr/PROVENANCE.md`) and checks every structural rule stellar-xdr
//! checks, without allocating. On top of it:
//!
//! * [`split_batch`] cuts a batch into the exact bytes of each LedgerCloseMeta, validating all;
//! * [`extract_row`] reads the per-ledger row fields (header values, tx/op counts);
//! * [`header_hash_matches`] checks the stored ledger hash against the header bytes;
//! * [`header_layout`] / [`relink_header`] let a test-data generator rewrite ledgers into a
//!   consistent chain; [`encode_batch`] builds a batch.

mod batch;
mod error;
mod extract;
mod lower;
mod machine;
mod schema;
mod skip;

pub use batch::{LedgerCloseMetaBatchView, encode_batch, split_batch};
pub use error::{ErrorKind, XdrError};
pub use extract::{
    HeaderLayout, LedgerRow, extract_row, header_hash_matches, header_layout, relink_header,
};
pub use skip::DEFAULT_DEPTH_LIMIT;

use schema::{PROGRAM, Program};
use skip::Walker;

/// Fully validate one LedgerCloseMeta: every byte is walked against the schema and the value
/// must end exactly at the end of `lcm_xdr`.
pub fn validate_lcm(lcm_xdr: &[u8]) -> Result<(), XdrError> {
    validate_xdr("LedgerCloseMeta", lcm_xdr, DEFAULT_DEPTH_LIMIT)
}

/// Validate that `xdr` is exactly one value of the named Stellar XDR type (e.g. `"SCVal"`,
/// `"TransactionEnvelope"`), with stellar-xdr's depth semantics: it accepts iff
/// `T::from_xdr(xdr, Limits { depth: depth_limit, .. })` does, except that a bool other than
/// 0 or 1 is rejected here (stellar-xdr reads it as `false`).
///
/// Any `depth_limit` is safe: values nested deeper than a small recursion budget are walked
/// with an explicit stack on the heap, so no input can overflow the thread stack.
pub fn validate_xdr(type_name: &str, xdr: &[u8], depth_limit: u32) -> Result<(), XdrError> {
    validate_with(type_name, xdr, depth_limit, false)
}

/// [`validate_xdr`] forced onto the heap-stack interpreter that normally only handles values
/// nested deeper than the recursion budget. For tests that hold both interpreters to the same
/// verdicts; not part of the API.
#[doc(hidden)]
pub fn validate_xdr_heap_only(
    type_name: &str,
    xdr: &[u8],
    depth_limit: u32,
) -> Result<(), XdrError> {
    validate_with(type_name, xdr, depth_limit, true)
}

fn validate_with(
    type_name: &str,
    xdr: &[u8],
    depth_limit: u32,
    heap_only: bool,
) -> Result<(), XdrError> {
    let program: &'static Program = &PROGRAM;
    let Some(id) = program.lookup(type_name) else {
        return Err(XdrError::new(
            ErrorKind::UnknownType,
            0,
            "(unknown)",
            type_name.to_string(),
        ));
    };
    let mut walker = Walker::new(program, xdr, depth_limit);
    walker.heap_only = heap_only;
    walker
        .skip_exact(id, 0, 0)
        .map_err(|e| e.into_error(program))
}
