//! Lowers the schema graph (`schema.rs`) into straight-line blocks of instructions for the
//! interpreter (`skip.rs`).
//!
//! Why: walking the graph node by node costs a call per struct and a loop iteration per field.
//! Real ledgers are mostly structs of structs of fixed-size fields, so inlining every struct
//! and typedef into its parent's block and merging adjacent fixed-size fields into one bounds
//! check removes most of that work. Only what really branches on the data (unions, arrays,
//! optionals) remains a call.
//!
//! Depth stays exact: each instruction carries `d`, the stellar-xdr depth of its own node
//! relative to the depth its block is run at.

use crate::error::Step;
use crate::schema::{Op, Program, TypeId};

/// Index range of a block in [`Code::instrs`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Block {
    pub(crate) start: u32,
    pub(crate) len: u32,
    /// Every instruction is a leaf: the block can run in place, without a machine frame.
    pub(crate) leafy: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum IOp {
    /// `size` bytes with nothing to validate. The deepest frame inside is at depth `need`
    /// (relative to the block), so the depth check is one comparison.
    Plain {
        size: u32,
        need: u32,
    },
    /// A var_array of plain elements: one bounds check for all of them.
    PlainArray {
        max: u32,
        size: u32,
        need: u32,
    },
    /// A union whose arms are all void or plain, behind `wrap` typedef frames.
    FlatUnion {
        index: u32,
        wrap: u32,
    },
    Bool,
    Enum {
        set: u32,
    },
    PaddedFixed {
        size: u32,
    },
    VarBytes {
        max: u32,
    },
    /// A general union: discriminant, then the arm's block one level deeper.
    Union {
        index: u32,
    },
    VarArray {
        elem: TypeId,
        max: u32,
        min: u32,
    },
    Array {
        elem: TypeId,
        count: u32,
    },
    Optional {
        elem: TypeId,
    },
}

impl IOp {
    /// Leaves are executed in place; the others open a nested value on the machine's stack.
    #[inline(always)]
    pub(crate) fn is_leaf(&self) -> bool {
        !matches!(
            self,
            IOp::Union { .. } | IOp::VarArray { .. } | IOp::Optional { .. } | IOp::Array { .. }
        )
    }
}

#[derive(Debug, Clone, Copy)]
pub(crate) struct Instr {
    pub(crate) op: IOp,
    /// Depth of this instruction's node relative to its block.
    pub(crate) d: u32,
    /// Type of the node (for error messages).
    pub(crate) ty: TypeId,
    /// Index into [`Code::crumbs`]: the struct fields leading from the block's type to here.
    pub(crate) crumb: u32,
}

#[derive(Debug, Default)]
pub(crate) struct Code {
    pub(crate) instrs: Vec<Instr>,
    /// Block of each type id.
    pub(crate) blocks: Vec<Block>,
    /// Static breadcrumbs, outermost first; only read when building an error.
    pub(crate) crumbs: Vec<Box<[Step]>>,
}

pub(crate) fn lower(p: &Program) -> Code {
    let mut code = Code::default();
    let mut path = Vec::new();
    for id in 0..p.ops.len() as TypeId {
        let start = code.instrs.len();
        emit(p, &mut code, id, 0, &mut path);
        merge_plain(&mut code.instrs, start);
        code.blocks.push(Block {
            start: start as u32,
            len: (code.instrs.len() - start) as u32,
            leafy: code.instrs[start..].iter().all(|i| i.op.is_leaf()),
        });
    }
    code
}

fn emit(p: &Program, code: &mut Code, id: TypeId, d: u32, path: &mut Vec<Step>) {
    let op = match p.ops[id as usize] {
        Op::Plain { size, frames } => IOp::Plain {
            size,
            need: d + frames,
        },
        Op::FlatUnion { index, wrap } => IOp::FlatUnion { index, wrap },
        Op::Bool => IOp::Bool,
        Op::Enum { set } => IOp::Enum { set },
        Op::PaddedFixed { size } => IOp::PaddedFixed { size },
        Op::VarBytes { max } => IOp::VarBytes { max },
        Op::Union { index } => IOp::Union { index },
        Op::VarArray { elem, max } => match p.ops[elem as usize] {
            // The elements sit one level below the array node.
            Op::Plain { size, frames } => IOp::PlainArray {
                max,
                size,
                need: d + 1 + frames,
            },
            _ => IOp::VarArray {
                elem,
                max,
                min: p.min_size[elem as usize],
            },
        },
        Op::Array { elem, count } => IOp::Array { elem, count },
        Op::Optional { elem } => IOp::Optional { elem },
        Op::Struct { first, len } => {
            // A struct is its fields, one level deeper. Its own frame is implied: every field
            // checks a deeper one, and failing either way rejects the same inputs.
            for i in 0..len {
                path.push(Step::Field(id, i));
                emit(p, code, p.fields[(first + i) as usize], d + 1, path);
                path.pop();
            }
            return;
        }
        Op::Newtype { inner } => {
            emit(p, code, inner, d + 1, path);
            return;
        }
    };
    let crumb = code.crumbs.len() as u32;
    code.crumbs.push(path.as_slice().into());
    code.instrs.push(Instr {
        op,
        d,
        ty: id,
        crumb,
    });
}

/// Merge runs of adjacent `Plain` instructions of the block starting at `start`. The merged
/// instruction keeps the first one's type and breadcrumb for error messages.
fn merge_plain(instrs: &mut Vec<Instr>, start: usize) {
    let mut out = start;
    for i in start..instrs.len() {
        let ins = instrs[i];
        if out > start
            && let (IOp::Plain { size, need }, IOp::Plain { size: s2, need: n2 }) =
                (instrs[out - 1].op, ins.op)
        {
            instrs[out - 1].op = IOp::Plain {
                size: size + s2,
                need: need.max(n2),
            };
            continue;
        }
        instrs[out] = ins;
        out += 1;
    }
    instrs.truncate(out);
}
