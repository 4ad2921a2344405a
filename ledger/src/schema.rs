//! Loads stellar-xdr's JSON description of the Stellar XDR and compiles it, once, into a compact
//! program for the skipper (`skip.rs`): a vector of nodes indexed by type id, every `ref`
//! resolved to an id, enum member sets as bitmaps, union arms as dense discriminant tables.
//!
//! The compiled program also records what the interpreter needs to mirror stellar-xdr 30.0.0's
//! decoder exactly, including its depth accounting: every `read_xdr` there runs inside
//! `with_limited_depth`, so each XDR item costs one or more "frames" (see [`Op`]). Matching it
//! frame for frame means our depth limit accepts exactly what stellar-xdr accepts with the same
//! `Limits::depth`.

use std::collections::HashMap;
use std::sync::LazyLock;

use serde::Deserialize;

use crate::lower::{Code, lower};

/// The embedded schema; see `xdr/PROVENANCE.md`.
const SCHEMA_JSON: &str = include_str!("../xdr/stellar-xdr-30.0.0.json");

/// Index of a node in [`Program::ops`] (and of its block in the lowered code).
pub(crate) type TypeId = u32;

/// The compiled program, built on first use.
pub(crate) static PROGRAM: LazyLock<Program> =
    LazyLock::new(|| Program::compile(SCHEMA_JSON).expect("embedded XDR schema must compile"));

/// One instruction of the skipper. `frames` below means stellar-xdr depth units.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Op {
    /// A fixed-size run with nothing to validate (ints, hypers, fixed opaque without padding, and
    /// structs/arrays/typedefs made only of those): a bounds check suffices. `frames` is the
    /// deepest nesting inside it, so the depth check stays exact.
    Plain { size: u32, frames: u32 },
    /// `bool`: u32 that must be 0 or 1. 2 frames (bool, inner u32).
    Bool,
    /// `enum`: i32 that must be a declared member of `enums[set]`. 2 frames (enum, inner i32).
    Enum { set: u32 },
    /// `opaque[N]` with N not a multiple of 4: N bytes plus zero padding. 1 frame.
    PaddedFixed { size: u32 },
    /// `opaque<max>` and `string<max>`: u32 length, bytes, zero padding. 2 frames (vec, length).
    VarBytes { max: u32 },
    /// `T[count]`. 1 frame, then the elements one level deeper.
    Array { elem: TypeId, count: u32 },
    /// `T<max>`: u32 count then elements. 2 frames (vec, count); elements one level deeper.
    VarArray { elem: TypeId, max: u32 },
    /// `T*`: u32 flag 0/1 then maybe T. 2 frames (option, flag); T one level deeper.
    Optional { elem: TypeId },
    /// A union whose arms are all void or plain (`ext` unions, `PublicKey`, `MuxedAccount`, ...),
    /// wrapped in `wrap` typedef newtypes (e.g. `AccountID`): skipped with one table lookup in
    /// `unions[index].flat`, no recursion.
    FlatUnion { index: u32, wrap: u32 },
    /// Fields `fields[first..first + len]` in order. 1 frame.
    Struct { first: u32, len: u32 },
    /// `unions[index]`. 1 frame plus the discriminant's (1 for int, 2 for an enum).
    Union { index: u32 },
    /// A typedef that stellar-xdr turns into a newtype, or a `Box` it inserts to break a
    /// recursion. Costs 1 frame and nothing else.
    Newtype { inner: TypeId },
}

/// How a union's discriminant is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Disc {
    Int,
    Uint,
    Enum { set: u32 },
}

/// Arm table entry meaning "no arm for this discriminant".
pub(crate) const ARM_NONE: u32 = u32::MAX;
/// Arm table entry meaning "void arm: nothing follows the discriminant".
pub(crate) const ARM_VOID: u32 = u32::MAX - 1;

#[derive(Debug)]
pub(crate) struct UnionInfo {
    pub(crate) disc: Disc,
    /// stellar-xdr frames of the union plus its discriminant: 2, or 3 for an enum (enum, i32).
    pub(crate) disc_frames: u32,
    /// Discriminant value of `arms[0]`.
    pub(crate) lo: i64,
    /// Dense table: `arms[v - lo]` is a type id, [`ARM_VOID`] or [`ARM_NONE`].
    pub(crate) arms: Box<[u32]>,
    /// For flat unions: per table slot, the arm's (size, frames); void arms are (0, 0) and
    /// missing arms [`FLAT_NONE`]. Empty for other unions.
    pub(crate) flat: Box<[(u32, u32)]>,
    /// Arm names by discriminant, only for error messages.
    arm_names: Vec<(i64, Box<str>)>,
}

