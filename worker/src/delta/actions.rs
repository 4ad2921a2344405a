//! The Delta log actions Bronze writes and reads (docs/formats.md#delta-lake-table): one JSON
//! object per line of a commit file, each with one key naming the action.

use arrow_schema::{DataType, TimeUnit};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use crate::parquet::{IntegerTypes, ledgers_lcm_raw_schema_with};

/// Readers need nothing newer than Delta's first protocol: no table features are used.
pub const MIN_READER_VERSION: i32 = 1;
pub const MIN_WRITER_VERSION: i32 = 2;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Protocol {
    pub min_reader_version: i32,
    pub min_writer_version: i32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Format {
    pub provider: String,
    #[serde(default)]
    pub options: Map<String, Value>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Metadata {
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub format: Format,
    pub schema_string: String,
    pub partition_columns: Vec<String>,
    #[serde(default)]
    pub configuration: Map<String, Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_time: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Add {
    /// Relative to the table root, URL-encoded (RFC 2396 URI path), as the protocol says.
    pub path: String,
    #[serde(default)]
    pub partition_values: Map<String, Value>,
    pub size: i64,
    pub modification_time: i64,
    pub data_change: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stats: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Remove {
    pub path: String,
    #[serde(default)]
    pub deletion_timestamp: Option<i64>,
    #[serde(default)]
    pub data_change: bool,
    /// `partitionValues` and `size` are given (the protocol's `extendedFileMetadata`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extended_file_metadata: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partition_values: Option<Map<String, Value>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<i64>,
}

impl Remove {
    /// The remove of the file `add` added, deleted at `deletion_ms` (the file stays in storage
    /// for readers of older versions until the log cleanup deletes it).
    pub fn of(add: &Add, deletion_ms: i64) -> Remove {
        Remove {
            path: add.path.clone(),
            deletion_timestamp: Some(deletion_ms),
            data_change: true,
            extended_file_metadata: Some(true),
            partition_values: Some(add.partition_values.clone()),
            size: Some(add.size),
        }
    }
}

/// One line of a commit. Actions Bronze never writes (txn, cdc, domainMetadata, …) are kept as
/// raw JSON so a log touched by another writer still reads.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    Protocol(Protocol),
    Metadata(Metadata),
    Add(Add),
    Remove(Remove),
    CommitInfo(Value),
    Other(String, Value),
}

impl Action {
    pub fn to_line(&self) -> String {
        let v = match self {
            Action::Protocol(p) => json!({ "protocol": p }),
            Action::Metadata(m) => json!({ "metaData": m }),
            Action::Add(a) => json!({ "add": a }),
            Action::Remove(r) => json!({ "remove": r }),
            Action::CommitInfo(c) => json!({ "commitInfo": c }),
            Action::Other(k, v) => json!({ k.clone(): v }),
        };
        v.to_string()
    }

    pub fn from_line(line: &str) -> Result<Action, String> {
        let value: Value = serde_json::from_str(line).map_err(|e| e.to_string())?;
        let Value::Object(obj) = value else {
            return Err("an action is not a JSON object".into());
        };
        let Some((key, body)) = obj.into_iter().next() else {
            return Err("an empty action".into());
        };
        let parse = |what: &str, e: serde_json::Error| format!("{what}: {e}");
        Ok(match key.as_str() {
            "protocol" => {
                Action::Protocol(serde_json::from_value(body).map_err(|e| parse("protocol", e))?)
            }
            "metaData" => {
                Action::Metadata(serde_json::from_value(body).map_err(|e| parse("metaData", e))?)
            }
            "add" => Action::Add(serde_json::from_value(body).map_err(|e| parse("add", e))?),
            "remove" => {
                Action::Remove(serde_json::from_value(body).map_err(|e| parse("remove", e))?)
            }
            "commitInfo" => Action::CommitInfo(body),
            _ => Action::Other(key, body),
        })
    }
}

/// A commit file's bytes: one action per line, newline-terminated.
pub fn encode_commit(actions: &[Action]) -> Vec<u8> {
    let mut out = String::new();
    for a in actions {
        out.push_str(&a.to_line());
        out.push('\n');
    }
    out.into_bytes()
}

/// Parses a commit file; `name` (the file) is named in the error.
pub fn decode_commit(name: &str, bytes: &[u8]) -> Result<Vec<Action>, String> {
    let text = std::str::from_utf8(bytes).map_err(|_| format!("{name}: not UTF-8"))?;
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| Action::from_line(l).map_err(|e| format!("{name}: line {}: {e}", i + 1)))
        .collect()
}

/// `metaData.configuration` key naming the integer types of the table's files
/// ([`IntegerTypes`]): `signed` in every table this version creates. A table without it was
/// created by an earlier version, whose files are unsigned.
pub const INTEGER_TYPES_KEY: &str = "bronze.integerTypes";

/// The integer types of the files of a table with this metadata (see [`INTEGER_TYPES_KEY`]);
/// `None` for a value Bronze does not know.
pub fn integer_types_of(metadata: &Metadata) -> Option<IntegerTypes> {
    match metadata.configuration.get(INTEGER_TYPES_KEY) {
        None => Some(IntegerTypes::Unsigned),
        Some(v) => v.as_str().and_then(IntegerTypes::from_name),
    }
}

/// The Delta type of one of our Arrow types. In the signed layout the types are Delta's own
/// (`long`, `integer`). In the unsigned layout of tables from earlier versions (Delta has no
/// unsigned integers) `uint64` (`ledger_sequence`) is a `long` and `uint32`
/// (`protocol_version`) a `long` too: what those tables declare, kept as they are.
fn delta_type(ty: &DataType) -> &'static str {
    match ty {
        DataType::UInt64 | DataType::Int64 | DataType::UInt32 => "long",
        DataType::Int32 => "integer",
        DataType::Utf8 | DataType::LargeUtf8 => "string",
        DataType::Binary | DataType::LargeBinary => "binary",
        DataType::Timestamp(TimeUnit::Millisecond, Some(_)) => "timestamp",
        other => unreachable!("ledgers_lcm_raw has no column of type {other}"),
    }
}

/// `metaData.schemaString`: the 17 columns of `ledgers_lcm_raw`, in order, all non-null, derived
/// from the Arrow schema the Parquet writer uses for files of `integers` types.
pub fn schema_string(integers: IntegerTypes) -> String {
    let fields: Vec<Value> = ledgers_lcm_raw_schema_with(integers)
        .fields()
        .iter()
        .map(|f| {
            json!({
                "name": f.name(),
                "type": delta_type(f.data_type()),
                "nullable": f.is_nullable(),
                "metadata": {}
            })
        })
        .collect();
    json!({ "type": "struct", "fields": fields }).to_string()
}

/// The table id: a UUID derived from the dataset (not random), so two writers racing to create
/// version 0 write the same table.
pub fn table_id(dataset_dir: &str) -> String {
    let d = Sha256::digest(format!("bronze-delta|{dataset_dir}").as_bytes());
    let h = hex::encode(&d[..16]);
    // RFC 4122 shape (version 5-like bits are not claimed; readers only need a unique string).
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// Version 0: the protocol and the table's metadata (no partition columns: a partition's file is
/// found by its statistics, which readers prune on, and rows stay exactly the Parquet rows) for
/// files of `integers` types.
pub fn initial_actions(dataset_dir: &str, now_ms: i64, integers: IntegerTypes) -> Vec<Action> {
    let mut configuration = Map::new();
    configuration.insert(INTEGER_TYPES_KEY.into(), json!(integers.name()));
    vec![
        Action::Protocol(Protocol {
            min_reader_version: MIN_READER_VERSION,
            min_writer_version: MIN_WRITER_VERSION,
        }),
        Action::Metadata(Metadata {
            id: table_id(dataset_dir),
            name: None,
            format: Format {
                provider: "parquet".into(),
                options: Map::new(),
            },
            schema_string: schema_string(integers),
            partition_columns: Vec::new(),
            configuration,
            created_time: Some(now_ms),
        }),
        commit_info(now_ms, "CREATE TABLE", json!({})),
    ]
}

pub fn commit_info(now_ms: i64, operation: &str, parameters: Value) -> Action {
    Action::CommitInfo(json!({
        "timestamp": now_ms,
        "operation": operation,
        "operationParameters": parameters,
        "isBlindAppend": true,
        "engineInfo": format!("bronze-copier/{}", crate::VERSION),
    }))
}

/// Percent-encodes a relative path for `add.path` (`=` in `range=S-E` stays, as Spark writes it;
/// only characters outside the URI path set are escaped).
pub fn encode_path(relative: &str) -> String {
    let mut out = String::with_capacity(relative.len());
    for b in relative.bytes() {
        let keep = b.is_ascii_alphanumeric() || b"-._~/=:@!$&'()*+,;".contains(&b);
        if keep {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The inverse of [`encode_path`] (any `%XX`), for comparing with storage keys.
pub fn decode_path(path: &str) -> String {
    let bytes = path.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let Ok(v) = u8::from_str_radix(&path[i + 1..i + 3], 16)
        {
            out.push(v);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `_delta_log/<version, 20 digits>.json`
pub fn commit_file_name(version: u64) -> String {
    format!("{version:020}.json")
}

pub fn checkpoint_file_name(version: u64) -> String {
    format!("{version:020}.checkpoint.parquet")
}

/// The version of a `_delta_log/` file name that is a commit (`NNN.json`).
pub fn parse_commit_file_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(".json")?;
    (digits.len() == 20 && digits.bytes().all(|b| b.is_ascii_digit()))
        .then(|| digits.parse().ok())
        .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actions_round_trip_through_lines() {
        let actions = initial_actions(
            "bronze/testnet/e/v1/ledgers_lcm_raw",
            5,
            IntegerTypes::Signed,
        );
        let bytes = encode_commit(&actions);
        assert_eq!(decode_commit("x", &bytes).unwrap(), actions);
        let add = Action::Add(Add {
            path: "range=2-3/part-2-3.parquet".into(),
            partition_values: Map::new(),
            size: 10,
            modification_time: 7,
            data_change: true,
            stats: Some("{\"numRecords\":2}".into()),
        });
        let line = add.to_line();
        assert!(line.starts_with("{\"add\":{"), "{line}");
        assert!(line.contains("\"partitionValues\":{}"), "{line}");
        assert_eq!(Action::from_line(&line).unwrap(), add);
    }

    #[test]
    fn schema_string_has_the_17_columns_with_delta_types() {
        for (integers, protocol) in [
            (IntegerTypes::Signed, "integer"),
            // What tables of earlier versions (unsigned files) declare, unchanged.
            (IntegerTypes::Unsigned, "long"),
        ] {
            let s: Value = serde_json::from_str(&schema_string(integers)).unwrap();
            let fields = s["fields"].as_array().unwrap();
            assert_eq!(fields.len(), 17);
            assert_eq!(fields[0]["name"], "ledger_sequence");
            assert_eq!(fields[0]["type"], "long");
            assert_eq!(fields[3]["type"], "timestamp");
            assert_eq!(fields[4]["name"], "protocol_version");
            assert_eq!(fields[4]["type"], protocol);
            assert_eq!(fields[8]["type"], "integer");
            assert_eq!(fields[10]["type"], "binary");
            assert!(fields.iter().all(|f| f["nullable"] == false));
        }
    }

    #[test]
    fn new_tables_say_signed_and_tables_without_the_key_are_unsigned() {
        let actions = initial_actions("d", 0, IntegerTypes::Signed);
        let Action::Metadata(mut m) = actions[1].clone() else {
            panic!()
        };
        assert_eq!(m.configuration[INTEGER_TYPES_KEY], "signed");
        assert_eq!(integer_types_of(&m), Some(IntegerTypes::Signed));
        m.configuration.clear();
        assert_eq!(integer_types_of(&m), Some(IntegerTypes::Unsigned));
        m.configuration
            .insert(INTEGER_TYPES_KEY.into(), json!("decimal"));
        assert_eq!(integer_types_of(&m), None);
    }

    #[test]
    fn file_names_and_paths() {
        assert_eq!(commit_file_name(12), "00000000000000000012.json");
        assert_eq!(
            parse_commit_file_name("00000000000000000012.json"),
            Some(12)
        );
        assert_eq!(
            parse_commit_file_name("00000000000000000012.checkpoint.parquet"),
            None
        );
        assert_eq!(parse_commit_file_name("12.json"), None);
        assert_eq!(
            encode_path("range=2-3/part-2-3.parquet"),
            "range=2-3/part-2-3.parquet"
        );
        assert_eq!(encode_path("a b/c%"), "a%20b/c%25");
        assert_eq!(decode_path("a%20b/c%25"), "a b/c%");
        assert_eq!(table_id("x").len(), 36);
        assert_eq!(table_id("x"), table_id("x"));
    }
}
