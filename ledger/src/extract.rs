//! Hand navigation of the parts of a LedgerCloseMeta we take row fields from: the ledger header
//! and the transaction set. Fixed layouts are read at known offsets; everything else (Memo,
//! Preconditions, MuxedAccount, each Operation, signatures, ...) is skipped by `Walker::skip`
//! (generated code for every non-leafy field type, see [`skipped_types`]), so nothing is
//! decoded and every byte walked is still validated.
//!
//! The field positions this code relies on are looked up in the schema once and checked by
//! name ([`Known`]), so a schema refresh that moved a field fails loudly instead of reading the
//! wrong bytes. Depth is tracked in stellar-xdr frames, like the interpreter does.

use std::ops::Range;
use std::sync::LazyLock;

use sha2::{Digest, Sha256};

use crate::error::{ErrorKind, Fail, Step, XdrError};
use crate::schema::{Op, PROGRAM, Program, TypeId};
use crate::skip::{DEFAULT_DEPTH_LIMIT, RECURSION_BUDGET, Walker};
use crate::walk_rt::Engine;

/// Row fields of one ledger, taken from its LedgerCloseMeta.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LedgerRow {
    /// The LedgerCloseMeta union arm: 0, 1 or 2.
    pub lcm_version: u32,
    pub ledger_sequence: u32,
    /// `LedgerHeaderHistoryEntry.hash` as stored (see [`header_hash_matches`] to verify it).
    pub ledger_hash: [u8; 32],
    pub previous_ledger_hash: [u8; 32],
    /// `header.scpValue.closeTime`, unix seconds.
    pub close_time: u64,
    /// `header.ledgerVersion`.
    pub protocol_version: u32,
    pub total_coins: i64,
    pub fee_pool: i64,
    /// `header.scpValue.txSetHash`.
    pub tx_set_hash: [u8; 32],
    /// Transaction envelopes in the ledger's transaction set (all phases and components).
    pub tx_count: u32,
    /// Operations of those envelopes; a fee bump counts its inner transaction's operations.
    pub operation_count: u32,
    /// Length of `txProcessing`; equals `tx_count` in every well-formed ledger.
    pub tx_processing_count: u32,
}

/// Byte offsets (from the start of the LedgerCloseMeta) of the header fields a test-data
/// generator needs to relink ledgers into a consistent chain: set sequence, previous hash and
/// close time, then store `sha256(lcm[header_start..header_end])` at `hash`.
/// [`relink_header`] does exactly that.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeaderLayout {
    pub lcm_version: u32,
    /// `LedgerHeaderHistoryEntry.hash`, 32 bytes.
    pub hash: usize,
    /// The `LedgerHeader` XDR is `lcm[header_start..header_end]`.
    pub header_start: usize,
    pub header_end: usize,
    /// `header.previousLedgerHash`, 32 bytes.
    pub previous_ledger_hash: usize,
    /// `header.scpValue.txSetHash`, 32 bytes.
    pub tx_set_hash: usize,
    /// `header.scpValue.closeTime`, 8 bytes big-endian.
    pub close_time: usize,
    /// `header.ledgerSeq`, 4 bytes big-endian.
    pub ledger_seq: usize,
}

impl HeaderLayout {
    pub fn header_range(&self) -> Range<usize> {
        self.header_start..self.header_end
    }
}

/// Schema ids and checked field positions used by the hand navigation.
struct Known {
    lcm: TypeId,
    /// LedgerCloseMetaV0/V1/V2.
    lcm_arm: [TypeId; 3],
    lhhe: TypeId,
    header: TypeId,
    tx_set: TypeId,
    gen_tx_set: TypeId,
    tx_set_v1: TypeId,
    phase: TypeId,
    component: TypeId,
    component_txs: TypeId,
    parallel: TypeId,
    envelope: TypeId,
    v0_envelope: TypeId,
    v0_tx: TypeId,
    v1_envelope: TypeId,
    tx: TypeId,
    fee_bump_envelope: TypeId,
    fee_bump_tx: TypeId,
    inner_tx: TypeId,
}

static KNOWN: LazyLock<Known> = LazyLock::new(|| Known::new(&PROGRAM));