/// Flat-union table entry meaning "no arm for this discriminant".
pub(crate) const FLAT_NONE: (u32, u32) = (u32::MAX, u32::MAX);

impl UnionInfo {
    #[inline]
    pub(crate) fn arm(&self, value: i64) -> u32 {
        let idx = value.wrapping_sub(self.lo);
        if idx >= 0 && (idx as u64) < self.arms.len() as u64 {
            self.arms[idx as usize]
        } else {
            ARM_NONE
        }
    }
}

/// Members of an enum as a bitmap over `lo..lo + 64 * bits.len()`.
#[derive(Debug)]
pub(crate) struct EnumSet {
    lo: i32,
    bits: Box<[u64]>,
}

impl EnumSet {
    #[inline]
    pub(crate) fn contains(&self, value: i32) -> bool {
        let idx = i64::from(value) - i64::from(self.lo);
        if idx < 0 {
            return false;
        }
        let idx = idx as u64;
        match self.bits.get((idx / 64) as usize) {
            Some(word) => word & (1u64 << (idx % 64)) != 0,
            None => false,
        }
    }

    /// The members, ascending.
    pub(crate) fn members(&self) -> impl Iterator<Item = i32> + '_ {
        let lo = i64::from(self.lo);
        (0..self.bits.len() as i64 * 64)
            .filter(|&i| self.bits[(i / 64) as usize] & (1u64 << (i % 64)) != 0)
            .map(move |i| (lo + i) as i32)
    }
}

/// The compiled schema.
#[derive(Debug)]
pub(crate) struct Program {
    pub(crate) ops: Vec<Op>,
    /// Smallest encoded size of each node: lets a var_array with a bogus huge count fail at once
    /// instead of after walking the rest of the input.
    pub(crate) min_size: Vec<u32>,
    names: Vec<Box<str>>,
    /// Whether a node is an inline type (no definition name of its own).
    anonymous: Vec<bool>,
    pub(crate) fields: Vec<TypeId>,
    field_names: Vec<Box<str>>,
    pub(crate) unions: Vec<UnionInfo>,
    pub(crate) enums: Vec<EnumSet>,
    by_name: HashMap<Box<str>, TypeId>,
    /// The lowered form the interpreter runs (see `lower.rs`).
    pub(crate) code: Code,
}

// ---------------------------------------------------------------------------------------------
// JSON shapes. Unknown keys (`source`, `file_index`, `fixed_size`, `member_prefix`) are ignored;
// unknown `kind`s and missing keys make compilation fail loudly.

#[derive(Deserialize)]
struct SchemaFile {
    definitions: Vec<Definition>,
}

#[derive(Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum Definition {
    Struct {
        name: String,
        fields: Vec<FieldDef>,
    },
    Union {
        name: String,
        discriminant: DiscDef,
        arms: Vec<ArmDef>,
    },
    Enum {
        name: String,
        members: Vec<MemberDef>,
    },
    Typedef {
        name: String,
        #[serde(rename = "type")]
        ty: TypeSpec,
    },
    Const {},
}

#[derive(Deserialize)]
struct FieldDef {
    name: String,
    #[serde(rename = "type")]
    ty: TypeSpec,
}

#[derive(Deserialize)]
struct DiscDef {
    #[serde(rename = "type")]
    ty: TypeSpec,
}

#[derive(Deserialize)]
struct ArmDef {
    /// Each case carries its numeric `value` (plus the enum member `name` for enum-typed
    /// discriminants). Schema 30.0.0 has no `default` arms.
    cases: Vec<CaseDef>,
    name: Option<String>,
    /// Absent for `void` arms.
    #[serde(rename = "type")]
    ty: Option<TypeSpec>,
}

#[derive(Deserialize)]
struct CaseDef {
    value: i64,
}

#[derive(Deserialize)]
struct MemberDef {
    value: i32,
}

#[derive(Deserialize, Clone)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum TypeSpec {
    Ref {
        name: String,
    },
    VarArray {
        element: Box<TypeSpec>,
        max_count: Option<u32>,
    },
    Array {
        element: Box<TypeSpec>,
        count: u32,
    },
    String {
        max_size: Option<u32>,
    },
    OpaqueFixed {
        size: u32,
    },
    OpaqueVar {
        max_size: Option<u32>,
    },
    Optional {
        element: Box<TypeSpec>,
    },
    Int,
    UnsignedInt,
    Hyper,
    UnsignedHyper,
    Bool,
}

