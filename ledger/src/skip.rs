//! The interpreter: walks XDR bytes according to the lowered schema (`lower.rs`) without
//! decoding or allocating, enforcing the same rules as stellar-xdr 30.0.0's decoder (plus one
//! stricter one, below), and returns where the value ends. This file holds the primitives, the
//! leaf instructions and the recursive fast path; `machine.rs` the heap-stack fallback for
//! deeply nested values. `LedgerCloseMeta`s, and the types the hand navigation skips, normally
//! go through the generated equivalent of this fast path instead (`walk_gen.rs`, see
//! `codegen.rs`); this remains the reference it is tested against and the walker of every
//! other type.
//!
//! Rules enforced: big-endian 4-byte units; opaque/string padded to 4 bytes with zero padding;
//! bool 0 or 1; optional flag 0 or 1; enum values declared; union discriminant selects an arm;
//! lengths within the declared maximum and within the remaining input (so a bogus huge length
//! fails before walking anything); nesting depth counted exactly like stellar-xdr's
//! `Limits::depth`.
//!
//! Deliberately stricter than stellar-xdr: it reads a bool as `value == 1`, silently accepting
//! 2, 3, ... as `false`. Such bytes would not survive a decode/encode round trip, and we promise
//! the stored bytes are a canonical encoding, so we reject them.

use std::cell::RefCell;

use crate::error::{ErrorKind, Fail, Step};
use crate::lower::{Block, IOp, Instr};
use crate::machine::Frame;
use crate::schema::{ARM_NONE, ARM_VOID, Disc, FLAT_NONE, Program, TypeId, UnionInfo};
use crate::walk_rt as rt;

/// stellar-xdr has no built-in default; 500 is the depth limit the Stellar host uses
/// (soroban-env-host's `DEFAULT_XDR_RW_LIMITS`) and the one this crate's public functions apply.
pub const DEFAULT_DEPTH_LIMIT: u32 = 500;

/// A walk over one input buffer. Positions are absolute offsets into `buf`.
pub(crate) struct Walker<'a> {
    pub(crate) program: &'static Program,
    pub(crate) buf: &'a [u8],
    pub(crate) limit: u32,
    /// The heap-stack machine's frames, kept between `skip` calls so a walk allocates at most
    /// once. Only used for values nested deeper than the recursion budget.
    pub(crate) stack: RefCell<Vec<Frame>>,
    /// Testing aid: run everything on the machine, never recursively.
    pub(crate) heap_only: bool,
    /// Recursion levels the fast paths may use; [`RECURSION_BUDGET`] except in tests of the
    /// fallback.
    pub(crate) budget: u32,
    /// Skip with the generated walker (`walk_gen.rs`) in [`Self::skip`] wherever it has a
    /// function for the type; off only to measure or test the interpreter against it.
    pub(crate) generated: bool,
}

/// Recursion levels the fast path may use before handing the value to the machine. Real
/// ledgers need about 25; each level costs a few KiB of stack in a debug build.
pub const RECURSION_BUDGET: u32 = 64;

impl<'a> Walker<'a> {
    pub(crate) fn new(program: &'static Program, buf: &'a [u8], limit: u32) -> Self {
        Walker {
            program,
            buf,
            // Depth arithmetic (`depth + frames`) then never overflows; no real limit is near.
            limit: limit.min(u32::MAX / 2),
            stack: RefCell::new(Vec::new()),
            heap_only: false,
            budget: RECURSION_BUDGET,
            generated: true,
        }
    }

    /// Ensure `n` bytes are available at `pos`.
    #[inline(always)]
    pub(crate) fn need(&self, pos: usize, n: u64, ty: TypeId) -> Result<(), Fail> {
        let available = self.buf.len().saturating_sub(pos);
        if n > available as u64 {
            return Err(Fail::new(
                ErrorKind::UnexpectedEnd {
                    needed: n,
                    available,
                },
                pos,
                ty,
            ));
        }
        Ok(())
    }

