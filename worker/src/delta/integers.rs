//! Which integer types the files of a dataset get ([`IntegerTypes`], docs/formats.md#integer-types):
//! the plain layout keeps the original's unsigned columns byte for byte; a Delta table is signed,
//! except a table (or a dataset turned into one) whose files earlier versions wrote unsigned: it
//! keeps them, so the files never disagree, and the copier says so once at start.

use super::repair::{partition_folders, read_manifest};
use super::stats::{integer_types_of_footer, read_footer};
use super::table::{DeltaError, DeltaTable};
use crate::config::{Config, TableFormat};
use crate::parquet::IntegerTypes;
use crate::publish::DatasetLayout;
use crate::store::Location;

/// Where the choice came from (for the message).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// `storage.table_format: none`: the original's layout.
    Plain,
    /// The table's `metaData`.
    Table,
    /// No table yet: the dataset's first committed file.
    FirstFile,
    /// No table and no committed file: a new table.
    New,
}

/// The integer types new files of `config`'s dataset get, and why.
pub async fn for_new_files(
    config: &Config,
    location: &Location,
) -> Result<(IntegerTypes, Origin), DeltaError> {
    if config.storage.table_format != TableFormat::Delta {
        return Ok((IntegerTypes::Unsigned, Origin::Plain));
    }
    let layout = DatasetLayout::from_config(config);
    let table = DeltaTable::new(location, &layout);
    Ok(match table.integer_types().await? {
        Some(t) => (t, Origin::Table),
        None => match first_committed_file(location, &layout).await? {
            Some(t) => (t, Origin::FirstFile),
            None => (IntegerTypes::Signed, Origin::New),
        },
    })
}

/// Says, once per process and table (the drivers call it after their one catch-up of the log),
/// that a table of an earlier version keeps its unsigned files, and how to get a signed one.
pub fn warn_if_unsigned(table_uri: &str, integers: Option<IntegerTypes>) {
    if integers == Some(IntegerTypes::Unsigned) {
        tracing::warn!(
            table = %table_uri,
            "delta: this table's files were written by an earlier version of the copier with unsigned ledger_sequence and protocol_version (Parquet INT(64, unsigned), INT(32, unsigned)); new files keep those types so that every file of the table agrees. delta-rs and DataFusion read it; Spark, Polars' native scan and other delta-kernel readers refuse unsigned columns. For a table every engine reads, copy into a new era.version_label with table_format delta (docs/formats.md#integer-types)"
        );
    }
}

