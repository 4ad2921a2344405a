#!/usr/bin/env python3
"""Run SQL with DuckDB over Parquet files, as a second reader independent of arrow-rs/pyarrow.

Usage: duckdb_query.py PARQUET_GLOB SQL
The files are visible to SQL as the view `t`. Prints {"columns", "types", "rows"} as JSON
(values converted as in bronze_json).
"""

import json
import sys

import duckdb

from bronze_json import jsonable


def main(glob, sql):
    con = duckdb.connect(database=":memory:")
    con.execute("SET threads TO 2")
    escaped = glob.replace("'", "''")
    con.execute(f"CREATE VIEW t AS SELECT * FROM read_parquet('{escaped}')")
    cur = con.execute(sql)
    columns = [d[0] for d in cur.description] if cur.description else []
    types = [str(d[1]) for d in cur.description] if cur.description else []
    rows = [[jsonable(v) for v in row] for row in cur.fetchall()]
    json.dump({"columns": columns, "types": types, "rows": rows}, sys.stdout, allow_nan=False)
    sys.stdout.write("\n")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: duckdb_query.py PARQUET_GLOB SQL")
    main(sys.argv[1], sys.argv[2])
