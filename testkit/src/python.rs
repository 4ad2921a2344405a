//! The test venv and the Python readers (pyarrow, duckdb) run against our Parquet output.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::process::tail_of_text;

/// The workspace root (the directory with the workspace `Cargo.toml`), from testkit's own
/// `CARGO_MANIFEST_DIR`.
pub fn workspace_root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest
        .parent()
        .unwrap_or_else(|| panic!("bronze-testkit: {} has no parent", manifest.display()))
        .to_path_buf()
}

/// The Python venv used by tests: `$BRONZE_TEST_VENV`, else `<workspace root>/.venv`.
pub fn venv_dir() -> PathBuf {
    match std::env::var_os("BRONZE_TEST_VENV") {
        Some(v) if !v.is_empty() => PathBuf::from(v),
        _ => workspace_root().join(".venv"),
    }
}

/// The venv's interpreter (`<venv>/bin/python`). Panics, telling you to run `make test-deps`,
/// when it is missing.
pub fn python() -> PathBuf {
    let venv = venv_dir();
    let py = venv.join("bin").join("python");
    if !py.exists() {
        panic!(
            "bronze-testkit: the test Python venv is missing ({} does not exist).\n\
             Run `make test-deps` in {} (installs nginx, PostgreSQL and the venv with moto, pyarrow, duckdb),\n\
             or point BRONZE_TEST_VENV at an existing venv.",
            py.display(),
            workspace_root().display()
        );
    }
    py
}

fn script(name: &str) -> PathBuf {
    let p = workspace_root().join("tests").join("py").join(name);
    if !p.exists() {
        panic!("bronze-testkit: helper script {} is missing", p.display());
    }
    p
}

/// Run one of `tests/py/*.py` with the venv's Python and parse its stdout as JSON.
fn run_json(script_name: &str, args: &[&std::ffi::OsStr]) -> serde_json::Value {
    let py = python();
    let script = script(script_name);
    let out = Command::new(&py)
        .arg(&script)
        .args(args)
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "bronze-testkit: cannot run {} {}: {e}",
                py.display(),
                script.display()
            )
        });
    if !out.status.success() {
        panic!(
            "bronze-testkit: {script_name} {args:?} failed with {}\n--- stderr ---\n{}\n--- stdout ---\n{}",
            out.status,
            tail_of_text(&String::from_utf8_lossy(&out.stderr), 60),
            tail_of_text(&String::from_utf8_lossy(&out.stdout), 20)
        );
    }
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "bronze-testkit: {script_name} printed no valid JSON ({e}):\n{}",
            tail_of_text(&String::from_utf8_lossy(&out.stdout), 20)
        )
    })
}

/// Read a Parquet file with pyarrow (`tests/py/parquet_dump.py`) and return, as JSON:
///
/// * `num_rows`, `num_row_groups`, `created_by`, `format_version`
/// * `compression`: the codec of every column chunk (e.g. `"ZSTD"`), or `"MIXED"`; `compressions`:
///   the sorted distinct codecs
/// * `arrow_schema`: `[{name, type, nullable, metadata}]` (type as pyarrow prints it, e.g.
///   `"timestamp[ms, tz=UTC]"`, `"fixed_size_binary[32]"`); `schema_metadata`
/// * `columns`: per leaf column `{path, physical_type, logical_type, converted_type,
///   max_definition_level, max_repetition_level}` (`logical_type` is pyarrow's JSON form parsed,
///   e.g. `{"Type": "Timestamp", "timeUnit": "milliseconds", "isAdjustedToUTC": true}`, or null)
/// * `row_groups`: `[{num_rows, total_byte_size, columns: [{path, compression, encodings,
///   has_statistics, null_count, total_compressed_size}]}]`
/// * `key_value_metadata`: the file's key/value metadata (`ARROW:schema` left out)
/// * `values`: `{column name: [values]}` with binary as lowercase hex, timestamps as integer
///   epoch milliseconds, dates as `YYYY-MM-DD`, decimals as strings, strings as is, NaN/inf as
///   strings, nulls as null.
pub fn parquet_dump(path: impl AsRef<Path>) -> serde_json::Value {
    run_json("parquet_dump.py", &[path.as_ref().as_os_str()])
}

/// Run `sql` with DuckDB (`tests/py/duckdb_query.py`) over the Parquet files matching
/// `parquet_glob` (a path or glob DuckDB's `read_parquet` accepts), which the SQL sees as the view
/// `t`. Returns `{"columns": [..], "types": [..], "rows": [[..], ..]}` with values converted as in
/// [`parquet_dump`].
pub fn duckdb_query(parquet_glob: &str, sql: &str) -> serde_json::Value {
    run_json(
        "duckdb_query.py",
        &[
            std::ffi::OsStr::new(parquet_glob),
            std::ffi::OsStr::new(sql),
        ],
    )
}

/// Read the Delta table at `table_dir` with the real readers (`tests/py/delta_read.py`: the
/// `deltalake` package and Polars, compared with pyarrow reading the files the log adds), at
/// `version` or the latest. See the script for the JSON it returns.
pub fn delta_read(table_dir: impl AsRef<Path>, version: Option<u64>) -> serde_json::Value {
    let v = version.map(|v| v.to_string());
    let mut args = vec![table_dir.as_ref().as_os_str()];
    if let Some(v) = &v {
        args.push(std::ffi::OsStr::new(v));
    }
    run_json("delta_read.py", &args)
}

/// Tell provisional rows from sealed ones in the Delta table at `table_dir` with each reader, as
/// docs/formats.md#provisional-tip shows (`tests/py/tip_readers.py`).
pub fn tip_readers(table_dir: impl AsRef<Path>) -> serde_json::Value {
    run_json("tip_readers.py", &[table_dir.as_ref().as_os_str()])
}

/// Read the Delta table at `table_dir` with Apache Spark's Parquet reader (`tests/py/spark_read.py`:
/// the files the log lists, with the table's schema from the log; `local[1]`, loopback only).
pub fn spark_read(table_dir: impl AsRef<Path>) -> serde_json::Value {
    run_json("spark_read.py", &[table_dir.as_ref().as_os_str()])
}

/// Read the Delta table at `uri` (`s3://bucket/path`) with the `deltalake` package alone, with
/// object-store `storage_options` (e.g. a loopback S3 server's endpoint and dummy keys).
pub fn delta_read_uri(uri: &str, storage_options: &serde_json::Value) -> serde_json::Value {
    delta_read_uri_at(uri, storage_options, None)
}

/// As [`delta_read_uri`], at table version `version` (time travel; the latest with `None`).
pub fn delta_read_uri_at(
    uri: &str,
    storage_options: &serde_json::Value,
    version: Option<u64>,
) -> serde_json::Value {
    let options = storage_options.to_string();
    let version = version.map(|v| v.to_string());
    let mut args = vec![
        std::ffi::OsStr::new(uri),
        std::ffi::OsStr::new("--storage-options"),
        std::ffi::OsStr::new(&options),
    ];
    if let Some(v) = &version {
        args.push(std::ffi::OsStr::new(v));
    }
    run_json("delta_read.py", &args)
}