impl TypeSpec {
    /// Name used for anonymous (inline) nodes in error messages, in `.x` syntax.
    fn display(&self) -> String {
        fn max(m: Option<u32>) -> String {
            m.map(|m| m.to_string()).unwrap_or_default()
        }
        match self {
            TypeSpec::Ref { name } => name.clone(),
            TypeSpec::VarArray { element, max_count } => {
                format!("{}<{}>", element.display(), max(*max_count))
            }
            TypeSpec::Array { element, count } => format!("{}[{count}]", element.display()),
            TypeSpec::String { max_size } => format!("string<{}>", max(*max_size)),
            TypeSpec::OpaqueFixed { size } => format!("opaque[{size}]"),
            TypeSpec::OpaqueVar { max_size } => format!("opaque<{}>", max(*max_size)),
            TypeSpec::Optional { element } => format!("{}*", element.display()),
            TypeSpec::Int => "int".into(),
            TypeSpec::UnsignedInt => "unsigned int".into(),
            TypeSpec::Hyper => "hyper".into(),
            TypeSpec::UnsignedHyper => "unsigned hyper".into(),
            TypeSpec::Bool => "bool".into(),
        }
    }

    /// Primitive integers: stellar-xdr reads them with one frame and turns typedefs of them
    /// into plain type aliases (no newtype frame).
    fn is_integer(&self) -> bool {
        matches!(
            self,
            TypeSpec::Int | TypeSpec::UnsignedInt | TypeSpec::Hyper | TypeSpec::UnsignedHyper
        )
    }
}

/// Error while compiling a schema (only reachable if the embedded JSON is replaced by one with
/// a shape this compiler does not know).
#[derive(Debug, thiserror::Error)]
pub(crate) enum SchemaError {
    #[error("schema JSON does not parse: {0}")]
    Json(#[from] serde_json::Error),
    #[error("schema is inconsistent: {0}")]
    Invalid(String),
}

fn invalid(msg: impl Into<String>) -> SchemaError {
    SchemaError::Invalid(msg.into())
}

// ---------------------------------------------------------------------------------------------

/// What a definition name resolves to while compiling.
#[derive(Clone, Copy)]
enum Target {
    /// A node of its own (struct, union, enum, newtype typedef).
    Node(TypeId),
    /// A typedef of a primitive integer (`uint32`, `int64`, ...): an alias, compiled inline.
    Alias(usize),
}

struct Compiler<'a> {
    defs: &'a [Definition],
    targets: HashMap<&'a str, Target>,
    p: Program,
    /// Definition index each definition node was created for (for the Box analysis).
    def_of_node: HashMap<TypeId, usize>,
}

impl Program {
    pub(crate) fn compile(json: &str) -> Result<Program, SchemaError> {
        let file: SchemaFile = serde_json::from_str(json)?;
        let defs = &file.definitions;
        let mut c = Compiler {
            defs,
            targets: HashMap::new(),
            p: Program {
                ops: Vec::new(),
                min_size: Vec::new(),
                names: Vec::new(),
                anonymous: Vec::new(),
                fields: Vec::new(),
                field_names: Vec::new(),
                unions: Vec::new(),
                enums: Vec::new(),
                by_name: HashMap::new(),
                code: Code::default(),
            },
            def_of_node: HashMap::new(),
        };

        // Pass 1: give every definition its id first so that refs (including recursive ones)
        // resolve regardless of definition order.
        for (i, def) in defs.iter().enumerate() {
            let name = match def {
                Definition::Struct { name, .. }
                | Definition::Union { name, .. }
                | Definition::Enum { name, .. } => name,
                Definition::Typedef { name, ty } if ty.is_integer() => {
                    c.targets.insert(name, Target::Alias(i));
                    continue;
                }
                Definition::Typedef { name, .. } => name,
                Definition::Const {} => continue,
            };
            // Placeholder op; pass 2 fills it in.
            let id = c.push(Op::Plain { size: 0, frames: 0 }, name.clone(), false);
            if c.targets.insert(name, Target::Node(id)).is_some() {
                return Err(invalid(format!("duplicate definition {name}")));
            }
            c.p.by_name.insert(name.as_str().into(), id);
            c.def_of_node.insert(id, i);
        }

        // Pass 2: compile bodies.
        for (i, def) in defs.iter().enumerate() {
            let op = match def {
                Definition::Struct { name, fields } => {
                    let ids = fields
                        .iter()
                        .map(|f| c.spec_boxed(&f.ty, i))
                        .collect::<Result<Vec<_>, _>>()?;
                    let first = c.p.fields.len() as u32;
                    c.p.fields.extend(ids);
                    c.p.field_names
                        .extend(fields.iter().map(|f| f.name.as_str().into()));
                    if fields.is_empty() {
                        return Err(invalid(format!("struct {name} has no fields")));
                    }
                    Op::Struct {
                        first,
                        len: fields.len() as u32,
                    }
                }
                Definition::Union {
                    name,
                    discriminant,
                    arms,
                } => {
                    let info = c.union(name, discriminant, arms, i)?;
                    c.p.unions.push(info);
                    Op::Union {
                        index: c.p.unions.len() as u32 - 1,
                    }
                }
                Definition::Enum { name, members } => {
                    let values: Vec<i32> = members.iter().map(|m| m.value).collect();
                    Op::Enum {
                        set: c.enum_set(name, &values)?,
                    }
                }
                Definition::Typedef { ty, .. } if ty.is_integer() => continue,
                Definition::Typedef { ty, .. } => Op::Newtype {
                    inner: c.spec_boxed(ty, i)?,
                },
                Definition::Const {} => continue,
            };
            let Some(Target::Node(id)) = c.targets.get(def_name(def)).copied() else {
                unreachable!("pass 1 registered every node definition");
            };
            c.p.ops[id as usize] = op;
        }

        let mut p = c.p;
        p.compute_min_sizes();
        p.fold_plain();
        p.fold_flat_unions();
        p.code = lower(&p);
        Ok(p)
    }