// Field positions, verified by name in `Known::new`.
/// Index of `ledgerHeader` in LedgerCloseMetaV0/V1/V2 (V1 and V2 start with `ext`); `txSet`
/// and `txProcessing` follow it.
const LCM_HEADER: [usize; 3] = [0, 1, 1];
const TX_OPERATIONS: usize = 5; // same in Transaction and TransactionV0
const HEADER_SCP_VALUE: usize = 2;
const HEADER_LEDGER_SEQ: usize = 5;

impl Known {
    fn new(p: &Program) -> Known {
        let id = |name: &str| {
            p.lookup(name)
                .unwrap_or_else(|| panic!("schema lacks {name}"))
        };
        // Check that `name` is a struct whose fields start with `expected`.
        let fields = |name: &str, expected: &[&str]| {
            let (_, names) = p
                .struct_fields(id(name))
                .unwrap_or_else(|| panic!("{name} is not a struct"));
            let got: Vec<&str> = names.iter().take(expected.len()).map(|n| &**n).collect();
            assert_eq!(got, expected, "schema layout of {name} changed");
            id(name)
        };
        let k = Known {
            lcm: id("LedgerCloseMeta"),
            lcm_arm: [
                fields(
                    "LedgerCloseMetaV0",
                    &["ledgerHeader", "txSet", "txProcessing"],
                ),
                fields(
                    "LedgerCloseMetaV1",
                    &["ext", "ledgerHeader", "txSet", "txProcessing"],
                ),
                fields(
                    "LedgerCloseMetaV2",
                    &["ext", "ledgerHeader", "txSet", "txProcessing"],
                ),
            ],
            lhhe: fields("LedgerHeaderHistoryEntry", &["hash", "header", "ext"]),
            header: fields(
                "LedgerHeader",
                &[
                    "ledgerVersion",
                    "previousLedgerHash",
                    "scpValue",
                    "txSetResultHash",
                    "bucketListHash",
                    "ledgerSeq",
                    "totalCoins",
                    "feePool",
                ],
            ),
            tx_set: fields("TransactionSet", &["previousLedgerHash", "txs"]),
            gen_tx_set: id("GeneralizedTransactionSet"),
            tx_set_v1: fields("TransactionSetV1", &["previousLedgerHash", "phases"]),
            phase: id("TransactionPhase"),
            component: id("TxSetComponent"),
            component_txs: fields("TxSetComponentTxsMaybeDiscountedFee", &["baseFee", "txs"]),
            parallel: fields("ParallelTxsComponent", &["baseFee", "executionStages"]),
            envelope: id("TransactionEnvelope"),
            v0_envelope: fields("TransactionV0Envelope", &["tx", "signatures"]),
            v0_tx: fields(
                "TransactionV0",
                &[
                    "sourceAccountEd25519",
                    "fee",
                    "seqNum",
                    "timeBounds",
                    "memo",
                    "operations",
                    "ext",
                ],
            ),
            v1_envelope: fields("TransactionV1Envelope", &["tx", "signatures"]),
            tx: fields(
                "Transaction",
                &[
                    "sourceAccount",
                    "fee",
                    "seqNum",
                    "cond",
                    "memo",
                    "operations",
                    "ext",
                ],
            ),
            fee_bump_envelope: fields("FeeBumpTransactionEnvelope", &["tx", "signatures"]),
            fee_bump_tx: fields(
                "FeeBumpTransaction",
                &["feeSource", "fee", "innerTx", "ext"],
            ),
            inner_tx: id("FeeBumpTransactionInnerTx"),
        };
        // `HeaderLayout` reads txSetHash and closeTime at fixed offsets inside StellarValue.
        fields("StellarValue", &["txSetHash", "closeTime"]);
        // The arms this code follows must be the ones the schema declares.
        for (v, arm) in k.lcm_arm.iter().enumerate() {
            assert_eq!(p.union_arm(k.lcm, v as i64), Some(*arm));
        }
        assert_eq!(p.union_arm(k.gen_tx_set, 1), Some(k.tx_set_v1));
        assert_eq!(p.union_arm(k.component, 0), Some(k.component_txs));
        assert_eq!(p.union_arm(k.phase, 1), Some(k.parallel));
        assert_eq!(p.union_arm(k.envelope, 0), Some(k.v0_envelope));
        assert_eq!(p.union_arm(k.envelope, 2), Some(k.v1_envelope));
        assert_eq!(p.union_arm(k.envelope, 5), Some(k.fee_bump_envelope));
        assert_eq!(p.union_arm(k.inner_tx, 2), Some(k.v1_envelope));
        k
    }
}

