//! Generates `walk_gen.rs`: the lowered program (`lower.rs`) for `LedgerCloseMeta`, compiled
//! into Rust instead of interpreted. Also compiled: the blocks of the struct fields the hand
//! navigation (`extract.rs`) skips, so that `Walker::skip` can run generated code for every
//! non-leafy type the crate walks (`skip_generated`).
//!
//! Why: validating LedgerCloseMetas is the biggest CPU cost of the product outside of the
//! Parquet work, and most of the interpreter's time goes to dispatching instructions and
//! loading their operands. Generated code has one function per non-leafy block with every
//! operand (sizes, maxima, depth offsets, union arm tables, enum members) a literal, so what
//! remains is the checks themselves.
//!
//! Semantics are the interpreter's, statement for statement: each instruction becomes a call of
//! an `#[inline(always)]` helper in `walk_rt.rs` that mirrors `Walker::leaf`/`exec`, and every
//! error gets the same breadcrumbs. The generated file is checked in; a unit test regenerates
//! it and fails on any difference, so it cannot drift from the schema. Regenerate with
//! `cargo run -p bronze-ledger --example gen_walker -- --write`.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::error::Step;
use crate::lower::{IOp, Instr};
use crate::schema::{ARM_NONE, ARM_VOID, Disc, FLAT_NONE, Program, TypeId};

/// The type the generated walker starts from.
pub(crate) const ROOT_NAME: &str = "LedgerCloseMeta";

/// The source of `walk_gen.rs` for `p` (the embedded schema's program).
pub(crate) fn generate(p: &Program) -> String {
    let root = p.lookup(ROOT_NAME).expect("schema has LedgerCloseMeta");
    assert!(
        !p.code.blocks[root as usize].leafy,
        "the root block is expected to nest"
    );
    // Leafy field types stay on `Walker::leaves`, which runs them in place.
    let mut roots = vec![root];
    roots.extend(
        crate::extract::skipped_types(p)
            .into_iter()
            .filter(|&id| !p.code.blocks[id as usize].leafy),
    );
    let blocks = reachable(p, &roots);
    let mut g = Gen {
        p,
        out: String::new(),
        flats: BTreeMap::new(),
        enums: BTreeMap::new(),
        inline: force_inline(p, root, &blocks),
    };
    g.header(&entries(p, &roots, &blocks));
    for &id in &blocks {
        g.block(id);
    }
    let flats = std::mem::take(&mut g.flats);
    for (index, ty) in flats {
        g.flat_table(index, ty);
    }
    let enums = std::mem::take(&mut g.enums);
    for (set, ty) in enums {
        g.enum_set(set, ty);
    }
    g.out
}

/// Type ids of the blocks reachable from `roots`, in id order (stable output).
fn reachable(p: &Program, roots: &[TypeId]) -> Vec<TypeId> {
    let mut seen = vec![false; p.code.blocks.len()];
    let mut stack = roots.to_vec();
    while let Some(id) = stack.pop() {
        if std::mem::replace(&mut seen[id as usize], true) {
            continue;
        }
        for ins in instrs(p, id) {
            match ins.op {
                IOp::Union { index } => stack.extend(
                    p.unions[index as usize]
                        .arms
                        .iter()
                        .filter(|&&a| a != ARM_NONE && a != ARM_VOID),
                ),
                IOp::VarArray { elem, .. } | IOp::Array { elem, .. } | IOp::Optional { elem } => {
                    stack.push(elem)
                }
                _ => {}
            }
        }
    }
    (0..seen.len() as TypeId)
        .filter(|&id| seen[id as usize])
        .collect()
}

/// The non-leafy blocks `skip_generated` dispatches to: the roots, and every block the generated
/// code itself calls from two or more places. A block with a single call site is left out on
/// purpose: as a function with one caller, LLVM inlines it into that caller, and a second call
/// site in the dispatch would cost that (split_batch measured about 15% slower with every
/// block in the dispatch). Types left out are the interpreter's, as before; the hand
/// navigation only skips roots.
fn entries(p: &Program, roots: &[TypeId], blocks: &[TypeId]) -> Vec<TypeId> {
    let sites = call_sites(p, blocks);
    blocks
        .iter()
        .copied()
        .filter(|&id| {
            !p.code.blocks[id as usize].leafy && (roots.contains(&id) || sites[id as usize] >= 2)
        })
        .collect()
}