    fn compute_min_sizes(&mut self) {
        // Least fixed point from 0: recursion always goes through a var_array/optional (min 4
        // bytes), so this converges in a few rounds.
        let n = self.ops.len();
        let mut min = vec![0u64; n];
        loop {
            let mut changed = false;
            for id in 0..n {
                let m = match self.ops[id] {
                    Op::Plain { size, .. } => u64::from(size),
                    Op::Bool | Op::Enum { .. } | Op::VarBytes { .. } => 4,
                    Op::PaddedFixed { size } => u64::from(size.div_ceil(4) * 4),
                    Op::Array { elem, count } => min[elem as usize] * u64::from(count),
                    Op::VarArray { .. } | Op::Optional { .. } => 4,
                    Op::Struct { first, len } => self.fields
                        [first as usize..(first + len) as usize]
                        .iter()
                        .map(|&f| min[f as usize])
                        .sum(),
                    Op::Union { index } | Op::FlatUnion { index, .. } => {
                        let arms = &self.unions[index as usize].arms;
                        4 + arms
                            .iter()
                            .filter(|&&a| a != ARM_NONE)
                            .map(|&a| if a == ARM_VOID { 0 } else { min[a as usize] })
                            .min()
                            .unwrap_or(0)
                    }
                    Op::Newtype { inner } => min[inner as usize],
                };
                let m = m.min(u64::from(u32::MAX));
                if m != min[id] {
                    min[id] = m;
                    changed = true;
                }
            }
            if !changed {
                break;
            }
        }
        self.min_size = min.into_iter().map(|m| m as u32).collect();
    }

    /// Replace every node whose whole subtree is fixed-size and validation-free by a single
    /// `Plain` op, so skipping e.g. `Hash[4]` or `Price` is one bounds check.
    fn fold_plain(&mut self) {
        // memo: None = unknown, Some(None) = not plain, Some(Some((size, frames))) = plain.
        let n = self.ops.len();
        let mut memo: Vec<Option<Option<(u32, u32)>>> = vec![None; n];
        for id in 0..n {
            self.plain_of(id as TypeId, &mut memo);
        }
        for (id, m) in memo.into_iter().enumerate() {
            if let Some(Some((size, frames))) = m {
                self.ops[id] = Op::Plain { size, frames };
            }
        }
    }

