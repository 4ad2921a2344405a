//! The fallback interpreter for deeply nested values: same instructions and checks as the
//! recursive fast path in `skip.rs`, but nesting lives in an explicit stack on the heap, so no
//! input can overflow the thread stack whatever the depth limit. Slower (about 20%) than
//! recursion, hence only used past `skip.rs`'s recursion budget.

use crate::error::{Fail, Step};
use crate::lower::{Block, IOp};
use crate::schema::{ARM_NONE, ARM_VOID, TypeId};
use crate::skip::Walker;
use crate::walk_rt as rt;

/// An open nested value of the machine.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Frame {
    /// Running instructions `next..end` of a block at depth `depth`; `arm` is set when the
    /// block is the selected arm of a union (for error paths).
    Block {
        end: u32,
        next: u32,
        depth: u32,
        arm: Option<(TypeId, i64)>,
    },
    /// Elements of array instruction `array` still to walk: `left` more runs of the element
    /// block `start..end` at `depth`; `index` counts elements started so far.
    Elems {
        array: TypeId,
        start: u32,
        end: u32,
        left: u32,
        index: u32,
        depth: u32,
    },
}

impl Walker<'_> {
    /// Skip the value whose block is `block` on the heap stack.
    pub(crate) fn skip_on_heap(&self, block: Block, pos: usize, depth: u32) -> Result<usize, Fail> {
        let mut stack = self.stack.borrow_mut();
        stack.clear();
        stack.push(Frame::Block {
            end: block.start + block.len,
            next: block.start,
            depth,
            arm: None,
        });
        let r = self.machine(&mut stack, pos);
        r.map_err(|e| self.unwind(e, &stack))
    }

    /// The interpreter loop. Nesting lives in `stack` (on the heap, reused across calls), not
    /// in Rust recursion, so no input can overflow the thread stack, whatever the depth limit.
    fn machine(&self, stack: &mut Vec<Frame>, mut pos: usize) -> Result<usize, Fail> {
        let p = self.program;
        let code = &p.code;
        while let Some(top) = stack.last_mut() {
            match top {
                Frame::Block {
                    end, next, depth, ..
                } => {
                    let base = *depth;
                    // Run the leaves in place, up to the next composite instruction.
                    let mut i = *next;
                    let ins = loop {
                        if i == *end {
                            break None;
                        }
                        let ins = &code.instrs[i as usize];
                        i += 1;
                        if !ins.op.is_leaf() {
                            break Some(ins);
                        }
                        pos = match self.leaf(ins, pos, base) {
                            Ok(p) => p,
                            Err(e) => {
                                // Unwinding reads the failed instruction at `next - 1`.
                                *next = i;
                                return Err(e);
                            }
                        };
                    };
                    *next = i;
                    let Some(ins) = ins else {
                        stack.pop();
                        continue;
                    };
                    let depth = base + ins.d;
                    let id = ins.ty;
                    match ins.op {
                        IOp::Union { index } => {
                            let u = &p.unions[index as usize];
                            let value = self.discriminant(u, id, pos, depth)?;
                            pos += 4;
                            match u.arm(value) {
                                ARM_VOID => {}
                                ARM_NONE => return Err(self.no_arm(u, id, pos - 4, value)),
                                arm => {
                                    let b = code.blocks[arm as usize];
                                    if b.leafy {
                                        pos = self
                                            .leaves(b, pos, depth + 1)
                                            .map_err(|e| e.push(Step::Arm(id, value)))?;
                                    } else {
                                        stack.push(Frame::Block {
                                            end: b.start + b.len,
                                            next: b.start,
                                            depth: depth + 1,
                                            arm: Some((id, value)),
                                        });
                                    }
                                }
                            }
                        }
                        IOp::VarArray { elem, max, min } => {
                            let len = rt::var_len(self, pos, depth, max, min, id)?;
                            pos += 4;
                            let b = code.blocks[elem as usize];
                            if b.leafy {
                                for i in 0..len {
                                    pos = self
                                        .leaves(b, pos, depth + 1)
                                        .map_err(|e| e.push(Step::Index(id, i)))?;
                                }
                            } else if len > 0 {
                                stack.push(Frame::Elems {
                                    array: id,
                                    start: b.start,
                                    end: b.start + b.len,
                                    left: len,
                                    index: 0,
                                    depth: depth + 1,
                                });
                            }
                        }
                        IOp::Optional { elem } => {
                            let present = rt::present(self, pos, depth, id)?;
                            pos += 4;
                            if present {
                                let b = code.blocks[elem as usize];
                                if b.leafy {
                                    pos = self.leaves(b, pos, depth + 1)?;
                                } else {
                                    stack.push(Frame::Block {
                                        end: b.start + b.len,
                                        next: b.start,
                                        depth: depth + 1,
                                        arm: None,
                                    });
                                }
                            }
                        }
                        IOp::Array { elem, count } => {
                            rt::array(self, pos, depth, id)?;
                            let b = code.blocks[elem as usize];
                            if count > 0 {
                                stack.push(Frame::Elems {
                                    array: id,
                                    start: b.start,
                                    end: b.start + b.len,
                                    left: count,
                                    index: 0,
                                    depth: depth + 1,
                                });
                            }
                        }
                        _ => unreachable!("leaves were run above"),
                    }
                }
                Frame::Elems {
                    start,
                    end,
                    left,
                    index,
                    depth,
                    ..
                } => {
                    if *left == 0 {
                        stack.pop();
                        continue;
                    }
                    *left -= 1;
                    *index += 1;
                    let frame = Frame::Block {
                        end: *end,
                        next: *start,
                        depth: *depth,
                        arm: None,
                    };
                    stack.push(frame);
                }
            }
        }
        Ok(pos)
    }

    /// Add the breadcrumb of every open frame to a failure, innermost first.
    #[cold]
    fn unwind(&self, mut fail: Fail, stack: &[Frame]) -> Fail {
        let code = &self.program.code;
        for frame in stack.iter().rev() {
            match *frame {
                Frame::Block { next, arm, .. } => {
                    // `next - 1` is the instruction that failed or opened the frame above.
                    let ins = &code.instrs[next as usize - 1];
                    fail = fail.push_all(&code.crumbs[ins.crumb as usize]);
                    if let Some((id, value)) = arm {
                        fail = fail.push(Step::Arm(id, value));
                    }
                }
                Frame::Elems { array, index, .. } => {
                    fail = fail.push(Step::Index(array, index - 1));
                }
            }
        }
        fail
    }
}