/// The integer types of the dataset's first committed partition's file (`None`: no committed
/// partition, or a file of neither layout).
async fn first_committed_file(
    location: &Location,
    layout: &DatasetLayout,
) -> Result<Option<IntegerTypes>, DeltaError> {
    for range in partition_folders(location, layout).await? {
        let Some(manifest) = read_manifest(location, layout, range).await? else {
            continue;
        };
        let Some(table) = manifest.primary() else {
            continue;
        };
        let key = location.key(&layout.parquet_key(range));
        let footer = read_footer(location.store.as_ref(), &key, table.byte_size)
            .await
            .map_err(|message| DeltaError::Corrupt {
                key: key.to_string(),
                message,
            })?;
        return Ok(integer_types_of_footer(&footer));
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::delta::table::DeltaTable;
    use crate::parquet::{LedgerRecord, PartitionWriter, WriterSettings};
    use crate::partition::LedgerRange;
    use crate::publish::Manifest;
    use bronze_ledger::LedgerRow;

    fn layout() -> DatasetLayout {
        DatasetLayout {
            prefix: "bronze/".into(),
            network: "testnet".into(),
            era_id: "e".into(),
            version_label: "v1".into(),
        }
    }

    /// A committed partition of `range` whose file has `integers` types; returns its manifest.
    fn partition(dir: &std::path::Path, range: LedgerRange, integers: IntegerTypes) -> Manifest {
        let settings = WriterSettings {
            compression: "zstd".parse().unwrap(),
            compression_level: None,
            row_group_bytes: 1 << 20,
            network: "testnet".into(),
            era_id: "e".into(),
            version_label: "v1".into(),
            ingested_at_millis: 0,
            integers,
        };
        let mut w = PartitionWriter::new(Vec::new(), settings).unwrap();
        for seq in range.start..=range.end {
            let row = LedgerRow {
                lcm_version: 1,
                ledger_sequence: seq,
                ledger_hash: [1; 32],
                previous_ledger_hash: [2; 32],
                close_time: 1_700_000_000,
                protocol_version: 22,
                total_coins: 1,
                fee_pool: 2,
                tx_set_hash: [3; 32],
                tx_count: 0,
                operation_count: 0,
                tx_processing_count: 0,
            };
            w.push(&LedgerRecord {
                row: &row,
                xdr: b"xdr",
                xdr_sha256: [0; 32],
            })
            .unwrap();
        }
        let (summary, bytes) = w.finish().unwrap();
        let folder = dir.join(layout().partition_dir(range));
        std::fs::create_dir_all(&folder).unwrap();
        std::fs::write(folder.join(DatasetLayout::parquet_file_name(range)), bytes).unwrap();
        let manifest = serde_json::json!({
            "partition": {"start": range.start, "end": range.end, "era_id": "e", "version": "v1", "network": "testnet"},
            "tables": {"ledgers_lcm_raw": {
                "file": DatasetLayout::parquet_file_name(range),
                "checksum": "sha256:00", "row_count": summary.rows, "byte_size": summary.byte_size
            }},
            "producer": {"name": "bronze-copier", "version": "0.1.0", "git_sha": "x"},
            "created_at": "2026-11-25T18:54:21.246229699Z"
        })
        .to_string();
        std::fs::write(folder.join("_manifest.json"), &manifest).unwrap();
        Manifest::from_json(manifest.as_bytes()).unwrap()
    }

    fn config(dir: &std::path::Path, delta: bool) -> Config {
        let mut c = Config::default();
        c.era.network = "testnet".into();
        c.era.era_id = "e".into();
        c.era.version_label = "v1".into();
        c.storage.local_dir = dir.to_str().unwrap().into();
        if delta {
            c.storage.table_format = TableFormat::Delta;
        }
        c
    }

    fn location(dir: &std::path::Path) -> Location {
        crate::store::local("storage.local_dir", dir.to_str().unwrap(), true).unwrap()
    }

    /// New files are unsigned in the plain layout and signed in a new table; a dataset whose
    /// files are unsigned keeps them; a table is created with the types of its first file and
    /// refuses a file of the other types, naming both.
    #[tokio::test]
    async fn new_files_take_the_tables_types_and_a_file_of_other_types_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let loc = location(dir.path());
        let plain = config(dir.path(), false);
        let delta = config(dir.path(), true);
        assert_eq!(
            for_new_files(&plain, &loc).await.unwrap(),
            (IntegerTypes::Unsigned, Origin::Plain)
        );
        assert_eq!(
            for_new_files(&delta, &loc).await.unwrap(),
            (IntegerTypes::Signed, Origin::New)
        );
        // An unsigned dataset (plain, or an earlier version's) keeps its types.
        let first = partition(dir.path(), LedgerRange::new(2, 5), IntegerTypes::Unsigned);
        assert_eq!(
            for_new_files(&delta, &loc).await.unwrap(),
            (IntegerTypes::Unsigned, Origin::FirstFile)
        );
        let table = DeltaTable::new(&loc, &layout());
        table.append(&first, false).await.unwrap();
        assert_eq!(
            table.integer_types().await.unwrap(),
            Some(IntegerTypes::Unsigned)
        );
        assert_eq!(
            for_new_files(&delta, &loc).await.unwrap(),
            (IntegerTypes::Unsigned, Origin::Table)
        );
        let signed = partition(dir.path(), LedgerRange::new(6, 9), IntegerTypes::Signed);
        let err = table.append(&signed, false).await.unwrap_err();
        assert!(matches!(err, DeltaError::Types { .. }), "{err}");
        assert!(
            err.to_string().contains(
                "range=6-9/part-6-9.parquet stores ledger_sequence and protocol_version as signed integers, but the table's files are unsigned"
            ),
            "{err}"
        );
        assert_eq!(table.version().await.unwrap(), Some(1), "nothing added");
    }
}