/// How many call sites the generated functions of `blocks` have for each block.
fn call_sites(p: &Program, blocks: &[TypeId]) -> Vec<u32> {
    let mut sites = vec![0u32; p.code.blocks.len()];
    for &id in blocks {
        for ins in instrs(p, id) {
            let mut targets: Vec<TypeId> = match ins.op {
                IOp::Union { index } => p.unions[index as usize].arms.to_vec(),
                IOp::VarArray { elem, .. } | IOp::Array { elem, .. } | IOp::Optional { elem } => {
                    vec![elem]
                }
                _ => continue,
            };
            // One call site per distinct arm target (the generator groups discriminants).
            targets.sort_unstable();
            targets.dedup();
            for t in targets {
                if t != ARM_NONE && t != ARM_VOID {
                    sites[t as usize] += 1;
                }
            }
        }
    }
    sites
}

/// Non-leafy blocks to force inline: called from one place under `LedgerCloseMeta` (where LLVM
/// inlines such a function into its only caller) and also from the functions of other roots.
/// The hint keeps that inlining despite the second caller (e.g. `PreconditionsV2` under every
/// transaction), so the LedgerCloseMeta walk is the code it was before the other roots.
fn force_inline(p: &Program, root: TypeId, blocks: &[TypeId]) -> Vec<bool> {
    let under_root = call_sites(p, &reachable(p, &[root]));
    let all = call_sites(p, blocks);
    (0..p.code.blocks.len())
        .map(|id| under_root[id] == 1 && all[id] > 1 && !p.code.blocks[id].leafy)
        .collect()
}

/// Whether block `id` runs a non-leafy block as a nested value (and so uses the budget).
fn nests(p: &Program, id: TypeId) -> bool {
    let nonleafy = |t: u32| t != ARM_NONE && t != ARM_VOID && !p.code.blocks[t as usize].leafy;
    instrs(p, id).iter().any(|ins| match ins.op {
        IOp::Union { index } => p.unions[index as usize].arms.iter().any(|&a| nonleafy(a)),
        IOp::VarArray { elem, .. } | IOp::Array { elem, .. } | IOp::Optional { elem } => {
            nonleafy(elem)
        }
        _ => false,
    })
}

fn instrs(p: &Program, id: TypeId) -> &[Instr] {
    let b = p.code.blocks[id as usize];
    &p.code.instrs[b.start as usize..(b.start + b.len) as usize]
}

/// Rust identifier of the function for block `id`: `t{id}_{snake_case name}`.
fn fn_name(p: &Program, id: TypeId) -> String {
    let mut s = format!("t{id}_");
    let mut prev_lower = false;
    for c in p.name(id).chars() {
        if c.is_ascii_uppercase() {
            if prev_lower {
                s.push('_');
            }
            s.push(c.to_ascii_lowercase());
            prev_lower = false;
        } else if c.is_ascii_alphanumeric() {
            s.push(c);
            prev_lower = true;
        } else {
            if !s.ends_with('_') {
                s.push('_');
            }
            prev_lower = false;
        }
    }
    s.trim_end_matches('_').to_string()
}

/// `depth` plus a literal offset.
fn depth_plus(d: u32) -> String {
    if d == 0 {
        "depth".into()
    } else {
        format!("depth + {d}")
    }
}

/// Match patterns for a sorted list of integers: runs become ranges.
fn patterns(values: &[i64]) -> String {
    let mut parts = Vec::new();
    let mut i = 0;
    while i < values.len() {
        let mut j = i;
        while j + 1 < values.len() && values[j + 1] == values[j] + 1 {
            j += 1;
        }
        parts.push(match j - i {
            0 => format!("{}", values[i]),
            1 => format!("{} | {}", values[i], values[j]),
            _ => format!("{}..={}", values[i], values[j]),
        });
        i = j + 1;
    }
    parts.join(" | ")
}

fn signed(disc: Disc) -> bool {
    !matches!(disc, Disc::Uint)
}

struct Gen<'p> {
    p: &'p Program,
    out: String,
    /// Flat unions used (union index -> a type id using it, for the comment).
    flats: BTreeMap<u32, TypeId>,
    /// Enum sets used (set -> a type id using it, for the comment).
    enums: BTreeMap<u32, TypeId>,
    /// Blocks whose function gets `#[inline(always)]` (see [`force_inline`]).
    inline: Vec<bool>,
}

