//! The one error type of the crate.
//!
//! Validation walks hundreds of thousands of XDR items per ledger, so the success path must not
//! pay for error context. The interpreter therefore fails with a tiny boxed [`Fail`] and each
//! level it unwinds through appends one breadcrumb; only when a caller receives the error is the
//! human-readable path rendered into an [`XdrError`].

use std::fmt::Write as _;

use crate::schema::{Program, TypeId};

/// What was wrong with the bytes. Every variant is a structural XDR violation: the input is not
/// a valid encoding of the type being read, or (`TrailingBytes`) has more bytes than it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ErrorKind {
    #[error("unexpected end of input: {needed} bytes needed, {available} available")]
    UnexpectedEnd { needed: u64, available: usize },
    #[error("union discriminant {value} matches no arm")]
    BadDiscriminant { value: i64 },
    #[error("enum value {value} is not a declared member")]
    BadEnumValue { value: i32 },
    #[error("length {len} exceeds the declared maximum {max}")]
    LengthExceedsMax { len: u32, max: u32 },
    #[error("padding bytes are not zero")]
    NonZeroPadding,
    #[error("bool must be 0 or 1, found {value}")]
    BadBool { value: u32 },
    #[error("optional presence flag must be 0 or 1, found {value}")]
    BadOptionalFlag { value: u32 },
    #[error("nesting deeper than the limit of {limit}")]
    DepthExceeded { limit: u32 },
    #[error("{remaining} trailing bytes after the value")]
    TrailingBytes { remaining: usize },
    /// [`validate_xdr`](crate::validate_xdr) was asked for a type the schema lacks (the name
    /// is in [`XdrError::path`]).
    #[error("no such XDR type")]
    UnknownType,
}

/// A structural XDR error with enough context to find the bad byte: where (absolute offset in
/// the input that was passed to the public function), which type was being read, and the chain
/// of enclosing types/fields from the outermost value down to it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{kind} at byte {offset} while reading {ty} (in {path})")]
pub struct XdrError {
    pub kind: ErrorKind,
    /// Byte offset of the item that failed, relative to the start of the caller's input.
    pub offset: usize,
    /// Name of the XDR type being read when the problem was found (e.g. `Memo`, `opaque<64>`).
    pub ty: &'static str,
    /// Outermost-first breadcrumb, e.g. `LedgerCloseMeta::v1 > LedgerCloseMetaV1.txProcessing[3] > ...`.
    pub path: String,
}

impl XdrError {
    pub(crate) fn new(kind: ErrorKind, offset: usize, ty: &'static str, path: String) -> Self {
        Self {
            kind,
            offset,
            ty,
            path,
        }
    }
}

/// One step of the breadcrumb, recorded innermost-first while unwinding.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Step {
    /// Inside field number `.1` of struct `.0`.
    Field(TypeId, u32),
    /// Inside element `.1` of array/var_array `.0`.
    Index(TypeId, u32),
    /// Inside the arm selected by discriminant `.1` of union `.0`.
    Arm(TypeId, i64),
}

/// The cheap failure value threaded through the interpreter. Boxed so that
/// `Result<usize, Fail>` stays two words and the hot path never touches it.
#[derive(Debug)]
pub(crate) struct Fail(Box<FailInner>);

#[derive(Debug)]
pub(crate) struct FailInner {
    pub(crate) kind: ErrorKind,
    pub(crate) offset: usize,
    /// Type being read when it failed.
    pub(crate) ty: TypeId,
    pub(crate) trail: Vec<Step>,
    /// Not an XDR error: the recursive fast path ran out of recursion budget and the value
    /// must be redone on the heap-stack machine.
    too_deep: bool,
}

impl Fail {
    #[cold]
    #[inline(never)]
    pub(crate) fn new(kind: ErrorKind, offset: usize, ty: TypeId) -> Self {
        Fail(Box::new(FailInner {
            kind,
            offset,
            ty,
            trail: Vec::new(),
            too_deep: false,
        }))
    }

    #[cold]
    #[inline(never)]
    pub(crate) fn too_deep() -> Self {
        Fail(Box::new(FailInner {
            kind: ErrorKind::DepthExceeded { limit: 0 },
            offset: 0,
            ty: 0,
            trail: Vec::new(),
            too_deep: true,
        }))
    }

    pub(crate) fn is_too_deep(&self) -> bool {
        self.0.too_deep
    }

    #[cold]
    #[inline(never)]
    pub(crate) fn push(mut self, step: Step) -> Self {
        self.0.trail.push(step);
        self
    }

    /// Append a static breadcrumb (stored outermost first).
    #[cold]
    #[inline(never)]
    pub(crate) fn push_all(mut self, steps: &[Step]) -> Self {
        self.0.trail.extend(steps.iter().rev());
        self
    }

    /// Render into the public error.
    #[cold]
    pub(crate) fn into_error(self, program: &'static Program) -> XdrError {
        let inner = *self.0;
        let mut path = String::new();
        for step in inner.trail.iter().rev() {
            // An element of an inline array continues the field that holds it:
            // `LedgerCloseMetaV2.txProcessing[4]`, not `... > TransactionResultMetaV1<>[4]`.
            if let Step::Index(t, i) = *step
                && program.is_anonymous(t)
                && !path.is_empty()
            {
                let _ = write!(path, "[{i}]");
                continue;
            }
            if !path.is_empty() {
                path.push_str(" > ");
            }
            // Writing into a String cannot fail.
            let _ = match *step {
                Step::Field(t, f) => write!(
                    path,
                    "{}.{}",
                    program.name(t),
                    program.field_name(t, f as usize)
                ),
                Step::Index(t, i) => write!(path, "{}[{}]", program.name(t), i),
                Step::Arm(t, v) => match program.arm_name(t, v) {
                    Some(arm) => write!(path, "{}::{}", program.name(t), arm),
                    None => write!(path, "{}::<{}>", program.name(t), v),
                },
            };
        }
        if path.is_empty() {
            path.push_str("top level");
        }
        XdrError::new(inner.kind, inner.offset, program.name(inner.ty), path)
    }
}
