#!/usr/bin/env python3
"""Read a Bronze dataset folder as a Delta Lake table with the real readers, and compare.

Usage: delta_read.py TABLE_DIR [VERSION]
       delta_read.py s3://BUCKET/PATH --storage-options JSON

A table URI (the second form) is opened by deltalake alone, with those object-store options (a
loopback S3 server in the tests): `version`, `files`, `rows_deltalake`, `ledger_sequences`.

Opens the table with the `deltalake` package (delta-rs) and with Polars, reads every row with
each, and reads the Parquet files the log adds with pyarrow directly. Prints one JSON document:

* `version`: the table version read; `files`: the add paths of that version, in ledger order
* `rows_deltalake`, `rows_polars` (`pl.read_delta(..., use_pyarrow=True)`), `rows_parquet`: row counts
* `equal_deltalake`, `equal_polars`: every row (all 17 columns, sorted by ledger_sequence) equal
  to the Parquet files' rows
* `ledger_sequences`: the sorted ledger sequences deltalake read
* `columns`: the column names deltalake read, in order
* `pruned_files`: the files a ledger_sequence filter keeps (statistics are usable)
"""

import json
import os
import sys

import deltalake
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
    """Sorted by the first ledger of their range=S-E folder."""
    return sorted(rel_paths, key=lambda p: int(p.split("=", 1)[1].split("-", 1)[0]))


def relative(uri: str, root: str) -> str:
    p = uri.replace("file://", "")
    return os.path.relpath(p, root) if os.path.isabs(p) else p


def main_uri(uri: str, options: dict) -> None:
    dt = deltalake.DeltaTable(uri, storage_options=options)
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


def main() -> None:
    if "://" in sys.argv[1]:
        main_uri(sys.argv[1], json.loads(sys.argv[3]))
        # The S3 client's background threads abort the interpreter's normal teardown
        # ("terminate called without an active exception"): leave once the answer is out.
        sys.stdout.flush()
        os._exit(0)
    path = os.path.abspath(sys.argv[1])
    version = int(sys.argv[2]) if len(sys.argv) > 2 else None
    dt = deltalake.DeltaTable(path, version=version)
    # Every reader reads the version deltalake opened (a running copier adds versions meanwhile).
    version = dt.version()
    files = sorted(dt.file_uris())
    rel = ledger_order(relative(f, path) for f in files)

    via_delta = dt.to_pyarrow_table()
    # Polars' native Delta scan refuses to cast the unsigned Parquet column ledger_sequence
    # (UINT_64) to the table's long; through pyarrow it reads every row.
    via_polars = pl.read_delta(path, version=version, use_pyarrow=True).to_arrow()
    parquet_tables = [pq.read_table(os.path.join(path, f)) for f in rel]
    via_parquet = pa.concat_tables(parquet_tables) if parquet_tables else None

    expected = normalise(via_parquet) if via_parquet is not None else None
    got_delta = normalise(via_delta)
    got_polars = normalise(via_polars.select(via_delta.column_names))

    def equal(got):
        if expected is None:
            return got.num_rows == 0
        return got.column_names == expected.column_names and all(
            got.column(n).equals(expected.column(n)) for n in expected.column_names
        )

    seqs = pc.cast(via_delta.column("ledger_sequence"), pa.int64()).to_pylist()
    pruned = []
    if seqs:
        probe = min(seqs)
        # Statistics-based pruning: delta-rs turns add.stats into each fragment's guarantee, so
        # a filter on one ledger keeps only the files whose min/max can contain it.
        expr = pc.field("ledger_sequence") == probe
        pruned = ledger_order(
            relative(frag.path, path)
            for frag in dt.to_pyarrow_dataset().get_fragments(filter=expr)
        )
    print(
        json.dumps(
            {
                "version": dt.version(),
                "files": rel,
                "rows_deltalake": via_delta.num_rows,
                "rows_polars": via_polars.num_rows,
                "rows_parquet": 0 if via_parquet is None else via_parquet.num_rows,
                "equal_deltalake": equal(got_delta),
                "equal_polars": equal(got_polars),
                "ledger_sequences": sorted(seqs),
                "columns": via_delta.column_names,
                "pruned_files": pruned,
            }
        )
    )


if __name__ == "__main__":
    main()
