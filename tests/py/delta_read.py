#!/usr/bin/env python3
"""Read a Bronze dataset folder as a Delta Lake table with the real readers, and compare.

Usage: delta_read.py TABLE_DIR [VERSION]
       delta_read.py s3://BUCKET/PATH --storage-options JSON [VERSION]

A table URI (the second form) is opened by deltalake alone, with those object-store options (a
loopback S3 server in the tests): `version`, `files`, `rows_deltalake`, `ledger_sequences`.

Opens the table with every reader users point at it, reads every row with each, and reads the
Parquet files the log adds with pyarrow directly. Prints one JSON document:

* `version`: the table version read; `files`: the add paths of that version, in ledger order
* `rows_<reader>`, `equal_<reader>`: the rows each reader read, and whether they are equal (all
  17 columns, sorted by ledger_sequence) to the Parquet files' rows, for the readers
  `deltalake` (delta-rs, `to_pyarrow_table`), `polars` (Polars' native `read_delta`, no
  pyarrow), `datafusion` (DataFusion SQL through `deltalake.QueryBuilder`) and `duckdb`
  (`read_parquet` over the files the log lists, cast to the table's types); `rows_parquet`
* `errors`: reader -> the error it raised (empty when every reader read the table)
* `table_types`: the Delta types of ledger_sequence and protocol_version in the table's schema;
  `duckdb_file_types`: the types DuckDB sees in the files for them (equal to the table's: no
  cast needed)
* `ledger_sequences`: the sorted ledger sequences deltalake read
* `columns`: the column names deltalake read, in order
* `pruned_files`: the files a ledger_sequence filter keeps (pyarrow dataset of delta-rs)
* `point_query`: `WHERE ledger_sequence = X` for a ledger X of the middle file: the files
  DataFusion opened (`files_opened` of EXPLAIN ANALYZE) and scanned without the filter, the rows
  DataFusion and Polars' native scan returned
* `row_group_stats`: per file, pyarrow's view of the row-group statistics of ledger_sequence:
  physical and logical type, min and max
"""

import json
import os
import sys

import re

import deltalake
import duckdb
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq


def normalise(table: pa.Table) -> pa.Table:
    """The comparable form of the rows: sorted by ledger_sequence, integers as int64,
    timestamps as epoch milliseconds (readers may widen ms to us), plain strings and binaries."""
    cols = []
    names = []
    for name in table.column_names:
        col = table.column(name).combine_chunks()
        t = col.type
        if pa.types.is_dictionary(t):
            col = col.dictionary_decode()
            t = col.type
        if pa.types.is_timestamp(t):
            div = {"s": None, "ms": 1, "us": 1000, "ns": 1000000}[t.unit]
            col = pc.cast(col, pa.int64())
            col = pc.divide(col, div) if div and div > 1 else col
        elif pa.types.is_integer(t):
            col = pc.cast(col, pa.int64())
        elif pa.types.is_large_string(t) or pa.types.is_string_view(t):
            col = pc.cast(col, pa.string())
        elif pa.types.is_large_binary(t) or pa.types.is_binary_view(t):
            col = pc.cast(col, pa.binary())
        cols.append(col)
        names.append(name)
    out = pa.table(cols, names=names)
    return out.sort_by("ledger_sequence") if out.num_rows else out


def ledger_order(rel_paths):
    """Sorted by their first ledger (the range=S-E folder, or a provisional file's tip-A-B)."""
    return sorted(rel_paths, key=span_of)


def span_of(rel: str):
    """The ledgers of a file the log lists: `range=S-E/part-S-E.parquet`, or a provisional
    `_tip/range=S-E/tip-A-B.parquet` (docs/formats.md#provisional-tip)."""
    name = rel.rsplit("/", 1)[-1]
    if name.startswith("tip-"):
        a, b = name[len("tip-"):-len(".parquet")].split("-", 1)
    else:
        folder = next(p for p in rel.split("/") if p.startswith("range="))
        a, b = folder[len("range="):].split("-", 1)
    return int(a), int(b)