impl Known {
    /// The (struct, field range) pairs that [`Nav::skip_fields`] is called with below; keep in
    /// step with the navigation (a field missing here is still skipped correctly, only by the
    /// interpreter).
    fn skipped_fields(&self, p: &Program) -> Vec<(TypeId, Range<usize>)> {
        let all = |id: TypeId| (id, 0..p.struct_fields(id).expect("a struct").0.len());
        let mut v: Vec<(TypeId, Range<usize>)> = (0..3)
            .map(|version| (self.lcm_arm[version], 0..LCM_HEADER[version]))
            .collect();
        v.extend([
            (self.lhhe, 0..1),
            (self.lhhe, 2..3),
            all(self.header),
            (self.tx_set, 0..1),
            (self.tx_set_v1, 0..1),
            (self.parallel, 0..1),
            (self.component_txs, 0..1),
            (self.v0_envelope, 1..2),
            (self.v1_envelope, 1..2),
            (self.fee_bump_envelope, 1..2),
            (self.fee_bump_tx, 0..2),
            (self.fee_bump_tx, 3..4),
            all(self.tx),
            all(self.v0_tx),
        ]);
        v
    }
}

/// Every type the hand navigation passes to `Walker::skip`. The generator (`codegen.rs`)
/// compiles their blocks too, so none of them is left to the interpreter.
pub(crate) fn skipped_types(p: &Program) -> Vec<TypeId> {
    let mut out = Vec::new();
    for (id, range) in Known::new(p).skipped_fields(p) {
        let (fields, _) = p.struct_fields(id).expect("Known checked this is a struct");
        out.extend_from_slice(&fields[range]);
    }
    out.sort_unstable();
    out.dedup();
    out
}

/// Envelope type discriminants (`EnvelopeType`).
const ENVELOPE_TYPE_TX_V0: i32 = 0;
const ENVELOPE_TYPE_TX: i32 = 2;
const ENVELOPE_TYPE_TX_FEE_BUMP: i32 = 5;

struct Nav<'a> {
    w: Walker<'a>,
    k: &'static Known,
    p: &'static Program,
}

/// What the header walk found.
struct Header {
    layout: HeaderLayout,
    /// Position after the LedgerHeaderHistoryEntry (where the tx set starts).
    end: usize,
}

impl<'a> Nav<'a> {
    fn new(buf: &'a [u8]) -> Self {
        Self::with(
            buf,
            DEFAULT_DEPTH_LIMIT,
            Engine::Generated,
            RECURSION_BUDGET,
        )
    }

    fn with(buf: &'a [u8], depth_limit: u32, engine: Engine, budget: u32) -> Self {
        let p: &'static Program = &PROGRAM;
        let mut w = Walker::new(p, buf, depth_limit);
        engine.configure(&mut w);
        w.budget = budget;
        Nav { w, k: &KNOWN, p }
    }

