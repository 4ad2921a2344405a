//! Shared harness of the end-to-end tests: run the real binary, build datastores from real
//! ledgers, and an independent oracle (a full decode with the reference `stellar-xdr` library)
//! for every column of the output.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::Value;
use sha2::{Digest, Sha256};
use stellar_xdr::{
    FeeBumpTransactionInnerTx, GeneralizedTransactionSet, LedgerCloseMeta, LedgerCloseMetaBatch,
    Limits, ReadXdr, TransactionEnvelope, TransactionPhase, TxSetComponent, WriteXdr,
};

pub const TESTNET: &str = "Test SDF Network ; September 2015";

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

pub fn fixture(rel: &str) -> PathBuf {
    repo_root().join("tests/fixtures").join(rel)
}

/// Small real ledgers of every LCM version (v0, v1, v2), used as generator templates where size
/// does not matter.
pub fn small_templates() -> PathBuf {
    repo_root().join("ledger/tests/data/stellar-core-protocols")
}

/// The binary, with an environment that can never reach a cloud.
pub fn copier() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_bronze-copier"));
    for (key, _) in std::env::vars() {
        if key.starts_with("AWS_")
            || key.starts_with("GOOGLE_")
            || key == "CONFIG_FILE"
            || key == "RUST_LOG"
        {
            cmd.env_remove(key);
        }
    }
    for var in bronze::config::ENV_VARS.iter().map(|(v, _, _)| *v) {
        cmd.env_remove(var);
    }
    cmd.env("AWS_EC2_METADATA_DISABLED", "true")
        .stdin(Stdio::null());
    cmd
}

pub fn exec(cmd: &mut Command) -> Output {
    cmd.output().expect("run bronze-copier")
}

pub fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Runs the copier with a config file and asserts the exit code.
pub fn run_config(config: &Path, expect_code: i32) -> String {
    let out = exec(copier().arg("-config").arg(config).arg("--no-progress"));
    let log = text(&out);
    assert_eq!(
        out.status.code(),
        Some(expect_code),
        "unexpected exit; output:\n{log}"
    );
    log
}

/// A generated datastore of real ledgers relinked into a valid chain.
pub fn generate(
    out: &Path,
    templates: &Path,
    first: u32,
    ledgers: u32,
    per_batch: u32,
    batches: u32,
) {
    bronze::generate::generate_datastore(&bronze::generate::GenerateSpec {
        ledgers_per_batch: per_batch,
        batches_per_partition: batches,
        first_close_time: 1_700_000_000,
        genesis_previous_hash: [7; 32],
        ..bronze::generate::GenerateSpec::new(
            out,
            vec![templates.to_path_buf()],
            TESTNET,
            first,
            ledgers,
        )
    })
    .expect("generate datastore");
}