def relative(uri: str, root: str) -> str:
    p = uri.replace("file://", "")
    return os.path.relpath(p, root) if os.path.isabs(p) else p


def main_uri(uri: str, options: dict, version=None) -> None:
    dt = deltalake.DeltaTable(uri, storage_options=options, version=version)
    table = dt.to_pyarrow_table()
    root = uri.rstrip("/") + "/"
    files = ledger_order(f[len(root):] if f.startswith(root) else f for f in dt.file_uris())
    seqs = pc.cast(table.column("ledger_sequence"), pa.int64()).to_pylist()
    print(
        json.dumps(
            {
                "version": dt.version(),
                "files": files,
                "rows_deltalake": table.num_rows,
                "ledger_sequences": sorted(seqs),
            }
        )
    )


def sql_table(dt) -> pa.Table:
    """Every row through DataFusion SQL (delta-rs' table provider)."""
    qb = deltalake.QueryBuilder().register("bronze", dt)
    return pa.table(qb.execute("SELECT * FROM bronze"))


def files_opened(dt, where: str) -> int:
    """The data files DataFusion opened for a query (EXPLAIN ANALYZE metrics)."""
    qb = deltalake.QueryBuilder().register("bronze", dt)
    plan = pa.table(qb.execute(f"EXPLAIN ANALYZE SELECT ledger_sequence FROM bronze {where}"))
    text = "\n".join(str(v) for v in plan.column("plan").to_pylist())
    return sum(int(n) for n in re.findall(r"\bfiles_opened=(\d+)", text))


DUCKDB_TYPES = {
    "long": "BIGINT",
    "integer": "INTEGER",
    "string": "VARCHAR",
    "binary": "BLOB",
    "timestamp": "TIMESTAMP WITH TIME ZONE",
}


def table_schema(dt) -> list:
    """(name, Delta type) of the table's columns, from its log."""
    return [(f["name"], f["type"]) for f in json.loads(dt.schema().to_json())["fields"]]


def duckdb_table(files: list, schema: list):
    """DuckDB's read_parquet over the files the log lists, with the table's types; and the types
    DuckDB sees in the files for ledger_sequence and protocol_version."""
    con = duckdb.connect(database=":memory:")
    con.execute("SET threads TO 2")
    listed = "[" + ", ".join("'" + f.replace("'", "''") + "'" for f in files) + "]"
    described = con.execute(f"DESCRIBE SELECT * FROM read_parquet({listed})").fetchall()
    file_types = {r[0]: r[1] for r in described if r[0] in ("ledger_sequence", "protocol_version")}
    cols = ", ".join(f'CAST("{n}" AS {DUCKDB_TYPES[t]}) AS "{n}"' for n, t in schema)
    rows = con.sql(f"SELECT {cols} FROM read_parquet({listed})").to_arrow_table()
    return rows, file_types


def row_group_stats(files: list) -> list:
    out = []
    for f in files:
        meta = pq.ParquetFile(f).metadata
        for g in range(meta.num_row_groups):
            col = meta.row_group(g).column(0)
            st = col.statistics
            out.append(
                {
                    "file": os.path.basename(f),
                    "column": col.path_in_schema,
                    "physical": col.physical_type,
                    "logical": str(st.logical_type) if st is not None else None,
                    "min": st.min if st is not None and st.has_min_max else None,
                    "max": st.max if st is not None and st.has_min_max else None,
                }
            )
    return out


def attempt(errors: dict, name: str, read):
    try:
        return read()
    except Exception as e:  # a reader that refuses the table is a finding, not a crash
        errors[name] = f"{type(e).__name__}: {e}"[:2000]
        return None


