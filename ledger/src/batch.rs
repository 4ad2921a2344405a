//! `LedgerCloseMetaBatch { uint32 startSequence; uint32 endSequence; LedgerCloseMeta
//! ledgerCloseMetas<>; }`: split into the exact bytes of each LedgerCloseMeta, validating each
//! one fully on the way (the split needs each LCM's end, which only a full skip can find).

use crate::error::{ErrorKind, Fail, Step, XdrError};
use crate::schema::{Op, PROGRAM, Program, TypeId};
use crate::skip::{DEFAULT_DEPTH_LIMIT, Walker};
use crate::walk_rt::Engine;

/// A batch split into per-ledger slices borrowed from the input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LedgerCloseMetaBatchView<'a> {
    pub start_sequence: u32,
    pub end_sequence: u32,
    /// Each slice is the exact XDR of one LedgerCloseMeta, in batch order.
    pub ledgers: Vec<&'a [u8]>,
}

/// Split a `LedgerCloseMetaBatch` and validate every LedgerCloseMeta in it. Fails on any
/// structural error and on trailing bytes after the batch.
///
/// Depth is counted as stellar-xdr does when decoding the whole batch: each LCM sits two frames
/// deep (batch struct, then the array).
pub fn split_batch(batch_xdr: &[u8]) -> Result<LedgerCloseMetaBatchView<'_>, XdrError> {
    split_batch_with(batch_xdr, Engine::Generated)
}

/// [`split_batch`] with a chosen walker, for tests and benchmarks that compare them; not part
/// of the API.
#[doc(hidden)]
pub fn split_batch_with(
    batch_xdr: &[u8],
    engine: Engine,
) -> Result<LedgerCloseMetaBatchView<'_>, XdrError> {
    let program: &'static Program = &PROGRAM;
    let mut w = Walker::new(program, batch_xdr, DEFAULT_DEPTH_LIMIT);
    engine.configure(&mut w);
    split(&w, program).map_err(|e| e.into_error(program))
}

fn split<'a>(w: &Walker<'a>, p: &'static Program) -> Result<LedgerCloseMetaBatchView<'a>, Fail> {
    let batch = p
        .lookup("LedgerCloseMetaBatch")
        .expect("schema has LedgerCloseMetaBatch");
    let (fields, _) = p
        .struct_fields(batch)
        .expect("LedgerCloseMetaBatch is a struct");
    let lcms: TypeId = fields[2];
    let Op::VarArray { elem: lcm, max } = p.ops[lcms as usize] else {
        unreachable!("ledgerCloseMetas is a var_array");
    };
    let start_sequence = w
        .u32_at(0, fields[0])
        .map_err(|e| e.push(Step::Field(batch, 0)))?;
    let end_sequence = w
        .u32_at(4, fields[1])
        .map_err(|e| e.push(Step::Field(batch, 1)))?;
    let in_lcms = |e: Fail| e.push(Step::Field(batch, 2));
    // batch struct = frame 1, the array = frame 2 (its length frame 3), elements at depth 2.
    let n = w
        .length(8, max, p.min_size[lcm as usize], lcms)
        .map_err(in_lcms)?;
    // Capacity from the count is safe: `length` checked n * min_size fits in the input.
    let mut ledgers = Vec::with_capacity(n as usize);
    let mut at = 12;
    for i in 0..n {
        let end = w
            .skip(lcm, at, 2)
            .map_err(|e| in_lcms(e.push(Step::Index(lcms, i))))?;
        ledgers.push(&w.buf[at..end]);
        at = end;
    }
    if at != w.buf.len() {
        return Err(Fail::new(
            ErrorKind::TrailingBytes {
                remaining: w.buf.len() - at,
            },
            at,
            batch,
        ));
    }
    Ok(LedgerCloseMetaBatchView {
        start_sequence,
        end_sequence,
        ledgers,
    })
}

/// Encode a `LedgerCloseMetaBatch` from already-encoded LedgerCloseMetas (no validation: the
/// inverse of [`split_batch`] for callers that hold valid LCM bytes).
pub fn encode_batch(start: u32, end: u32, lcms: &[&[u8]]) -> Vec<u8> {
    let body: usize = lcms.iter().map(|l| l.len()).sum();
    let mut out = Vec::with_capacity(12 + body);
    out.extend_from_slice(&start.to_be_bytes());
    out.extend_from_slice(&end.to_be_bytes());
    let count = u32::try_from(lcms.len()).expect("an XDR array holds at most u32::MAX items");
    out.extend_from_slice(&count.to_be_bytes());
    for l in lcms {
        out.extend_from_slice(l);
    }
    out
}
