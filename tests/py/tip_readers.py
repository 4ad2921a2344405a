#!/usr/bin/env python3
"""Tell provisional rows from sealed ones with each tested reader, exactly as docs/formats.md
(#provisional-tip) shows. Usage: tip_readers.py TABLE_DIR

Prints one JSON document: for each reader (`deltalake`, `polars`, `datafusion`, `duckdb`), the
sorted ledger sequences it reads as `sealed` and as `provisional`; and `sealed_through`.
"""

import json
import os
import sys

import deltalake
import duckdb
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc


def seqs(column) -> list:
    return sorted(pc.cast(column, pa.int64()).to_pylist())


def main() -> None:
    path = os.path.abspath(sys.argv[1])
    dt = deltalake.DeltaTable(path)
    out = {}

    # --- docs/formats.md: delta-rs -------------------------------------------------------
    adds = pa.table(dt.get_add_actions(flatten=True))
    paths = adds.column("path").to_pylist()
    maxes = adds.column("max.ledger_sequence").to_pylist()
    provisional_files = [p for p in paths if p.startswith("_tip/")]
    sealed_through = max(
        (m for p, m in zip(paths, maxes) if not p.startswith("_tip/")), default=0
    )
    def read(op):
        t = dt.to_pyarrow_table(
            columns=["ledger_sequence"], filters=[("ledger_sequence", op, sealed_through)]
        )
        return seqs(t.column(0))

    out["deltalake"] = {"sealed": read("<="), "provisional": read(">")}
    out["sealed_through"] = sealed_through
    out["provisional_files"] = sorted(provisional_files)

    # --- Polars (native scan): the same sealed_through -----------------------------------
    lf = pl.scan_delta(path).select(
        "ledger_sequence", (pl.col("ledger_sequence") > sealed_through).alias("provisional")
    )
    df = lf.collect()
    out["polars"] = {
        "sealed": sorted(df.filter(~pl.col("provisional"))["ledger_sequence"].to_list()),
        "provisional": sorted(df.filter(pl.col("provisional"))["ledger_sequence"].to_list()),
    }

    # --- DataFusion SQL (deltalake.QueryBuilder) -----------------------------------------
    qb = deltalake.QueryBuilder().register("ledgers", dt)
    sql = (
        "SELECT ledger_sequence, ledger_sequence > {t} AS provisional FROM ledgers"
    ).format(t=sealed_through)
    table = pa.table(qb.execute(sql).read_all())
    out["datafusion"] = {
        "sealed": seqs(table.filter(pc.invert(table.column("provisional"))).column(0)),
        "provisional": seqs(table.filter(table.column("provisional")).column(0)),
    }

    # --- DuckDB: the files the log lists, the file name tells ----------------------------
    files = [f.replace("file://", "", 1) for f in dt.file_uris()]
    con = duckdb.connect()
    rows = con.execute(
        "SELECT ledger_sequence, filename LIKE '%/_tip/%' AS provisional "
        "FROM read_parquet(?, filename = true) ORDER BY ledger_sequence",
        [files],
    ).fetchall()
    out["duckdb"] = {
        "sealed": [r[0] for r in rows if not r[1]],
        "provisional": [r[0] for r in rows if r[1]],
    }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