def main() -> None:
    if "://" in sys.argv[1]:
        main_uri(
            sys.argv[1],
            json.loads(sys.argv[3]),
            int(sys.argv[4]) if len(sys.argv) > 4 else None,
        )
        # The S3 client's background threads abort the interpreter's normal teardown
        # ("terminate called without an active exception"): leave once the answer is out.
        sys.stdout.flush()
        os._exit(0)
    path = os.path.abspath(sys.argv[1])
    version = int(sys.argv[2]) if len(sys.argv) > 2 else None
    dt = deltalake.DeltaTable(path, version=version)
    # Every reader reads the version deltalake opened (a running copier adds versions meanwhile).
    version = dt.version()
    rel = ledger_order(relative(f, path) for f in dt.file_uris())
    abs_files = [os.path.join(path, f) for f in rel]
    schema = table_schema(dt)
    errors = {}

    via_delta = dt.to_pyarrow_table()
    # Polars' native Delta scan (the users' default: no pyarrow).
    via_polars = attempt(errors, "polars", lambda: pl.read_delta(path, version=version).to_arrow())
    via_sql = attempt(errors, "datafusion", lambda: sql_table(dt))
    duck = attempt(errors, "duckdb", lambda: duckdb_table(abs_files, schema)) if rel else None
    via_duckdb, duckdb_file_types = duck if duck else (None, {})
    parquet_tables = [pq.read_table(f) for f in abs_files]
    via_parquet = pa.concat_tables(parquet_tables) if parquet_tables else None

    expected = normalise(via_parquet) if via_parquet is not None else None

    def equal(got):
        if got is None:
            return False
        got = normalise(got.select(via_delta.column_names))
        if expected is None:
            return got.num_rows == 0
        return got.column_names == expected.column_names and all(
            got.column(n).equals(expected.column(n)) for n in expected.column_names
        )

    def rows(t):
        return None if t is None else t.num_rows

    seqs = pc.cast(via_delta.column("ledger_sequence"), pa.int64()).to_pylist()
    pruned = []
    point = None
    if seqs:
        probe = min(seqs)
        # Statistics-based pruning: delta-rs turns add.stats into each fragment's guarantee, so
        # a filter on one ledger keeps only the files whose min/max can contain it.
        expr = pc.field("ledger_sequence") == probe
        pruned = ledger_order(
            relative(frag.path, path)
            for frag in dt.to_pyarrow_dataset().get_fragments(filter=expr)
        )
        # A ledger inside the middle file: not the first one, where a bug could hide.
        middle = rel[len(rel) // 2]
        start, end = span_of(middle)
        x = min(start + 1, end)
        where = f"WHERE ledger_sequence = {x}"
        point = {
            "ledger": x,
            "file": middle,
            "files_opened": attempt(errors, "datafusion_point", lambda: files_opened(dt, where)),
            "files_opened_unfiltered": attempt(
                errors, "datafusion_scan", lambda: files_opened(dt, "")
            ),
            "rows_datafusion": attempt(
                errors,
                "datafusion_point_rows",
                lambda: pa.table(
                    deltalake.QueryBuilder()
                    .register("bronze", dt)
                    .execute(f"SELECT ledger_sequence FROM bronze {where}")
                ).num_rows,
            ),
            "rows_polars": attempt(
                errors,
                "polars_point",
                lambda: pl.scan_delta(path, version=version)
                .filter(pl.col("ledger_sequence") == x)
                .collect()
                .height,
            ),
        }
    types = dict(schema)
    print(
        json.dumps(
            {
                "version": dt.version(),
                "files": rel,
                "rows_deltalake": via_delta.num_rows,
                "rows_polars": rows(via_polars),
                "rows_datafusion": rows(via_sql),
                "rows_duckdb": rows(via_duckdb),
                "rows_parquet": 0 if via_parquet is None else via_parquet.num_rows,
                "equal_deltalake": equal(via_delta),
                "equal_polars": equal(via_polars),
                "equal_datafusion": equal(via_sql),
                "equal_duckdb": equal(via_duckdb) if rel else True,
                "errors": errors,
                "table_types": {
                    "ledger_sequence": types.get("ledger_sequence"),
                    "protocol_version": types.get("protocol_version"),
                },
                "duckdb_file_types": duckdb_file_types,
                "ledger_sequences": sorted(seqs),
                "columns": via_delta.column_names,
                "pruned_files": pruned,
                "point_query": point,
                "row_group_stats": row_group_stats(abs_files),
            }
        )
    )


if __name__ == "__main__":
    main()