    fn plain_of(&self, id: TypeId, memo: &mut [Option<Option<(u32, u32)>>]) -> Option<(u32, u32)> {
        if let Some(m) = memo[id as usize] {
            return m;
        }
        // Provisional "not plain" breaks cycles (a recursive type is never fixed-size).
        memo[id as usize] = Some(None);
        let r = match self.ops[id as usize] {
            Op::Plain { size, frames } => Some((size, frames)),
            Op::Array { elem, count } => self
                .plain_of(elem, memo)
                .and_then(|(s, f)| Some((s.checked_mul(count)?, f + 1))),
            Op::Struct { first, len } => {
                let mut size = 0u32;
                let mut frames = 0u32;
                let mut ok = true;
                for i in first..first + len {
                    match self.plain_of(self.fields[i as usize], memo) {
                        Some((s, f)) => {
                            size += s;
                            frames = frames.max(f);
                        }
                        None => ok = false,
                    }
                }
                ok.then_some((size, frames + 1))
            }
            Op::Newtype { inner } => self.plain_of(inner, memo).map(|(s, f)| (s, f + 1)),
            _ => None,
        };
        memo[id as usize] = Some(r);
        r
    }

    /// Turn unions whose arms are all void/plain into `FlatUnion`s, and typedef newtypes of
    /// them into `FlatUnion`s with a larger `wrap`. Runs after `fold_plain`.
    fn fold_flat_unions(&mut self) {
        for id in 0..self.ops.len() {
            let Op::Union { index } = self.ops[id] else {
                continue;
            };
            let u = &self.unions[index as usize];
            let flat: Option<Vec<(u32, u32)>> = u
                .arms
                .iter()
                .map(|&a| match a {
                    ARM_NONE => Some(FLAT_NONE),
                    ARM_VOID => Some((0, 0)),
                    a => match self.ops[a as usize] {
                        Op::Plain { size, frames } => Some((size, frames)),
                        _ => None,
                    },
                })
                .collect();
            if let Some(flat) = flat {
                self.unions[index as usize].flat = flat.into();
                self.ops[id] = Op::FlatUnion { index, wrap: 0 };
            }
        }
        // Newtype chains are short (at most two levels); iterate to a fixed point.
        loop {
            let mut changed = false;
            for id in 0..self.ops.len() {
                if let Op::Newtype { inner } = self.ops[id]
                    && let Op::FlatUnion { index, wrap } = self.ops[inner as usize]
                {
                    self.ops[id] = Op::FlatUnion {
                        index,
                        wrap: wrap + 1,
                    };
                    changed = true;
                }
            }
            if !changed {
                break;
            }
        }
    }

    // --- accessors ------------------------------------------------------------------------

    pub(crate) fn lookup(&self, name: &str) -> Option<TypeId> {
        self.by_name.get(name).copied()
    }

    pub(crate) fn name(&self, id: TypeId) -> &str {
        &self.names[id as usize]
    }

    pub(crate) fn is_anonymous(&self, id: TypeId) -> bool {
        self.anonymous[id as usize]
    }

    pub(crate) fn field_name(&self, struct_id: TypeId, field: usize) -> &str {
        match self.ops[struct_id as usize] {
            Op::Struct { first, .. } => &self.field_names[first as usize + field],
            _ => "?",
        }
    }

    /// Field type ids and names of a struct (for hand navigation in `extract.rs`). `None` if
    /// `id` is not a struct (or was folded into a plain run).
    pub(crate) fn struct_fields(&self, id: TypeId) -> Option<(&[TypeId], &[Box<str>])> {
        match self.ops[id as usize] {
            Op::Struct { first, len } => {
                let r = first as usize..(first + len) as usize;
                Some((&self.fields[r.clone()], &self.field_names[r]))
            }
            _ => None,
        }
    }

    pub(crate) fn arm_name(&self, union_id: TypeId, value: i64) -> Option<&str> {
        match self.ops[union_id as usize] {
            Op::Union { index } | Op::FlatUnion { index, .. } => self.unions[index as usize]
                .arm_names
                .iter()
                .find(|(v, _)| *v == value)
                .map(|(_, n)| &**n),
            _ => None,
        }
    }

    /// The arm type of `union_id` for discriminant `value` ([`ARM_NONE`]/[`ARM_VOID`] as in
    /// the table).
    pub(crate) fn union_arm(&self, union_id: TypeId, value: i64) -> Option<u32> {
        match self.ops[union_id as usize] {
            Op::Union { index } | Op::FlatUnion { index, .. } => {
                Some(self.unions[index as usize].arm(value))
            }
            _ => None,
        }
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.ops.len()
    }
}

fn def_name(def: &Definition) -> &str {
    match def {
        Definition::Struct { name, .. }
        | Definition::Union { name, .. }
        | Definition::Enum { name, .. }
        | Definition::Typedef { name, .. } => name,
        Definition::Const {} => "",
    }
}

