//! Log checkpoints: every [`CHECKPOINT_INTERVAL`] versions the whole table state (protocol,
//! metadata, one `add` per live file) is written as a classic single-file Parquet checkpoint,
//! `_delta_log/<version>.checkpoint.parquet`, and `_delta_log/_last_checkpoint` points at it, so
//! a reader of a 6,000-partition table reads one Parquet file and at most 9 JSON commits.

use std::sync::Arc;

use arrow_array::builder::{ListBuilder, MapBuilder, StringBuilder};
use arrow_array::{
    Array, ArrayRef, BooleanArray, Int32Array, Int64Array, RecordBatch, StringArray, StructArray,
};
use arrow_schema::{DataType, Field, Fields, Schema};
use bytes::Bytes;
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::actions::{Add, Format, Metadata, Protocol};

/// Delta's default (`delta.checkpointInterval`): what Spark and delta-rs expect.
pub const CHECKPOINT_INTERVAL: u64 = 10;

/// `_delta_log/_last_checkpoint`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LastCheckpoint {
    pub version: u64,
    pub size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub num_of_add_files: Option<u64>,
}

/// The table state a checkpoint holds.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckpointState {
    pub protocol: Protocol,
    pub metadata: Metadata,
    pub adds: Vec<Add>,
}

fn map_builder() -> MapBuilder<StringBuilder, StringBuilder> {
    MapBuilder::new(None, StringBuilder::new(), StringBuilder::new())
}

/// An always-present empty `map<string,string>` column of `n` rows.
fn empty_maps(n: usize) -> ArrayRef {
    let mut b = map_builder();
    for _ in 0..n {
        b.append(true).expect("empty map");
    }
    Arc::new(b.finish())
}

fn map_type() -> DataType {
    empty_maps(0).data_type().clone()
}

fn nulls_where(valid: impl Iterator<Item = bool>) -> Option<arrow_buffer::NullBuffer> {
    Some(arrow_buffer::NullBuffer::from(valid.collect::<Vec<bool>>()))
}

/// The checkpoint's bytes (pure): row 0 the protocol, row 1 the metadata, then one row per add.
/// Fields that are required inside an action stay non-null, with placeholder values in the rows
/// of other actions (masked by the action's own null).
pub fn encode(state: &CheckpointState) -> Result<Vec<u8>, String> {
    let n = 2 + state.adds.len();
    let protocol = protocol_column(state, n)?;
    let metadata = metadata_column(state, n)?;
    let add = add_column(state, n)?;
    let schema = Arc::new(Schema::new(vec![
        Field::new("protocol", protocol.data_type().clone(), true),
        Field::new("metaData", metadata.data_type().clone(), true),
        Field::new("add", add.data_type().clone(), true),
    ]));
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![Arc::new(protocol), Arc::new(metadata), Arc::new(add)],
    )
    .map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    // Snappy, as Spark writes checkpoints: every reader has it, and the stats strings of
    // thousands of adds shrink several times.
    let props = WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .build();
    let mut writer =
        ArrowWriter::try_new(&mut out, schema, Some(props)).map_err(|e| e.to_string())?;
    writer.write(&batch).map_err(|e| e.to_string())?;
    writer.close().map_err(|e| e.to_string())?;
    Ok(out)
}

/// Whether checkpoint row `row` holds action `which` (0 protocol, 1 metaData, 2 add).
fn row_is(row: usize, which: usize) -> bool {
    match which {
        0 => row == 0,
        1 => row == 1,
        _ => row >= 2,
    }
}

/// The `protocol` column: the protocol in row 0, null elsewhere.
fn protocol_column(state: &CheckpointState, n: usize) -> Result<StructArray, String> {
    let protocol_fields = Fields::from(vec![
        Field::new("minReaderVersion", DataType::Int32, false),
        Field::new("minWriterVersion", DataType::Int32, false),
    ]);
    StructArray::try_new(
        protocol_fields,
        vec![
            Arc::new(Int32Array::from_iter_values(
                (0..n).map(|_| state.protocol.min_reader_version),
            )) as ArrayRef,
            Arc::new(Int32Array::from_iter_values(
                (0..n).map(|_| state.protocol.min_writer_version),
            )),
        ],
        nulls_where((0..n).map(|r| row_is(r, 0))),
    )
    .map_err(|e| e.to_string())
}