    fn fields(&self, id: TypeId) -> &'static [TypeId] {
        match self.p.ops[id as usize] {
            Op::Struct { first, len } => &self.p.fields[first as usize..(first + len) as usize],
            _ => unreachable!("Known checked this is a struct"),
        }
    }

    /// Skip fields `range` of struct `id` starting at `pos`, the struct itself being at `depth`.
    fn skip_fields(
        &self,
        id: TypeId,
        range: Range<usize>,
        mut pos: usize,
        depth: u32,
    ) -> Result<usize, Fail> {
        let fields = self.fields(id);
        for i in range {
            pos = self
                .w
                .skip(fields[i], pos, depth + 1)
                .map_err(|e| e.push(Step::Field(id, i as u32)))?;
        }
        Ok(pos)
    }

    /// Read the discriminant of union `id` (skipped at `depth`) at `pos`; fails unless it
    /// selects an arm.
    fn union_disc(&self, id: TypeId, pos: usize, depth: u32) -> Result<i64, Fail> {
        let (Op::Union { index } | Op::FlatUnion { index, wrap: 0 }) = self.p.ops[id as usize]
        else {
            unreachable!("Known checked this is an unwrapped union");
        };
        let u = &self.p.unions[index as usize];
        let value = self.w.discriminant(u, id, pos, depth)?;
        if u.arm(value) == crate::schema::ARM_NONE {
            return Err(self.w.no_arm(u, id, pos, value));
        }
        Ok(value)
    }

    /// A struct entered by hand costs one frame, like in the interpreter.
    fn enter(&self, id: TypeId, pos: usize, depth: u32) -> Result<(), Fail> {
        if depth + 1 > self.w.limit {
            return Err(Fail::new(
                ErrorKind::DepthExceeded {
                    limit: self.w.limit,
                },
                pos,
                id,
            ));
        }
        Ok(())
    }

    /// A var_array's element count, for var_array node `arr` skipped at `depth`.
    fn array_len(&self, arr: TypeId, pos: usize, depth: u32) -> Result<u32, Fail> {
        let Op::VarArray { elem, max } = self.p.ops[arr as usize] else {
            unreachable!("caller passes a var_array node");
        };
        if depth + 2 > self.w.limit {
            return Err(Fail::new(
                ErrorKind::DepthExceeded {
                    limit: self.w.limit,
                },
                pos,
                arr,
            ));
        }
        self.w.length(pos, max, self.p.min_size[elem as usize], arr)
    }

    /// Walk the LedgerCloseMeta up to the end of its LedgerHeaderHistoryEntry.
    fn header(&self) -> Result<Header, Fail> {
        let k = self.k;
        // LedgerCloseMeta union at depth 0; its arm struct at depth 1; arm fields at depth 2.
        let version = self.union_disc(k.lcm, 0, 0)? as u32;
        let arm = k.lcm_arm[version as usize];
        self.enter(arm, 4, 1)
            .map_err(|e| e.push(Step::Arm(k.lcm, version.into())))?;
        let in_arm = |e: Fail| e.push(Step::Arm(k.lcm, version.into()));
        let header_field = LCM_HEADER[version as usize];
        let lhhe_pos = self
            .skip_fields(arm, 0..header_field, 4, 1)
            .map_err(in_arm)?;
        let in_lhhe = |e: Fail| in_arm(e.push(Step::Field(arm, header_field as u32)));

        // LedgerHeaderHistoryEntry (depth 2): hash, header, ext.
        self.enter(k.lhhe, lhhe_pos, 2).map_err(in_lhhe)?;
        let hash = lhhe_pos;
        let header_start = self.skip_fields(k.lhhe, 0..1, hash, 2).map_err(in_lhhe)?;
        let in_header = |e: Fail| in_lhhe(e.push(Step::Field(k.lhhe, 1)));

        // LedgerHeader (depth 3): ledgerVersion, previousLedgerHash, scpValue, ...
        self.enter(k.header, header_start, 3).map_err(in_header)?;
        let scp_value = self
            .skip_fields(k.header, 0..HEADER_SCP_VALUE, header_start, 3)
            .map_err(in_header)?;
        // StellarValue starts with txSetHash (32) and closeTime (8); the interpreter checks the
        // whole value (and thereby that those 40 bytes exist) when skipping it.
        let after_scp = self
            .skip_fields(k.header, HEADER_SCP_VALUE..HEADER_LEDGER_SEQ, scp_value, 3)
            .map_err(in_header)?;
        let ledger_seq = after_scp;
        let n = self.fields(k.header).len();
        let header_end = self
            .skip_fields(k.header, HEADER_LEDGER_SEQ..n, ledger_seq, 3)
            .map_err(in_header)?;
        let end = self
            .skip_fields(k.lhhe, 2..3, header_end, 2)
            .map_err(in_lhhe)?;
        Ok(Header {
            layout: HeaderLayout {
                lcm_version: version,
                hash,
                header_start,
                header_end,
                previous_ledger_hash: header_start + 4,
                tx_set_hash: scp_value,
                close_time: scp_value + 32,
                ledger_seq,
            },
            end,
        })
    }

    /// Count envelopes and operations of the tx set at `pos`; returns (txs, ops, end).
    fn tx_set(&self, version: u32, pos: usize) -> Result<(u32, u32, usize), Fail> {
        let k = self.k;
        let arm = k.lcm_arm[version as usize];
        let field = LCM_HEADER[version as usize] as u32 + 1;
        let ctx = |e: Fail| {
            e.push(Step::Field(arm, field))
                .push(Step::Arm(k.lcm, version.into()))
        };
        // The tx set is a field of the arm struct: skipped at depth 2.
        if version == 0 {
            self.classic_tx_set(pos, 2).map_err(ctx)
        } else {
            self.generalized_tx_set(pos, 2).map_err(ctx)
        }
    }

    /// `TransactionSet { Hash previousLedgerHash; TransactionEnvelope txs<>; }` at `depth`.
    fn classic_tx_set(&self, pos: usize, depth: u32) -> Result<(u32, u32, usize), Fail> {
        let k = self.k;
        self.enter(k.tx_set, pos, depth)?;
        let txs_pos = self.skip_fields(k.tx_set, 0..1, pos, depth)?;
        let txs = self.fields(k.tx_set)[1];
        self.envelopes(txs, txs_pos, depth + 1)
            .map_err(|e| e.push(Step::Field(k.tx_set, 1)))
    }

    /// `GeneralizedTransactionSet` (v1 only) at `depth`.
    fn generalized_tx_set(&self, pos: usize, depth: u32) -> Result<(u32, u32, usize), Fail> {
        let k = self.k;
        let v = self.union_disc(k.gen_tx_set, pos, depth)?;
        let in_v1 = |e: Fail| e.push(Step::Arm(k.gen_tx_set, v));
        // TransactionSetV1 at depth + 1: previousLedgerHash, phases<>.
        let d = depth + 1;
        self.enter(k.tx_set_v1, pos + 4, d).map_err(in_v1)?;
        let mut at = self
            .skip_fields(k.tx_set_v1, 0..1, pos + 4, d)
            .map_err(in_v1)?;
        let phases = self.fields(k.tx_set_v1)[1];
        let in_phases = |e: Fail| in_v1(e.push(Step::Field(k.tx_set_v1, 1)));
        let n = self.array_len(phases, at, d + 1).map_err(in_phases)?;
        at += 4;
        let (mut txs, mut ops) = (0u32, 0u32);
        for i in 0..n {
            let (t, o, end) = self
                .phase(at, d + 2)
                .map_err(|e| in_phases(e.push(Step::Index(phases, i))))?;
            txs += t;
            ops += o;
            at = end;
        }
        Ok((txs, ops, at))
    }

    /// `TransactionPhase` at `depth`: v0 = TxSetComponent list, v1 = ParallelTxsComponent.
    fn phase(&self, pos: usize, depth: u32) -> Result<(u32, u32, usize), Fail> {
        let k = self.k;
        let v = self.union_disc(k.phase, pos, depth)?;
        let in_arm = |e: Fail| e.push(Step::Arm(k.phase, v));
        let arm = self.p.union_arm(k.phase, v).expect("phase is a union");
        let d = depth + 1;
        let mut at = pos + 4;
        let (mut txs, mut ops) = (0u32, 0u32);
        if v == 0 {
            // TxSetComponent<> at depth d; each component union at d + 1.
            let n = self.array_len(arm, at, d).map_err(in_arm)?;
            at += 4;
            for i in 0..n {
                let (t, o, end) = self
                    .component(at, d + 1)
                    .map_err(|e| in_arm(e.push(Step::Index(arm, i))))?;
                txs += t;
                ops += o;
                at = end;
            }
        } else {
            // ParallelTxsComponent at d: baseFee*, executionStages<> of clusters<> of envelopes.
            self.enter(k.parallel, at, d).map_err(in_arm)?;
            at = self.skip_fields(k.parallel, 0..1, at, d).map_err(in_arm)?;
            let stages = self.fields(k.parallel)[1];
            let in_stages = |e: Fail| in_arm(e.push(Step::Field(k.parallel, 1)));
            let n = self.array_len(stages, at, d + 1).map_err(in_stages)?;
            at += 4;
            for i in 0..n {
                // ParallelTxExecutionStage: newtype (frame) around DependentTxCluster<>.
                let Op::VarArray { elem: stage, .. } = self.p.ops[stages as usize] else {
                    unreachable!("executionStages is a var_array");
                };
                let (t, o, end) = self
                    .stage(stage, at, d + 2)
                    .map_err(|e| in_stages(e.push(Step::Index(stages, i))))?;
                txs += t;
                ops += o;
                at = end;
            }
        }
        Ok((txs, ops, at))
    }

    /// `ParallelTxExecutionStage` node `stage` at `depth`: a typedef (newtype, one frame) of
    /// `DependentTxCluster<>`, each cluster a typedef of `TransactionEnvelope<>`.
    fn stage(&self, stage: TypeId, pos: usize, depth: u32) -> Result<(u32, u32, usize), Fail> {
        let Op::Newtype { inner: clusters } = self.p.ops[stage as usize] else {
            unreachable!("ParallelTxExecutionStage is a typedef of a var_array");
        };
        let Op::VarArray { elem: cluster, .. } = self.p.ops[clusters as usize] else {
            unreachable!("ParallelTxExecutionStage is a typedef of a var_array");
        };
        let Op::Newtype { inner: envelopes } = self.p.ops[cluster as usize] else {
            unreachable!("DependentTxCluster is a typedef of a var_array");
        };
        self.enter(stage, pos, depth)?;
        let n = self.array_len(clusters, pos, depth + 1)?;
        let mut at = pos + 4;
        let (mut txs, mut ops) = (0u32, 0u32);
        for i in 0..n {
            let (t, o, end) = self
                .enter(cluster, at, depth + 2)
                .and_then(|()| self.envelopes(envelopes, at, depth + 3))
                .map_err(|e| e.push(Step::Index(clusters, i)))?;
            txs += t;
            ops += o;
            at = end;
        }
        Ok((txs, ops, at))
    }

    /// `TxSetComponent` union at `depth` (only TXSET_COMP_TXS_MAYBE_DISCOUNTED_FEE exists).
    fn component(&self, pos: usize, depth: u32) -> Result<(u32, u32, usize), Fail> {
        let k = self.k;
        let v = self.union_disc(k.component, pos, depth)?;
        let in_arm = |e: Fail| e.push(Step::Arm(k.component, v));
        let d = depth + 1;
        self.enter(k.component_txs, pos + 4, d).map_err(in_arm)?;
        let at = self
            .skip_fields(k.component_txs, 0..1, pos + 4, d)
            .map_err(in_arm)?;
        let txs = self.fields(k.component_txs)[1];
        self.envelopes(txs, at, d + 1)
            .map_err(|e| in_arm(e.push(Step::Field(k.component_txs, 1))))
    }

    /// A `TransactionEnvelope<>` var_array node `arr` at `depth`.
    fn envelopes(&self, arr: TypeId, pos: usize, depth: u32) -> Result<(u32, u32, usize), Fail> {
        let n = self.array_len(arr, pos, depth)?;
        let mut at = pos + 4;
        let mut ops = 0u32;
        for i in 0..n {
            let (o, end) = self
                .envelope(at, depth + 1)
                .map_err(|e| e.push(Step::Index(arr, i)))?;
            ops += o;
            at = end;
        }
        Ok((n, ops, at))
    }

    /// One `TransactionEnvelope` at `depth`: (operation count, end).
    fn envelope(&self, pos: usize, depth: u32) -> Result<(u32, usize), Fail> {
        let k = self.k;
        let v = self.union_disc(k.envelope, pos, depth)?;
        let in_arm = |e: Fail| e.push(Step::Arm(k.envelope, v));
        let d = depth + 1;
        let at = pos + 4;
        match v as i32 {
            ENVELOPE_TYPE_TX_V0 => {
                self.enter(k.v0_envelope, at, d).map_err(in_arm)?;
                let (ops, at) = self
                    .transaction(k.v0_tx, at, d + 1)
                    .map_err(|e| in_arm(e.push(Step::Field(k.v0_envelope, 0))))?;
                let end = self
                    .skip_fields(k.v0_envelope, 1..2, at, d)
                    .map_err(in_arm)?;
                Ok((ops, end))
            }
            ENVELOPE_TYPE_TX => self.v1_envelope(at, d).map_err(in_arm),
            ENVELOPE_TYPE_TX_FEE_BUMP => {
                // FeeBumpTransactionEnvelope { FeeBumpTransaction tx; signatures }: only the
                // inner transaction's operations count.
                self.enter(k.fee_bump_envelope, at, d).map_err(in_arm)?;
                let in_tx = |e: Fail| in_arm(e.push(Step::Field(k.fee_bump_envelope, 0)));
                let tx_d = d + 1;
                self.enter(k.fee_bump_tx, at, tx_d).map_err(in_tx)?;
                let inner = self
                    .skip_fields(k.fee_bump_tx, 0..2, at, tx_d)
                    .map_err(in_tx)?;
                let in_inner = |e: Fail| in_tx(e.push(Step::Field(k.fee_bump_tx, 2)));
                let iv = self
                    .union_disc(k.inner_tx, inner, tx_d + 1)
                    .map_err(in_inner)?;
                let (ops, at) = self
                    .v1_envelope(inner + 4, tx_d + 2)
                    .map_err(|e| in_inner(e.push(Step::Arm(k.inner_tx, iv))))?;
                let at = self
                    .skip_fields(k.fee_bump_tx, 3..4, at, tx_d)
                    .map_err(in_tx)?;
                let end = self
                    .skip_fields(k.fee_bump_envelope, 1..2, at, d)
                    .map_err(in_arm)?;
                Ok((ops, end))
            }
            // union_disc only returns discriminants that have arms.
            _ => unreachable!("TransactionEnvelope arms are TX_V0, TX, TX_FEE_BUMP"),
        }
    }

    /// `TransactionV1Envelope { Transaction tx; DecoratedSignature signatures<20>; }` at `depth`.
    fn v1_envelope(&self, pos: usize, depth: u32) -> Result<(u32, usize), Fail> {
        let k = self.k;
        self.enter(k.v1_envelope, pos, depth)?;
        let (ops, at) = self
            .transaction(k.tx, pos, depth + 1)
            .map_err(|e| e.push(Step::Field(k.v1_envelope, 0)))?;
        let end = self.skip_fields(k.v1_envelope, 1..2, at, depth)?;
        Ok((ops, end))
    }

    /// `Transaction` or `TransactionV0` struct `id` at `depth`: (operations.len(), end).
    fn transaction(&self, id: TypeId, pos: usize, depth: u32) -> Result<(u32, usize), Fail> {
        self.enter(id, pos, depth)?;
        let ops_pos = self.skip_fields(id, 0..TX_OPERATIONS, pos, depth)?;
        let ops_arr = self.fields(id)[TX_OPERATIONS];
        let ops = self
            .array_len(ops_arr, ops_pos, depth + 1)
            .map_err(|e| e.push(Step::Field(id, TX_OPERATIONS as u32)))?;
        let n = self.fields(id).len();
        let end = self.skip_fields(id, TX_OPERATIONS..n, ops_pos, depth)?;
        Ok((ops, end))
    }

    /// Length of `txProcessing` (the field after the tx set) at `pos`.
    fn tx_processing_len(&self, version: u32, pos: usize) -> Result<u32, Fail> {
        let k = self.k;
        let arm = k.lcm_arm[version as usize];
        let field = LCM_HEADER[version as usize] + 2;
        let arr = self.fields(arm)[field];
        self.array_len(arr, pos, 2).map_err(|e| {
            e.push(Step::Field(arm, field as u32))
                .push(Step::Arm(k.lcm, version.into()))
        })
    }
}