/// Every object file of a local datastore (recursively), by name.
pub fn object_files(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if path.to_string_lossy().contains(".xdr.zst") {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

/// The object file holding `seq` (single-ledger batches).
pub fn object_for(root: &Path, seq: u32) -> PathBuf {
    let suffix = format!("--{seq}.xdr.zst");
    object_files(root)
        .into_iter()
        .find(|p| p.file_name().unwrap().to_string_lossy().ends_with(&suffix))
        .unwrap_or_else(|| panic!("no object for ledger {seq}"))
}

pub fn unzstd(bytes: &[u8]) -> Vec<u8> {
    zstd::decode_all(bytes).unwrap()
}

/// zstd with a content checksum, as Galexie writes.
pub fn zstd(bytes: &[u8]) -> Vec<u8> {
    let mut c = zstd::bulk::Compressor::new(1).unwrap();
    c.include_checksum(true).unwrap();
    c.compress(bytes).unwrap()
}

/// What each column must hold for one ledger, computed by the reference decoder.
#[derive(Debug, Clone, PartialEq)]
pub struct Expected {
    pub ledger_sequence: u64,
    pub ledger_hash: String,
    pub previous_ledger_hash: String,
    pub close_time_ms: i64,
    pub protocol_version: u64,
    pub total_coins: i64,
    pub fee_pool: i64,
    pub tx_set_hash: String,
    pub tx_count: i64,
    pub operation_count: i64,
    pub xdr_hex: String,
    pub xdr_len: i64,
    pub xdr_sha256: String,
}

fn envelope_ops(e: &TransactionEnvelope) -> usize {
    match e {
        TransactionEnvelope::TxV0(e) => e.tx.operations.len(),
        TransactionEnvelope::Tx(e) => e.tx.operations.len(),
        TransactionEnvelope::TxFeeBump(e) => match &e.tx.inner_tx {
            FeeBumpTransactionInnerTx::Tx(inner) => inner.tx.operations.len(),
        },
    }
}

fn generalized(set: &GeneralizedTransactionSet) -> Vec<&TransactionEnvelope> {
    let GeneralizedTransactionSet::V1(v1) = set;
    let mut out = Vec::new();
    for phase in v1.phases.iter() {
        match phase {
            TransactionPhase::V0(components) => {
                for TxSetComponent::TxsetCompTxsMaybeDiscountedFee(c) in components.iter() {
                    out.extend(c.txs.iter());
                }
            }
            TransactionPhase::V1(p) => {
                for stage in p.execution_stages.iter() {
                    for cluster in stage.0.iter() {
                        out.extend(cluster.0.iter());
                    }
                }
            }
        }
    }
    out
}

pub fn expected_for(lcm: &LedgerCloseMeta) -> Expected {
    let (entry, envelopes) = match lcm {
        LedgerCloseMeta::V0(v) => (&v.ledger_header, v.tx_set.txs.iter().collect::<Vec<_>>()),
        LedgerCloseMeta::V1(v) => (&v.ledger_header, generalized(&v.tx_set)),
        LedgerCloseMeta::V2(v) => (&v.ledger_header, generalized(&v.tx_set)),
    };
    let h = &entry.header;
    let xdr = lcm.to_xdr(Limits::none()).unwrap();
    Expected {
        ledger_sequence: u64::from(h.ledger_seq),
        ledger_hash: hex::encode(entry.hash.0),
        previous_ledger_hash: hex::encode(h.previous_ledger_hash.0),
        close_time_ms: h.scp_value.close_time.0 as i64 * 1000,
        protocol_version: u64::from(h.ledger_version),
        total_coins: h.total_coins,
        fee_pool: h.fee_pool,
        tx_set_hash: hex::encode(h.scp_value.tx_set_hash.0),
        tx_count: envelopes.len() as i64,
        operation_count: envelopes.iter().map(|e| envelope_ops(e)).sum::<usize>() as i64,
        xdr_len: xdr.len() as i64,
        xdr_sha256: hex::encode(Sha256::digest(&xdr)),
        xdr_hex: hex::encode(&xdr),
    }
}

/// Expected rows of every ledger in a local datastore, decoded with the reference library.
pub fn expected_rows(datastore: &Path) -> BTreeMap<u64, Expected> {
    let mut out = BTreeMap::new();
    for file in object_files(datastore) {
        let xdr = unzstd(&std::fs::read(&file).unwrap());
        let batch = LedgerCloseMetaBatch::from_xdr(&xdr, Limits::none()).unwrap();
        for lcm in batch.ledger_close_metas.iter() {
            let e = expected_for(lcm);
            out.insert(e.ledger_sequence, e);
        }
    }
    out
}

/// The 17 columns of section 4.2, with the Arrow types pyarrow reports and Parquet's physical
/// and logical types.
pub const SCHEMA: [(&str, &str, &str); 17] = [
    ("ledger_sequence", "uint64", "INT64"),
    ("ledger_hash", "string", "BYTE_ARRAY"),
    ("previous_ledger_hash", "string", "BYTE_ARRAY"),
    ("close_time", "timestamp[ms, tz=UTC]", "INT64"),
    ("protocol_version", "uint32", "INT32"),
    ("total_coins", "int64", "INT64"),
    ("fee_pool", "int64", "INT64"),
    ("tx_set_hash", "string", "BYTE_ARRAY"),
    ("tx_count", "int32", "INT32"),
    ("operation_count", "int32", "INT32"),
    ("xdr_bytes", "binary", "BYTE_ARRAY"),
    ("xdr_byte_length", "int32", "INT32"),
    ("xdr_sha256", "string", "BYTE_ARRAY"),
    ("bronze_version", "string", "BYTE_ARRAY"),
    ("era_id", "string", "BYTE_ARRAY"),
    ("network", "string", "BYTE_ARRAY"),
    ("ingested_at", "timestamp[ms, tz=UTC]", "INT64"),
];

/// Reads a Parquet file with pyarrow and checks schema and every value against the oracle.
/// Returns the ledger sequences it holds.
pub fn check_parquet_with_pyarrow(
    path: &Path,
    expected: &BTreeMap<u64, Expected>,
    labels: (&str, &str, &str),
    ingested_at_ms: Option<i64>,
) -> Vec<u64> {
    let dump = bronze_testkit::parquet_dump(path);
    let fields = dump["arrow_schema"].as_array().unwrap();
    assert_eq!(fields.len(), 17, "{path:?}");
    for ((name, arrow_type, physical), (field, column)) in SCHEMA
        .iter()
        .zip(fields.iter().zip(dump["columns"].as_array().unwrap()))
    {
        assert_eq!(field["name"], *name);
        assert_eq!(field["type"], *arrow_type, "{name}");
        assert_eq!(field["nullable"], false, "{name} must be required");
        assert_eq!(column["physical_type"], *physical, "{name}");
    }
    let values = &dump["values"];
    let col = |name: &str| values[name].as_array().unwrap().clone();
    let seqs: Vec<u64> = col("ledger_sequence")
        .iter()
        .map(|v| v.as_u64().unwrap())
        .collect();
    for (i, seq) in seqs.iter().enumerate() {
        let e = expected
            .get(seq)
            .unwrap_or_else(|| panic!("unexpected ledger {seq} in {path:?}"));
        let at = |name: &str| values[name][i].clone();
        assert_eq!(
            at("ledger_hash"),
            Value::from(e.ledger_hash.clone()),
            "ledger {seq}"
        );
        assert_eq!(
            at("previous_ledger_hash"),
            Value::from(e.previous_ledger_hash.clone()),
            "ledger {seq}"
        );
        assert_eq!(
            at("close_time"),
            Value::from(e.close_time_ms),
            "ledger {seq}"
        );
        assert_eq!(
            at("protocol_version"),
            Value::from(e.protocol_version),
            "ledger {seq}"
        );
        assert_eq!(
            at("total_coins"),
            Value::from(e.total_coins),
            "ledger {seq}"
        );
        assert_eq!(at("fee_pool"), Value::from(e.fee_pool), "ledger {seq}");
        assert_eq!(
            at("tx_set_hash"),
            Value::from(e.tx_set_hash.clone()),
            "ledger {seq}"
        );
        assert_eq!(at("tx_count"), Value::from(e.tx_count), "ledger {seq}");
        assert_eq!(
            at("operation_count"),
            Value::from(e.operation_count),
            "ledger {seq}"
        );
        assert_eq!(
            at("xdr_bytes"),
            Value::from(e.xdr_hex.clone()),
            "ledger {seq}"
        );
        assert_eq!(
            at("xdr_byte_length"),
            Value::from(e.xdr_len),
            "ledger {seq}"
        );
        assert_eq!(
            at("xdr_sha256"),
            Value::from(e.xdr_sha256.clone()),
            "ledger {seq}"
        );
        assert_eq!(at("network"), Value::from(labels.0), "ledger {seq}");
        assert_eq!(at("era_id"), Value::from(labels.1), "ledger {seq}");
        assert_eq!(at("bronze_version"), Value::from(labels.2), "ledger {seq}");
        if let Some(ms) = ingested_at_ms {
            assert_eq!(at("ingested_at"), Value::from(ms), "ledger {seq}");
        }
    }
    assert!(
        seqs.windows(2).all(|w| w[1] == w[0] + 1),
        "rows sorted and contiguous: {seqs:?}"
    );
    seqs
}

/// `range=S-E` partition folders under a dataset directory, in ledger order.
pub fn partitions(dataset: &Path) -> Vec<(u32, u32, PathBuf)> {
    let mut out: Vec<_> = std::fs::read_dir(dataset)
        .map(|rd| rd.filter_map(|e| e.ok()).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().to_string();
            let (s, end) = name.strip_prefix("range=")?.split_once('-')?;
            Some((s.parse().ok()?, end.parse().ok()?, e.path()))
        })
        .collect();
    out.sort();
    out
}

pub fn manifest(partition_dir: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(partition_dir.join("_manifest.json")).unwrap()).unwrap()
}