/// The `metaData` column: the metadata in row 1, null elsewhere.
fn metadata_column(state: &CheckpointState, n: usize) -> Result<StructArray, String> {
    let m = &state.metadata;
    let format_fields = Fields::from(vec![
        Field::new("provider", DataType::Utf8, false),
        Field::new("options", map_type(), true),
    ]);
    let format = StructArray::try_new(
        format_fields.clone(),
        vec![
            Arc::new(StringArray::from_iter_values(
                (0..n).map(|_| m.format.provider.as_str()),
            )) as ArrayRef,
            empty_maps(n),
        ],
        None,
    )
    .map_err(|e| e.to_string())?;
    let mut partition_columns = ListBuilder::new(StringBuilder::new());
    for _ in 0..n {
        for c in &m.partition_columns {
            partition_columns.values().append_value(c);
        }
        partition_columns.append(true);
    }
    let partition_columns = partition_columns.finish();
    let mut configuration = map_builder();
    for _ in 0..n {
        for (k, v) in &m.configuration {
            configuration.keys().append_value(k);
            match v.as_str() {
                Some(s) => configuration.values().append_value(s),
                None => configuration.values().append_value(v.to_string()),
            }
        }
        configuration.append(true).map_err(|e| e.to_string())?;
    }
    let configuration = configuration.finish();
    let metadata_fields = Fields::from(vec![
        Field::new("id", DataType::Utf8, false),
        Field::new("name", DataType::Utf8, true),
        Field::new("description", DataType::Utf8, true),
        Field::new("format", DataType::Struct(format_fields), false),
        Field::new("schemaString", DataType::Utf8, false),
        Field::new(
            "partitionColumns",
            partition_columns.data_type().clone(),
            false,
        ),
        Field::new("configuration", configuration.data_type().clone(), false),
        Field::new("createdTime", DataType::Int64, true),
    ]);
    StructArray::try_new(
        metadata_fields,
        vec![
            Arc::new(StringArray::from_iter_values((0..n).map(|_| m.id.as_str()))) as ArrayRef,
            Arc::new(StringArray::from_iter((0..n).map(|_| m.name.as_deref()))),
            Arc::new(StringArray::from_iter((0..n).map(|_| None::<&str>))),
            Arc::new(format),
            Arc::new(StringArray::from_iter_values(
                (0..n).map(|_| m.schema_string.as_str()),
            )),
            Arc::new(partition_columns),
            Arc::new(configuration),
            Arc::new(Int64Array::from_iter((0..n).map(|_| m.created_time))),
        ],
        nulls_where((0..n).map(|r| row_is(r, 1))),
    )
    .map_err(|e| e.to_string())
}

/// The `add` column: one add per row from row 2 (no partition columns: partitionValues is
/// always an empty map).
fn add_column(state: &CheckpointState, n: usize) -> Result<StructArray, String> {
    let add_at = |row: usize| (row >= 2).then(|| &state.adds[row - 2]);
    let add_fields = Fields::from(vec![
        Field::new("path", DataType::Utf8, false),
        Field::new("partitionValues", map_type(), false),
        Field::new("size", DataType::Int64, false),
        Field::new("modificationTime", DataType::Int64, false),
        Field::new("dataChange", DataType::Boolean, false),
        Field::new("stats", DataType::Utf8, true),
    ]);
    StructArray::try_new(
        add_fields,
        vec![
            Arc::new(StringArray::from_iter_values(
                (0..n).map(|r| add_at(r).map_or("", |a| a.path.as_str())),
            )) as ArrayRef,
            empty_maps(n),
            Arc::new(Int64Array::from_iter_values(
                (0..n).map(|r| add_at(r).map_or(0, |a| a.size)),
            )),
            Arc::new(Int64Array::from_iter_values(
                (0..n).map(|r| add_at(r).map_or(0, |a| a.modification_time)),
            )),
            Arc::new(BooleanArray::from_iter(
                (0..n).map(|r| Some(add_at(r).is_some_and(|a| a.data_change))),
            )),
            Arc::new(StringArray::from_iter(
                (0..n).map(|r| add_at(r).and_then(|a| a.stats.as_deref())),
            )),
        ],
        nulls_where((0..n).map(|r| row_is(r, 2))),
    )
    .map_err(|e| e.to_string())
}

fn child<'a>(s: &'a StructArray, name: &str) -> Result<&'a ArrayRef, String> {
    s.column_by_name(name)
        .ok_or_else(|| format!("no field {name}"))
}

fn strings<'a>(s: &'a StructArray, name: &str) -> Result<&'a StringArray, String> {
    child(s, name)?
        .as_any()
        .downcast_ref::<StringArray>()
        .ok_or_else(|| format!("{name} is not a string column"))
}

fn longs<'a>(s: &'a StructArray, name: &str) -> Result<&'a Int64Array, String> {
    child(s, name)?
        .as_any()
        .downcast_ref::<Int64Array>()
        .ok_or_else(|| format!("{name} is not a long column"))
}

fn ints<'a>(s: &'a StructArray, name: &str) -> Result<&'a Int32Array, String> {
    child(s, name)?
        .as_any()
        .downcast_ref::<Int32Array>()
        .ok_or_else(|| format!("{name} is not an integer column"))
}

