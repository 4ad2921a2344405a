//! The checks of each lowered instruction kind, one `#[inline(always)]` helper each, shared by
//! every engine: the generated walker (`walk_gen.rs`) calls them with literal operands, the
//! interpreter (`Walker::leaf`/`Walker::exec`, `skip.rs`) and the heap machine (`machine.rs`)
//! with operands from the program's tables. One implementation, so the engines fail with
//! exactly the same errors. Also the engine choice, and the breadcrumb helpers of the generated
//! code (cold: only errors pay for them).

use crate::error::{ErrorKind, Fail, Step};
use crate::schema::TypeId;
use crate::skip::Walker;

/// Which walker validates (LedgerCloseMetas and every type with generated code, see
/// `Walker::skip`). Only tests and benchmarks choose; everything else uses
/// [`Engine::Generated`].
#[doc(hidden)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    /// The generated code (`walk_gen.rs`), falling back to the heap-stack machine past the
    /// recursion budget.
    Generated,
    /// The recursive interpreter (`skip.rs`), with the same fallback.
    Interpreter,
    /// The heap-stack machine alone (`machine.rs`).
    HeapOnly,
}

impl Engine {
    pub(crate) fn configure(self, w: &mut Walker<'_>) {
        w.generated = self == Engine::Generated;
        w.heap_only = self == Engine::HeapOnly;
    }
}

// --- breadcrumbs (cold) ------------------------------------------------------------------------

/// `run`'s `push_all(&code.crumbs[crumb])` for a failed instruction.
#[cold]
#[inline(never)]
pub(crate) fn crumb(w: &Walker<'_>, e: Fail, crumb: u32) -> Fail {
    e.push_all(&w.program.code.crumbs[crumb as usize])
}

/// A failure inside the arm `value` of union `ty`, then the instruction's breadcrumb.
#[cold]
#[inline(never)]
pub(crate) fn arm(w: &Walker<'_>, e: Fail, ty: TypeId, value: i64, c: u32) -> Fail {
    crumb(w, e.push(Step::Arm(ty, value)), c)
}

/// A failure inside element `i` of array `ty`, then the instruction's breadcrumb.
#[cold]
#[inline(never)]
pub(crate) fn index(w: &Walker<'_>, e: Fail, ty: TypeId, i: u32, c: u32) -> Fail {
    crumb(w, e.push(Step::Index(ty, i)), c)
}

/// A discriminant of union `unions[union]` (type `ty`) that selects no arm.
#[cold]
#[inline(never)]
pub(crate) fn no_arm(
    w: &Walker<'_>,
    union: u32,
    ty: TypeId,
    pos: usize,
    value: i64,
    c: u32,
) -> Fail {
    crumb(
        w,
        w.no_arm(&w.program.unions[union as usize], ty, pos, value),
        c,
    )
}

// --- nesting -----------------------------------------------------------------------------------

/// `Walker::nested` for a non-leafy block: one recursion level deeper, or hand the value to the
/// machine when the budget is spent.
#[inline(always)]
pub(crate) fn nest(budget: u32, f: impl FnOnce(u32) -> Result<usize, Fail>) -> Result<usize, Fail> {
    if budget == 0 {
        Err(Fail::too_deep())
    } else {
        f(budget - 1)
    }
}

/// A union's discriminant (`Walker::discriminant`): read, then the depth of the union and its
/// discriminant frames.
#[inline(always)]
pub(crate) fn discriminant(
    w: &Walker<'_>,
    pos: usize,
    depth: u32,
    frames: u32,
    signed: bool,
    ty: TypeId,
) -> Result<i64, Fail> {
    let raw = w.u32_at(pos, ty)?;
    w.depth(depth, frames, pos, ty)?;
    Ok(if signed {
        i64::from(raw as i32)
    } else {
        i64::from(raw)
    })
}

/// A var_array's length (`IOp::VarArray`).
#[inline(always)]
pub(crate) fn var_len(
    w: &Walker<'_>,
    pos: usize,
    depth: u32,
    max: u32,
    min: u32,
    ty: TypeId,
) -> Result<u32, Fail> {
    w.depth(depth, 2, pos, ty)?;
    w.length(pos, max, min, ty)
}

/// A fixed array's own frame (`IOp::Array`).
#[inline(always)]
pub(crate) fn array(w: &Walker<'_>, pos: usize, depth: u32, ty: TypeId) -> Result<(), Fail> {
    w.depth(depth, 1, pos, ty)
}