impl Gen<'_> {
    fn line(&mut self, indent: usize, s: &str) {
        for _ in 0..indent {
            self.out.push_str("    ");
        }
        self.out.push_str(s);
        self.out.push('\n');
    }

    fn header(&mut self, entries: &[TypeId]) {
        let _ = write!(
            self.out,
            "\
// @generated by `cargo run -p bronze-ledger --example gen_walker -- --write`
// from the lowered schema (see `codegen.rs`). DO NOT EDIT: regenerate instead. The unit test
// `codegen::tests::walk_gen_is_current` fails whenever this file differs from what the
// generator produces for the embedded schema, so the literal type ids, breadcrumb indices and
// tables below always match the interpreter's program.

use crate::error::Fail;
use crate::schema::TypeId;
use crate::skip::Walker;
use crate::walk_rt::*;

/// Run the generated function of the non-leafy block of type `id` at `pos`, its node `depth`
/// frames deep, within recursion `budget`: exactly `Walker::run` of that block. Covers
/// `{ROOT_NAME}`, every non-leafy type the hand navigation skips, and every generated block
/// called from two or more places; `None` for the rest (leafy blocks, which `Walker::leaves`
/// runs in place; blocks only inlined into their one caller; types not generated).
#[inline]
pub(crate) fn skip_generated(
    w: &Walker<'_>,
    id: TypeId,
    pos: usize,
    depth: u32,
    budget: u32,
) -> Option<Result<usize, Fail>> {{
    Some(match id {{
"
        );
        for &id in entries {
            let f = fn_name(self.p, id);
            self.line(2, &format!("{id} => {f}(w, pos, depth, budget),"));
        }
        self.line(2, "_ => return None,");
        self.line(1, "})");
        self.line(0, "}");
    }

    /// Breadcrumb suffix for an instruction's own errors.
    fn err(&self, ins: &Instr) -> String {
        if self.p.code.crumbs[ins.crumb as usize].is_empty() {
            String::new()
        } else {
            format!(".map_err(|e| crumb(w, e, {}))", ins.crumb)
        }
    }

    /// Human-readable location of an instruction in its block, for comments.
    fn location(&self, ins: &Instr) -> String {
        match self.p.code.crumbs[ins.crumb as usize].last() {
            Some(Step::Field(t, f)) => format!(
                "{}.{}: {}",
                self.p.name(*t),
                self.p.field_name(*t, *f as usize),
                self.p.name(ins.ty)
            ),
            _ => self.p.name(ins.ty).to_string(),
        }
    }

    /// Expression running block `id` at `pos`/`depth` as a nested value.
    fn call(&self, id: TypeId, pos: &str, depth: &str) -> String {
        let f = fn_name(self.p, id);
        if self.p.code.blocks[id as usize].leafy {
            format!("{f}(w, {pos}, {depth})")
        } else {
            format!("nest(budget, |b| {f}(w, {pos}, {depth}, b))")
        }
    }

    fn block(&mut self, id: TypeId) {
        let p = self.p;
        let leafy = p.code.blocks[id as usize].leafy;
        let f = fn_name(p, id);
        self.out.push('\n');
        self.line(0, &format!("/// `{}`", p.name(id)));
        if leafy {
            self.line(0, "#[inline]");
            self.line(
                0,
                &format!(
                    "fn {f}(w: &Walker<'_>, mut pos: usize, depth: u32) -> Result<usize, Fail> {{"
                ),
            );
        } else {
            if self.inline[id as usize] {
                self.line(0, "#[inline(always)]");
            }
            // A block whose nested values are all leafy recurses no further.
            let budget = if nests(p, id) { "budget" } else { "_budget" };
            self.line(
                0,
                &format!(
                    "fn {f}(w: &Walker<'_>, mut pos: usize, depth: u32, {budget}: u32) -> Result<usize, Fail> {{"
                ),
            );
        }
        for ins in instrs(p, id) {
            self.instr(ins);
        }
        self.line(1, "Ok(pos)");
        self.line(0, "}");
    }

    fn instr(&mut self, ins: &Instr) {
        let p = self.p;
        let ty = ins.ty;
        let d = ins.d;
        let err = self.err(ins);
        let comment = format!("// {}", self.location(ins));
        self.line(1, &comment);
        let depth = depth_plus(d);
        match ins.op {
            IOp::Plain { size, need } => self.line(
                1,
                &format!("pos = plain(w, pos, depth, {need}, {size}, {ty}){err}?;"),
            ),
            IOp::PlainArray { max, size, need } => self.line(
                1,
                &format!(
                    "pos = plain_array(w, pos, depth, {d}, {max}, {size}, {need}, {ty}){err}?;"
                ),
            ),
            IOp::FlatUnion { index, wrap } => {
                self.flats.entry(index).or_insert(ty);
                let u = &p.unions[index as usize];
                self.line(
                    1,
                    &format!(
                        "pos = flat(w, pos, {}, {}, {}, {ty}, {index}, flat_{index}){err}?;",
                        depth_plus(d + wrap),
                        u.disc_frames,
                        signed(u.disc),
                    ),
                );
            }
            IOp::Bool => self.line(1, &format!("pos = boolean(w, pos, {depth}, {ty}){err}?;")),
            IOp::Enum { set } => {
                self.enums.entry(set).or_insert(ty);
                self.line(
                    1,
                    &format!("pos = enumeration(w, pos, {depth}, {ty}, enum_{set}){err}?;"),
                );
            }
            IOp::PaddedFixed { size } => self.line(
                1,
                &format!("pos = padded_fixed(w, pos, {depth}, {size}, {ty}){err}?;"),
            ),
            IOp::VarBytes { max } => self.line(
                1,
                &format!("pos = var_bytes(w, pos, {depth}, {max}, {ty}){err}?;"),
            ),
            IOp::Union { index } => self.union(ins, index, &err),
            IOp::VarArray { elem, max, min } => {
                self.line(
                    1,
                    &format!("let len = var_len(w, pos, {depth}, {max}, {min}, {ty}){err}?;"),
                );
                self.line(1, "pos += 4;");
                self.elements(ins, elem, "len");
            }
            IOp::Array { elem, count } => {
                self.line(1, &format!("array(w, pos, {depth}, {ty}){err}?;"));
                self.elements(ins, elem, &count.to_string());
            }
            IOp::Optional { elem } => {
                self.line(
                    1,
                    &format!("pos = if present(w, pos, {depth}, {ty}){err}? {{"),
                );
                let call = self.call(elem, "pos + 4", &depth_plus(d + 1));
                self.line(2, &format!("{call}{err}?"));
                self.line(1, "} else {");
                self.line(2, "pos + 4");
                self.line(1, "};");
            }
        }
    }

    /// The loop over `count` elements of type `elem` of the array instruction `ins`, each one
    /// level deeper, a failure carrying its index and the instruction's breadcrumb.
    fn elements(&mut self, ins: &Instr, elem: TypeId, count: &str) {
        self.line(1, &format!("for i in 0..{count} {{"));
        let call = self.call(elem, "pos", &depth_plus(ins.d + 1));
        self.line(
            2,
            &format!(
                "pos = {call}.map_err(|e| index(w, e, {}, i, {}))?;",
                ins.ty, ins.crumb
            ),
        );
        self.line(1, "}");
    }

    fn union(&mut self, ins: &Instr, index: u32, err: &str) {
        let p = self.p;
        let u = &p.unions[index as usize];
        let (ty, d) = (ins.ty, ins.d);
        self.line(
            1,
            &format!(
                "let value = discriminant(w, pos, {}, {}, {}, {ty}){err}?;",
                depth_plus(d),
                u.disc_frames,
                signed(u.disc)
            ),
        );
        // Arm target -> discriminant values selecting it, in first-value order.
        let mut by_target: BTreeMap<u32, Vec<i64>> = BTreeMap::new();
        for (i, &a) in u.arms.iter().enumerate() {
            if a != ARM_NONE {
                by_target.entry(a).or_default().push(u.lo + i as i64);
            }
        }
        let mut arms: Vec<(u32, Vec<i64>)> = by_target.into_iter().collect();
        arms.sort_by_key(|(_, v)| v[0]);
        self.line(1, "pos = match value {");
        for (target, values) in arms {
            let pat = patterns(&values);
            if target == ARM_VOID {
                self.line(2, &format!("{pat} => pos + 4,"));
            } else {
                let call = self.call(target, "pos + 4", &depth_plus(d + 1));
                self.line(
                    2,
                    &format!(
                        "{pat} => {call}.map_err(|e| arm(w, e, {ty}, value, {}))?,",
                        ins.crumb
                    ),
                );
            }
        }
        self.line(
            2,
            &format!(
                "_ => return Err(no_arm(w, {index}, {ty}, pos, value, {})),",
                ins.crumb
            ),
        );
        self.line(1, "};");
    }

    /// `flat_{index}`: a flat union's arms as (size, frames) by discriminant.
    fn flat_table(&mut self, index: u32, ty: TypeId) {
        let u = &self.p.unions[index as usize];
        let mut by_entry: BTreeMap<(u32, u32), Vec<i64>> = BTreeMap::new();
        for (i, &e) in u.flat.iter().enumerate() {
            if e != FLAT_NONE {
                by_entry.entry(e).or_default().push(u.lo + i as i64);
            }
        }
        let mut arms: Vec<((u32, u32), Vec<i64>)> = by_entry.into_iter().collect();
        arms.sort_by_key(|(_, v)| v[0]);
        self.out.push('\n');
        self.line(
            0,
            &format!(
                "/// Arms of flat union `{}`: (size, frames).",
                self.p.name(ty)
            ),
        );
        self.line(0, "#[inline(always)]");
        self.line(
            0,
            &format!("fn flat_{index}(value: i64) -> Option<(u32, u32)> {{"),
        );
        self.line(1, "match value {");
        for ((size, frames), values) in arms {
            self.line(
                2,
                &format!("{} => Some(({size}, {frames})),", patterns(&values)),
            );
        }
        self.line(2, "_ => None,");
        self.line(1, "}");
        self.line(0, "}");
    }

    /// `enum_{set}`: membership in an enum's declared values.
    fn enum_set(&mut self, set: u32, ty: TypeId) {
        let members: Vec<i64> = self.p.enums[set as usize]
            .members()
            .map(i64::from)
            .collect();
        self.out.push('\n');
        self.line(0, &format!("/// Members of `{}`.", self.p.name(ty)));
        self.line(0, "#[inline(always)]");
        self.line(0, &format!("fn enum_{set}(value: i32) -> bool {{"));
        self.line(1, &format!("matches!(value, {})", patterns(&members)));
        self.line(0, "}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::PROGRAM;

    /// The golden-file check: the checked-in walker is exactly what the generator makes of the
    /// embedded schema.
    #[test]
    fn walk_gen_is_current() {
        let fresh = generate(&PROGRAM);
        let checked_in = include_str!("walk_gen.rs");
        if fresh != checked_in {
            let line = fresh
                .lines()
                .zip(checked_in.lines())
                .position(|(a, b)| a != b)
                .map_or(fresh.lines().count().min(checked_in.lines().count()), |i| i)
                + 1;
            panic!(
                "ledger/src/walk_gen.rs is stale (first difference at line {line}); regenerate \
                 with `cargo run -p bronze-ledger --example gen_walker -- --write`"
            );
        }
    }

    /// `skip_generated` covers every non-leafy type the hand navigation skips and the root.
    #[test]
    fn skipped_types_have_generated_code() {
        let w = crate::skip::Walker::new(&PROGRAM, &[], 500);
        let root = PROGRAM.lookup(ROOT_NAME).unwrap();
        let mut covered = 0;
        for id in crate::extract::skipped_types(&PROGRAM)
            .into_iter()
            .chain([root])
        {
            let generated = crate::walk_gen::skip_generated(&w, id, 0, 0, 64).is_some();
            let leafy = PROGRAM.code.blocks[id as usize].leafy;
            assert!(generated != leafy, "{}: leafy {leafy}", PROGRAM.name(id));
            covered += usize::from(generated);
        }
        assert!(covered > 10, "{covered}");
    }

    #[test]
    fn patterns_group_runs() {
        assert_eq!(patterns(&[0]), "0");
        assert_eq!(patterns(&[-1, 0, 2, 3, 5, 6, 7]), "-1 | 0 | 2 | 3 | 5..=7");
    }
}