/// Row `i` of a `map<string,string>` column (`configuration`), as the JSON object the commit
/// files hold (empty when the column is absent or the row null).
fn string_map(s: &StructArray, name: &str, i: usize) -> Result<Map<String, Value>, String> {
    let mut out = Map::new();
    let Ok(column) = child(s, name) else {
        return Ok(out);
    };
    let map = column
        .as_any()
        .downcast_ref::<arrow_array::MapArray>()
        .ok_or_else(|| format!("{name} is not a map column"))?;
    if map.is_null(i) {
        return Ok(out);
    }
    let entries = map.value(i);
    let keys = entries
        .column(0)
        .as_any()
        .downcast_ref::<StringArray>()
        .ok_or_else(|| format!("{name} keys are not strings"))?;
    let values = entries
        .column(1)
        .as_any()
        .downcast_ref::<StringArray>()
        .ok_or_else(|| format!("{name} values are not strings"))?;
    for k in 0..keys.len() {
        let value = (!values.is_null(k)).then(|| Value::from(values.value(k)));
        out.insert(keys.value(k).to_string(), value.unwrap_or(Value::Null));
    }
    Ok(out)
}

/// Reads a classic checkpoint back (ours or another writer's): its protocol, metadata and adds.
/// Tombstones and other actions are not state Bronze needs.
pub fn decode(bytes: Bytes) -> Result<CheckpointState, String> {
    let reader = ParquetRecordBatchReaderBuilder::try_new(bytes)
        .map_err(|e| e.to_string())?
        .build()
        .map_err(|e| e.to_string())?;
    let mut protocol = None;
    let mut metadata = None;
    let mut adds = Vec::new();
    for batch in reader {
        let batch = batch.map_err(|e| e.to_string())?;
        let column = |name: &str| {
            batch
                .column_by_name(name)
                .and_then(|c| c.as_any().downcast_ref::<StructArray>().cloned())
        };
        if let Some(p) = column("protocol") {
            let (r, w) = (ints(&p, "minReaderVersion")?, ints(&p, "minWriterVersion")?);
            for i in (0..p.len()).filter(|i| p.is_valid(*i)) {
                protocol = Some(Protocol {
                    min_reader_version: r.value(i),
                    min_writer_version: w.value(i),
                });
            }
        }
        if let Some(m) = column("metaData") {
            let (id, schema) = (strings(&m, "id")?, strings(&m, "schemaString")?);
            let created = longs(&m, "createdTime").ok();
            for i in (0..m.len()).filter(|i| m.is_valid(*i)) {
                metadata = Some(Metadata {
                    id: id.value(i).to_string(),
                    name: None,
                    format: Format {
                        provider: "parquet".into(),
                        options: Default::default(),
                    },
                    schema_string: schema.value(i).to_string(),
                    partition_columns: Vec::new(),
                    configuration: string_map(&m, "configuration", i)?,
                    created_time: created.filter(|c| c.is_valid(i)).map(|c| c.value(i)),
                });
            }
        }
        if let Some(a) = column("add") {
            let (path, size) = (strings(&a, "path")?, longs(&a, "size")?);
            let mtime = longs(&a, "modificationTime").ok();
            let stats = strings(&a, "stats").ok();
            for i in (0..a.len()).filter(|i| a.is_valid(*i)) {
                adds.push(Add {
                    path: path.value(i).to_string(),
                    partition_values: Default::default(),
                    size: size.value(i),
                    modification_time: mtime.map_or(0, |m| m.value(i)),
                    data_change: false,
                    stats: stats
                        .filter(|s| s.is_valid(i))
                        .map(|s| s.value(i).to_string()),
                });
            }
        }
    }
    Ok(CheckpointState {
        protocol: protocol.ok_or("no protocol action")?,
        metadata: metadata.ok_or("no metaData action")?,
        adds,
    })
}

#[cfg(test)]
mod tests {
    use super::super::actions::{Action, initial_actions};
    use super::*;

    #[test]
    fn a_checkpoint_round_trips() {
        let actions = initial_actions(
            "bronze/t/e/v1/ledgers_lcm_raw",
            42,
            crate::parquet::IntegerTypes::Signed,
        );
        let (Action::Protocol(protocol), Action::Metadata(metadata)) = (&actions[0], &actions[1])
        else {
            panic!("initial actions")
        };
        let adds: Vec<Add> = (0..3)
            .map(|i| Add {
                path: format!("range={i}-{i}/part-{i}-{i}.parquet"),
                partition_values: Default::default(),
                size: 100 + i,
                modification_time: 7,
                data_change: false,
                stats: Some(format!("{{\"numRecords\":{i}}}")),
            })
            .collect();
        let state = CheckpointState {
            protocol: protocol.clone(),
            metadata: metadata.clone(),
            adds,
        };
        let bytes = encode(&state).unwrap();
        assert_eq!(decode(Bytes::from(bytes)).unwrap(), state);
    }
}