/// An optional's presence flag (`IOp::Optional`).
#[inline(always)]
pub(crate) fn present(w: &Walker<'_>, pos: usize, depth: u32, ty: TypeId) -> Result<bool, Fail> {
    w.depth(depth, 2, pos, ty)?;
    match w.u32_at(pos, ty)? {
        0 => Ok(false),
        1 => Ok(true),
        v => Err(Fail::new(ErrorKind::BadOptionalFlag { value: v }, pos, ty)),
    }
}

// --- leaves (`Walker::leaf`) -------------------------------------------------------------------

/// `IOp::Plain`; `base` is the block's depth (`need` is relative to it).
#[inline(always)]
pub(crate) fn plain(
    w: &Walker<'_>,
    pos: usize,
    base: u32,
    need: u32,
    size: u32,
    ty: TypeId,
) -> Result<usize, Fail> {
    w.depth(base, need, pos, ty)?;
    w.need(pos, u64::from(size), ty)?;
    Ok(pos + size as usize)
}

/// `IOp::PlainArray` of the instruction at depth `base + d`.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
pub(crate) fn plain_array(
    w: &Walker<'_>,
    pos: usize,
    base: u32,
    d: u32,
    max: u32,
    size: u32,
    need: u32,
    ty: TypeId,
) -> Result<usize, Fail> {
    w.depth(base + d, 2, pos, ty)?;
    let len = w.length(pos, max, size, ty)?;
    if len > 0 {
        w.depth(base, need, pos + 4, ty)?;
    }
    // `length` checked that len * size bytes are there.
    Ok(pos + 4 + len as usize * size as usize)
}

/// `IOp::FlatUnion` of `unions[union]`; `depth` already includes the `wrap` frames and
/// `table` gives each arm's (size, frames).
#[allow(clippy::too_many_arguments)]
#[inline(always)]
pub(crate) fn flat(
    w: &Walker<'_>,
    pos: usize,
    depth: u32,
    frames: u32,
    signed: bool,
    ty: TypeId,
    union: u32,
    table: impl Fn(i64) -> Option<(u32, u32)>,
) -> Result<usize, Fail> {
    let value = discriminant(w, pos, depth, frames, signed, ty)?;
    let Some((size, frames)) = table(value) else {
        return Err(w.no_arm(&w.program.unions[union as usize], ty, pos, value));
    };
    if frames > 0 {
        w.depth(depth + 1, frames, pos + 4, ty)?;
        w.need(pos + 4, u64::from(size), ty)?;
    }
    Ok(pos + 4 + size as usize)
}

/// `IOp::Bool` (0 or 1 only, see `skip.rs`).
#[inline(always)]
pub(crate) fn boolean(w: &Walker<'_>, pos: usize, depth: u32, ty: TypeId) -> Result<usize, Fail> {
    w.depth(depth, 2, pos, ty)?;
    let v = w.u32_at(pos, ty)?;
    if v > 1 {
        return Err(Fail::new(ErrorKind::BadBool { value: v }, pos, ty));
    }
    Ok(pos + 4)
}

/// `IOp::Enum`; `member` is the enum's generated membership test.
#[inline(always)]
pub(crate) fn enumeration(
    w: &Walker<'_>,
    pos: usize,
    depth: u32,
    ty: TypeId,
    member: impl Fn(i32) -> bool,
) -> Result<usize, Fail> {
    w.depth(depth, 2, pos, ty)?;
    let v = w.u32_at(pos, ty)? as i32;
    if !member(v) {
        return Err(Fail::new(ErrorKind::BadEnumValue { value: v }, pos, ty));
    }
    Ok(pos + 4)
}

/// `IOp::PaddedFixed`.
#[inline(always)]
pub(crate) fn padded_fixed(
    w: &Walker<'_>,
    pos: usize,
    depth: u32,
    size: u32,
    ty: TypeId,
) -> Result<usize, Fail> {
    w.depth(depth, 1, pos, ty)?;
    w.bytes_padded(pos, size, ty)
}

/// `IOp::VarBytes`.
#[inline(always)]
pub(crate) fn var_bytes(
    w: &Walker<'_>,
    pos: usize,
    depth: u32,
    max: u32,
    ty: TypeId,
) -> Result<usize, Fail> {
    w.depth(depth, 2, pos, ty)?;
    let len = w.u32_at(pos, ty)?;
    if len > max {
        return Err(Fail::new(ErrorKind::LengthExceedsMax { len, max }, pos, ty));
    }
    w.bytes_padded(pos + 4, len, ty)
}