impl Compiler<'_> {
    fn push(&mut self, op: Op, name: String, anonymous: bool) -> TypeId {
        self.p.ops.push(op);
        self.p.names.push(name.into());
        self.p.anonymous.push(anonymous);
        (self.p.ops.len() - 1) as TypeId
    }

    /// Compile a type appearing directly in a field, arm or typedef of definition `owner`,
    /// wrapping it in a `Box` node where stellar-xdr boxes it.
    fn spec_boxed(&mut self, spec: &TypeSpec, owner: usize) -> Result<TypeId, SchemaError> {
        match spec {
            TypeSpec::Optional { element } => {
                let elem = self.spec_boxed(element, owner)?;
                Ok(self.push(Op::Optional { elem }, spec.display(), true))
            }
            TypeSpec::Ref { name } => match self.targets.get(name.as_str()).copied() {
                Some(Target::Node(id)) if self.needs_box(id, owner) => {
                    Ok(self.push(Op::Newtype { inner: id }, format!("Box<{name}>"), true))
                }
                _ => self.spec(spec),
            },
            _ => self.spec(spec),
        }
    }

    /// stellar-xdr puts a `Box` around a field/arm type that leads back to the enclosing
    /// definition without passing through a variable-length array (a Vec already provides the
    /// indirection); the Box costs one extra depth frame. Within what a LedgerCloseMeta can
    /// contain this is exactly `ClaimPredicate::Not(Option<Box<ClaimPredicate>>)`; a unit test
    /// pins that down.
    fn needs_box(&self, target: TypeId, owner: usize) -> bool {
        let Some(&target_def) = self.def_of_node.get(&target) else {
            return false;
        };
        let mut seen = vec![false; self.defs.len()];
        let mut stack = vec![target_def];
        while let Some(d) = stack.pop() {
            if d == owner {
                return true;
            }
            if std::mem::replace(&mut seen[d], true) {
                continue;
            }
            let mut refs = Vec::new();
            match &self.defs[d] {
                Definition::Struct { fields, .. } => {
                    fields.iter().for_each(|f| direct_refs(&f.ty, &mut refs))
                }
                Definition::Union { arms, .. } => arms
                    .iter()
                    .filter_map(|a| a.ty.as_ref())
                    .for_each(|t| direct_refs(t, &mut refs)),
                Definition::Typedef { ty, .. } => direct_refs(ty, &mut refs),
                _ => {}
            }
            for r in refs {
                if let Some(Target::Node(id)) = self.targets.get(r)
                    && let Some(&rd) = self.def_of_node.get(id)
                {
                    stack.push(rd);
                }
            }
        }
        false
    }

    /// Compile a type into a node id: refs resolve to their definition's node, anything else
    /// becomes an anonymous node (identical ones are shared).
    fn spec(&mut self, spec: &TypeSpec) -> Result<TypeId, SchemaError> {
        let op = match spec {
            TypeSpec::Ref { name } => match self.targets.get(name.as_str()).copied() {
                Some(Target::Node(id)) => return Ok(id),
                // `uint32`, `int64`, ...: inline the integer, but keep the alias's name.
                Some(Target::Alias(def)) => match &self.defs[def] {
                    Definition::Typedef { ty, .. } => integer_op(ty),
                    _ => unreachable!("aliases are typedefs"),
                },
                None => return Err(invalid(format!("reference to undefined type {name}"))),
            },
            TypeSpec::Int | TypeSpec::UnsignedInt | TypeSpec::Hyper | TypeSpec::UnsignedHyper => {
                integer_op(spec)
            }
            TypeSpec::Bool => Op::Bool,
            TypeSpec::OpaqueFixed { size } if size % 4 == 0 => Op::Plain {
                size: *size,
                frames: 1,
            },
            TypeSpec::OpaqueFixed { size } => Op::PaddedFixed { size: *size },
            TypeSpec::OpaqueVar { max_size } | TypeSpec::String { max_size } => Op::VarBytes {
                max: max_size.unwrap_or(u32::MAX),
            },
            TypeSpec::Array { element, count } => Op::Array {
                elem: self.spec(element)?,
                count: *count,
            },
            TypeSpec::VarArray { element, max_count } => Op::VarArray {
                elem: self.spec(element)?,
                max: max_count.unwrap_or(u32::MAX),
            },
            TypeSpec::Optional { element } => Op::Optional {
                elem: self.spec(element)?,
            },
        };
        // Share identical anonymous nodes (every `uint32` is the same node): keeps the program
        // small and hot in cache.
        let name = spec.display();
        let key = format!("#{name}");
        if let Some(&id) = self.p.by_name.get(key.as_str())
            && self.p.ops[id as usize] == op
        {
            return Ok(id);
        }
        let id = self.push(op, name, true);
        self.p.by_name.insert(key.into(), id);
        Ok(id)
    }

    fn enum_set(&mut self, name: &str, values: &[i32]) -> Result<u32, SchemaError> {
        let (Some(&lo), Some(&hi)) = (values.iter().min(), values.iter().max()) else {
            return Err(invalid(format!("enum {name} has no members")));
        };
        let range = (i64::from(hi) - i64::from(lo) + 1) as u64;
        if range > 1 << 16 {
            return Err(invalid(format!("enum {name} spans {range} values")));
        }
        let mut bits = vec![0u64; range.div_ceil(64) as usize];
        for &v in values {
            let i = (i64::from(v) - i64::from(lo)) as u64;
            bits[(i / 64) as usize] |= 1 << (i % 64);
        }
        self.p.enums.push(EnumSet {
            lo,
            bits: bits.into(),
        });
        Ok(self.p.enums.len() as u32 - 1)
    }

    fn union(
        &mut self,
        name: &str,
        disc: &DiscDef,
        arms: &[ArmDef],
        owner: usize,
    ) -> Result<UnionInfo, SchemaError> {
        let disc = match &disc.ty {
            TypeSpec::Int => Disc::Int,
            TypeSpec::UnsignedInt => Disc::Uint,
            TypeSpec::Ref { name: dn } => {
                let id = match self.targets.get(dn.as_str()).copied() {
                    Some(Target::Alias(def)) => match &self.defs[def] {
                        Definition::Typedef {
                            ty: TypeSpec::Int, ..
                        } => return self.union_with(name, Disc::Int, arms, owner),
                        Definition::Typedef {
                            ty: TypeSpec::UnsignedInt,
                            ..
                        } => return self.union_with(name, Disc::Uint, arms, owner),
                        _ => return Err(invalid(format!("union {name}: bad discriminant"))),
                    },
                    Some(Target::Node(id)) => id,
                    None => return Err(invalid(format!("union {name}: unknown discriminant"))),
                };
                match &self.defs[self.def_of_node[&id]] {
                    Definition::Enum { members, .. } => {
                        let values: Vec<i32> = members.iter().map(|m| m.value).collect();
                        Disc::Enum {
                            set: self.enum_set(dn, &values)?,
                        }
                    }
                    _ => return Err(invalid(format!("union {name}: discriminant not an enum"))),
                }
            }
            _ => return Err(invalid(format!("union {name}: unsupported discriminant"))),
        };
        self.union_with(name, disc, arms, owner)
    }

    fn union_with(
        &mut self,
        name: &str,
        disc: Disc,
        arms: &[ArmDef],
        owner: usize,
    ) -> Result<UnionInfo, SchemaError> {
        let mut entries: Vec<(i64, u32, Option<&str>)> = Vec::new();
        for arm in arms {
            if arm.cases.is_empty() {
                return Err(invalid(format!("union {name}: arm without cases")));
            }
            let target = match &arm.ty {
                None => ARM_VOID,
                Some(t) => self.spec_boxed(t, owner)?,
            };
            for case in &arm.cases {
                entries.push((case.value, target, arm.name.as_deref()));
            }
        }
        // The interpreter relies on this: a discriminant that selects an arm is a valid value
        // of the discriminant's enum, so the hot path needs no membership test.
        if let Disc::Enum { set } = disc
            && let Some(v) = entries
                .iter()
                .map(|e| e.0)
                .find(|&v| !self.p.enums[set as usize].contains(v as i32))
        {
            return Err(invalid(format!(
                "union {name}: case {v} is not an enum member"
            )));
        }
        let lo = entries.iter().map(|e| e.0).min().unwrap_or(0);
        let hi = entries.iter().map(|e| e.0).max().unwrap_or(0);
        if hi - lo >= 1 << 16 {
            return Err(invalid(format!("union {name}: discriminants too sparse")));
        }
        let mut table = vec![ARM_NONE; (hi - lo + 1) as usize];
        let mut arm_names = Vec::new();
        for (v, t, n) in entries {
            let slot = &mut table[(v - lo) as usize];
            if *slot != ARM_NONE {
                return Err(invalid(format!("union {name}: duplicate case {v}")));
            }
            *slot = t;
            arm_names.push((v, n.unwrap_or("void").into()));
        }
        Ok(UnionInfo {
            disc,
            disc_frames: if matches!(disc, Disc::Enum { .. }) {
                3
            } else {
                2
            },
            lo,
            arms: table.into(),
            flat: Box::new([]),
            arm_names,
        })
    }
}