fn be_u32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

fn be_u64(b: &[u8], at: usize) -> u64 {
    u64::from_be_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

fn hash32(b: &[u8], at: usize) -> [u8; 32] {
    b[at..at + 32].try_into().expect("32 bytes")
}

fn fail(e: Fail) -> XdrError {
    e.into_error(&PROGRAM)
}

/// Extract the row fields of one LedgerCloseMeta. Walks (and validates) only the header, the
/// transaction set and the `txProcessing` length; pair with [`validate_lcm`](crate::validate_lcm)
/// (or [`split_batch`](crate::split_batch), which validates) for a full check.
pub fn extract_row(lcm_xdr: &[u8]) -> Result<LedgerRow, XdrError> {
    row(&Nav::new(lcm_xdr))
}

/// [`extract_row`] with a chosen depth limit, walker and recursion budget. For tests and
/// benchmarks that hold the walkers to the same results; not part of the API.
#[doc(hidden)]
pub fn extract_row_with(
    lcm_xdr: &[u8],
    depth_limit: u32,
    engine: Engine,
    budget: u32,
) -> Result<LedgerRow, XdrError> {
    row(&Nav::with(lcm_xdr, depth_limit, engine, budget))
}

fn row(nav: &Nav<'_>) -> Result<LedgerRow, XdrError> {
    let lcm_xdr = nav.w.buf;
    let h = nav.header().map_err(fail)?;
    let (tx_count, operation_count, after_set) =
        nav.tx_set(h.layout.lcm_version, h.end).map_err(fail)?;
    let tx_processing_count = nav
        .tx_processing_len(h.layout.lcm_version, after_set)
        .map_err(fail)?;
    let b = lcm_xdr;
    let l = &h.layout;
    let hs = l.header_start;
    Ok(LedgerRow {
        lcm_version: l.lcm_version,
        ledger_sequence: be_u32(b, l.ledger_seq),
        ledger_hash: hash32(b, l.hash),
        previous_ledger_hash: hash32(b, l.previous_ledger_hash),
        close_time: be_u64(b, l.close_time),
        protocol_version: be_u32(b, hs),
        total_coins: be_u64(b, l.ledger_seq + 4) as i64,
        fee_pool: be_u64(b, l.ledger_seq + 12) as i64,
        tx_set_hash: hash32(b, l.tx_set_hash),
        tx_count,
        operation_count,
        tx_processing_count,
    })
}

/// Byte offsets of the header fields; see [`HeaderLayout`].
pub fn header_layout(lcm_xdr: &[u8]) -> Result<HeaderLayout, XdrError> {
    Nav::new(lcm_xdr).header().map(|h| h.layout).map_err(fail)
}

/// Whether `sha256(LedgerHeader XDR) == LedgerHeaderHistoryEntry.hash`, i.e. whether the stored
/// ledger hash really is the hash of the stored header.
pub fn header_hash_matches(lcm_xdr: &[u8]) -> Result<bool, XdrError> {
    let l = header_layout(lcm_xdr)?;
    let digest = Sha256::digest(&lcm_xdr[l.header_range()]);
    Ok(digest.as_slice() == &lcm_xdr[l.hash..l.hash + 32])
}

/// Rewrite a LedgerCloseMeta in place into a link of a chain: set `ledgerSeq`,
/// `previousLedgerHash` and `scpValue.closeTime`, then recompute and store the header hash,
/// which is returned (it is the next ledger's `previous_ledger_hash`). For test-data generators;
/// the transaction set's own `previousLedgerHash` is left alone because changing it would
/// invalidate `txSetHash`.
pub fn relink_header(
    lcm_xdr: &mut [u8],
    ledger_seq: u32,
    previous_ledger_hash: &[u8; 32],
    close_time: u64,
) -> Result<[u8; 32], XdrError> {
    let l = header_layout(lcm_xdr)?;
    lcm_xdr[l.ledger_seq..l.ledger_seq + 4].copy_from_slice(&ledger_seq.to_be_bytes());
    lcm_xdr[l.previous_ledger_hash..l.previous_ledger_hash + 32]
        .copy_from_slice(previous_ledger_hash);
    lcm_xdr[l.close_time..l.close_time + 8].copy_from_slice(&close_time.to_be_bytes());
    let hash: [u8; 32] = Sha256::digest(&lcm_xdr[l.header_range()]).into();
    lcm_xdr[l.hash..l.hash + 32].copy_from_slice(&hash);
    Ok(hash)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_layout_matches_schema() {
        // Panics (with the offending type) if the schema moved a field we read by position.
        let _ = &*KNOWN;
    }
}