pub fn sha256_file(path: &Path) -> String {
    format!(
        "sha256:{}",
        hex::encode(Sha256::digest(std::fs::read(path).unwrap()))
    )
}

/// A YAML config for a local run.
pub struct LocalRun {
    pub dir: tempfile::TempDir,
    pub datastore: PathBuf,
    pub out: PathBuf,
    pub state: PathBuf,
}

impl LocalRun {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let datastore = dir.path().join("datastore");
        let out = dir.path().join("out");
        let state = dir.path().join("state");
        Self {
            dir,
            datastore,
            out,
            state,
        }
    }

    pub fn dataset(&self) -> PathBuf {
        self.out.join("bronze/testnet/pre_p23/v1/ledgers_lcm_raw")
    }

    /// Writes `config.yaml` for a local→local run; `extra` is appended YAML (top-level keys
    /// other than era/source/storage/checkpoint).
    pub fn config(&self, start: u32, end: u32, size: u32, extra: &str) -> PathBuf {
        // Short retry backoff keeps failure tests fast; merged into a `perf:` block of `extra`.
        let extra = if extra.contains("perf:\n") {
            extra.replacen("perf:\n", "perf:\n  retry_backoff_ms: 10\n", 1)
        } else {
            format!("{extra}perf:\n  retry_backoff_ms: 10\n")
        };
        let text = format!(
            "copier_id: test\nera:\n  network: testnet\n  ledger_start: {start}\n  ledger_end: {end}\n  partition_size: {size}\n  ingested_at: \"2025-01-15T10:00:00Z\"\nsource:\n  mode: local\n  local_path: {}\n  poll_interval_ms: 100\nstorage:\n  backend: local\n  local_dir: {}\ncheckpoint:\n  enabled: true\n  dir: {}\n{extra}",
            self.datastore.display(),
            self.out.display(),
            self.state.display()
        );
        let path = self.dir.path().join("config.yaml");
        std::fs::write(&path, text).unwrap();
        path
    }

    pub fn checkpoint(&self) -> Option<Value> {
        std::fs::read(self.state.join("checkpoint_testnet_pre_p23_v1.json"))
            .ok()
            .map(|b| serde_json::from_slice(&b).unwrap())
    }
}

pub const INGESTED_AT_MS: i64 = 1_736_935_200_000;