/// Integers need no validation: a 4- or 8-byte plain run read with one frame.
fn integer_op(spec: &TypeSpec) -> Op {
    match spec {
        TypeSpec::Hyper | TypeSpec::UnsignedHyper => Op::Plain { size: 8, frames: 1 },
        _ => Op::Plain { size: 4, frames: 1 },
    }
}

/// Definition names referenced by `spec` without going through a variable-length array.
fn direct_refs<'a>(spec: &'a TypeSpec, out: &mut Vec<&'a str>) {
    match spec {
        TypeSpec::Ref { name } => out.push(name),
        TypeSpec::Optional { element } | TypeSpec::Array { element, .. } => {
            direct_refs(element, out)
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_schema_compiles() {
        let p = &*PROGRAM;
        assert!(p.len() > 400, "only {} nodes", p.len());
        for name in [
            "LedgerCloseMeta",
            "LedgerCloseMetaBatch",
            "SCVal",
            "TransactionEnvelope",
        ] {
            assert!(p.lookup(name).is_some(), "{name} missing");
        }
    }

    #[test]
    fn primitive_typedefs_are_aliases_and_hash_is_plain() {
        let p = &*PROGRAM;
        // uint32 is not a node of its own: stellar-xdr makes it `pub type Uint32 = u32`.
        assert!(p.lookup("uint32").is_none());
        // Hash is a newtype around [u8; 32]: 32 bytes, 2 frames.
        let hash = p.lookup("Hash").unwrap();
        assert_eq!(
            p.ops[hash as usize],
            Op::Plain {
                size: 32,
                frames: 2
            }
        );
        // skipList is Hash[4]: array frame + Hash's two.
        let (fields, names) = p.struct_fields(p.lookup("LedgerHeader").unwrap()).unwrap();
        let i = names.iter().position(|n| &**n == "skipList").unwrap();
        assert_eq!(
            p.ops[fields[i] as usize],
            Op::Plain {
                size: 128,
                frames: 3
            }
        );
    }

    #[test]
    fn enum_sets_and_union_tables() {
        let p = &*PROGRAM;
        let Op::Enum { set } = p.ops[p.lookup("EnvelopeType").unwrap() as usize] else {
            panic!("EnvelopeType is not an enum");
        };
        let set = &p.enums[set as usize];
        assert!(set.contains(0) && set.contains(5) && set.contains(10));
        assert!(!set.contains(11) && !set.contains(-1) && !set.contains(i32::MIN));
        let env = p.lookup("TransactionEnvelope").unwrap();
        assert_eq!(p.union_arm(env, 2), p.lookup("TransactionV1Envelope"));
        assert_eq!(p.union_arm(env, 1), Some(ARM_NONE));
        let memo = p.lookup("Memo").unwrap();
        assert_eq!(p.union_arm(memo, 0), Some(ARM_VOID));
        assert_eq!(p.arm_name(memo, 1), Some("text"));
    }

    /// The only Box stellar-xdr inserts in anything a LedgerCloseMeta can contain is
    /// `ClaimPredicate::Not(Option<Box<ClaimPredicate>>)`. If the Box rule changed, depth
    /// accounting would drift from stellar-xdr's.
    #[test]
    fn boxes_reachable_from_ledger_close_meta() {
        let p = &*PROGRAM;
        let mut seen = vec![false; p.len()];
        let mut stack = vec![p.lookup("LedgerCloseMeta").unwrap()];
        let mut boxes = Vec::new();
        while let Some(id) = stack.pop() {
            if std::mem::replace(&mut seen[id as usize], true) {
                continue;
            }
            if p.name(id).starts_with("Box<") {
                boxes.push(p.name(id).to_string());
            }
            match p.ops[id as usize] {
                Op::Array { elem, .. } | Op::VarArray { elem, .. } | Op::Optional { elem } => {
                    stack.push(elem)
                }
                Op::Newtype { inner } => stack.push(inner),
                Op::Struct { first, len } => {
                    stack.extend_from_slice(&p.fields[first as usize..(first + len) as usize])
                }
                Op::Union { index } => stack.extend(
                    p.unions[index as usize]
                        .arms
                        .iter()
                        .filter(|&&a| a != ARM_NONE && a != ARM_VOID),
                ),
                _ => {}
            }
        }
        assert_eq!(boxes, vec!["Box<ClaimPredicate>".to_string()]);
    }
}