    #[inline(always)]
    pub(crate) fn u32_at(&self, pos: usize, ty: TypeId) -> Result<u32, Fail> {
        match self.buf.get(pos..pos + 4) {
            Some(b) => Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]])),
            None => Err(self.end(pos, 4, ty)),
        }
    }

    #[cold]
    fn end(&self, pos: usize, needed: u64, ty: TypeId) -> Fail {
        let available = self.buf.len().saturating_sub(pos);
        Fail::new(ErrorKind::UnexpectedEnd { needed, available }, pos, ty)
    }

    #[inline(always)]
    pub(crate) fn depth(
        &self,
        depth: u32,
        frames: u32,
        pos: usize,
        ty: TypeId,
    ) -> Result<(), Fail> {
        if depth + frames > self.limit {
            return Err(Fail::new(
                ErrorKind::DepthExceeded { limit: self.limit },
                pos,
                ty,
            ));
        }
        Ok(())
    }

    /// Check `len` bytes plus zero padding at `pos`; return the position after the padding.
    #[inline(always)]
    pub(crate) fn bytes_padded(&self, pos: usize, len: u32, ty: TypeId) -> Result<usize, Fail> {
        let padded = (u64::from(len) + 3) & !3;
        self.need(pos, padded, ty)?;
        let end = pos + len as usize;
        let pad_end = pos + padded as usize;
        if self.buf[end..pad_end].iter().any(|&b| b != 0) {
            return Err(Fail::new(ErrorKind::NonZeroPadding, end, ty));
        }
        Ok(pad_end)
    }

    /// Read a var_array/opaque length: at most `max`, and `len * min_elem` must fit in what is
    /// left, so a corrupt length fails here rather than after walking the rest of the input.
    #[inline(always)]
    pub(crate) fn length(
        &self,
        pos: usize,
        max: u32,
        min_elem: u32,
        ty: TypeId,
    ) -> Result<u32, Fail> {
        let len = self.u32_at(pos, ty)?;
        if len > max {
            return Err(Fail::new(ErrorKind::LengthExceedsMax { len, max }, pos, ty));
        }
        let body = u64::from(len) * u64::from(min_elem);
        let available = self.buf.len() - pos - 4;
        if body > available as u64 {
            return Err(Fail::new(
                ErrorKind::UnexpectedEnd {
                    needed: body,
                    available,
                },
                pos + 4,
                ty,
            ));
        }
        Ok(len)
    }

    /// Read a union discriminant at `pos` (depth of the union and discriminant frames checked
    /// at `depth`). Enum membership is not checked here: every case value of an enum-typed
    /// union is a member, so a value that selects an arm needs no further check, and one that
    /// does not is classified by [`Self::no_arm`].
    #[inline(always)]
    pub(crate) fn discriminant(
        &self,
        u: &UnionInfo,
        id: TypeId,
        pos: usize,
        depth: u32,
    ) -> Result<i64, Fail> {
        let signed = !matches!(u.disc, Disc::Uint);
        rt::discriminant(self, pos, depth, u.disc_frames, signed, id)
    }

    /// The error for a discriminant that selects no arm: not a member of the discriminant's
    /// enum, or a member the union has no arm for.
    #[cold]
    pub(crate) fn no_arm(&self, u: &UnionInfo, id: TypeId, pos: usize, value: i64) -> Fail {
        let kind = match u.disc {
            Disc::Enum { set } if !self.program.enums[set as usize].contains(value as i32) => {
                ErrorKind::BadEnumValue {
                    value: value as i32,
                }
            }
            _ => ErrorKind::BadDiscriminant { value },
        };
        Fail::new(kind, pos, id)
    }

    /// Skip one value of type `id` starting at `pos`, its node being `depth` stellar-xdr frames
    /// deep (0 for a top-level value). Returns the position just after it. With the generated
    /// engine, a non-leafy type that has a generated function (`walk_gen::skip_generated`: all
    /// reachable from `LedgerCloseMeta` or skipped by the hand navigation) runs that instead of
    /// the interpreter; the semantics are the same, fallback to the heap machine included.
    pub(crate) fn skip(&self, id: TypeId, pos: usize, depth: u32) -> Result<usize, Fail> {
        let block = self.program.code.blocks[id as usize];
        if block.leafy {
            // Most field skips of the hand navigation: a few leaves, nothing nested.
            return self.leaves(block, pos, depth);
        }
        if self.heap_only {
            return self.skip_on_heap(block, pos, depth);
        }
        let generated = if self.generated {
            crate::walk_gen::skip_generated(self, id, pos, depth, self.budget)
        } else {
            None
        };
        match generated.unwrap_or_else(|| self.run(block, pos, depth, self.budget)) {
            Err(e) if e.is_too_deep() => self.skip_on_heap(block, pos, depth),
            r => r,
        }
    }

    /// The fast path: recursion, one level per nested union arm / element / optional value.
    /// `budget` bounds the recursion so the thread stack stays small even in debug builds;
    /// a value nested deeper is redone by the heap-stack machine (`machine.rs`).
    fn run(&self, block: Block, mut pos: usize, depth: u32, budget: u32) -> Result<usize, Fail> {
        let code = &self.program.code;
        for ins in &code.instrs[block.start as usize..(block.start + block.len) as usize] {
            pos = match self.exec(ins, pos, depth, budget) {
                Ok(p) => p,
                Err(e) => return Err(e.push_all(&code.crumbs[ins.crumb as usize])),
            };
        }
        Ok(pos)
    }

    /// Run a nested block: in place if it has only leaves, else one recursion level deeper.
    #[inline(always)]
    fn nested(&self, block: Block, pos: usize, depth: u32, budget: u32) -> Result<usize, Fail> {
        if block.leafy {
            self.leaves(block, pos, depth)
        } else if budget == 0 {
            Err(Fail::too_deep())
        } else {
            self.run(block, pos, depth, budget - 1)
        }
    }

    /// Execute one instruction whose block runs at depth `base`.
    #[inline(always)]
    fn exec(&self, ins: &Instr, pos: usize, base: u32, budget: u32) -> Result<usize, Fail> {
        let p = self.program;
        let code = &p.code;
        let id = ins.ty;
        let depth = base + ins.d;
        match ins.op {
            IOp::Union { index } => {
                let u = &p.unions[index as usize];
                let value = self.discriminant(u, id, pos, depth)?;
                match u.arm(value) {
                    ARM_VOID => Ok(pos + 4),
                    ARM_NONE => Err(self.no_arm(u, id, pos, value)),
                    arm => self
                        .nested(code.blocks[arm as usize], pos + 4, depth + 1, budget)
                        .map_err(|e| e.push(Step::Arm(id, value))),
                }
            }
            IOp::VarArray { elem, max, min } => {
                let len = rt::var_len(self, pos, depth, max, min, id)?;
                let block = code.blocks[elem as usize];
                let mut at = pos + 4;
                for i in 0..len {
                    at = self
                        .nested(block, at, depth + 1, budget)
                        .map_err(|e| e.push(Step::Index(id, i)))?;
                }
                Ok(at)
            }
            IOp::Optional { elem } => {
                if rt::present(self, pos, depth, id)? {
                    self.nested(code.blocks[elem as usize], pos + 4, depth + 1, budget)
                } else {
                    Ok(pos + 4)
                }
            }
            IOp::Array { elem, count } => {
                rt::array(self, pos, depth, id)?;
                let block = code.blocks[elem as usize];
                let mut at = pos;
                for i in 0..count {
                    at = self
                        .nested(block, at, depth + 1, budget)
                        .map_err(|e| e.push(Step::Index(id, i)))?;
                }
                Ok(at)
            }
            _ => self.leaf(ins, pos, base),
        }
    }

    /// Run a leaf-only block in place.
    #[inline(always)]
    pub(crate) fn leaves(&self, block: Block, mut pos: usize, depth: u32) -> Result<usize, Fail> {
        let code = &self.program.code;
        for ins in &code.instrs[block.start as usize..(block.start + block.len) as usize] {
            pos = match self.leaf(ins, pos, depth) {
                Ok(p) => p,
                Err(e) => return Err(e.push_all(&code.crumbs[ins.crumb as usize])),
            };
        }
        Ok(pos)
    }

    /// Execute one leaf instruction (anything that does not open a nested value) whose block
    /// runs at depth `base`.
    #[inline(always)]
    pub(crate) fn leaf(&self, ins: &Instr, pos: usize, base: u32) -> Result<usize, Fail> {
        let p = self.program;
        let id = ins.ty;
        let depth = base + ins.d;
        match ins.op {
            IOp::Plain { size, need } => rt::plain(self, pos, base, need, size, id),
            IOp::FlatUnion { index, wrap } => {
                let u = &p.unions[index as usize];
                let signed = !matches!(u.disc, Disc::Uint);
                // The `wrap` newtype frames come first, then the union's own.
                rt::flat(
                    self,
                    pos,
                    depth + wrap,
                    u.disc_frames,
                    signed,
                    id,
                    index,
                    |value| {
                        let idx = value.wrapping_sub(u.lo);
                        let arm = if idx >= 0 && (idx as u64) < u.flat.len() as u64 {
                            u.flat[idx as usize]
                        } else {
                            FLAT_NONE
                        };
                        (arm != FLAT_NONE).then_some(arm)
                    },
                )
            }
            IOp::PlainArray { max, size, need } => {
                rt::plain_array(self, pos, base, ins.d, max, size, need, id)
            }
            IOp::Enum { set } => {
                rt::enumeration(self, pos, depth, id, |v| p.enums[set as usize].contains(v))
            }
            IOp::VarBytes { max } => rt::var_bytes(self, pos, depth, max, id),
            IOp::Bool => rt::boolean(self, pos, depth, id),
            IOp::PaddedFixed { size } => rt::padded_fixed(self, pos, depth, size, id),
            IOp::Union { .. } | IOp::VarArray { .. } | IOp::Optional { .. } | IOp::Array { .. } => {
                unreachable!("composite instructions are run by the machine")
            }
        }
    }

    /// Skip a value that must end exactly at the end of the buffer.
    pub(crate) fn skip_exact(&self, id: TypeId, pos: usize, depth: u32) -> Result<(), Fail> {
        let end = self.skip(id, pos, depth)?;
        if end != self.buf.len() {
            return Err(Fail::new(
                ErrorKind::TrailingBytes {
                    remaining: self.buf.len() - end,
                },
                end,
                id,
            ));
        }
        Ok(())
    }
}
