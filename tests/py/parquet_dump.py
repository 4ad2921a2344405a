#!/usr/bin/env python3
"""Dump a Parquet file as JSON with pyarrow: schema, file metadata and every value.

Usage: parquet_dump.py FILE.parquet  (prints one JSON document; see bronze_testkit::parquet_dump)
"""

import json
import sys

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from bronze_json import jsonable

_MS_DIVISOR = {"s": None, "ms": 1, "us": 1000, "ns": 1000000}


def column_values(arr):
    """Values of one top-level column. Timestamps are converted at the Arrow level so that
    nanosecond columns keep exact integer milliseconds (floor division)."""
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks() if arr.num_chunks else pa.array([], type=arr.type)
    t = arr.type
    if pa.types.is_timestamp(t):
        ints = pc.cast(arr, pa.int64()).to_pylist()
        div = _MS_DIVISOR[t.unit]
        return [None if v is None else (v * 1000 if div is None else v // div) for v in ints]
    if pa.types.is_dictionary(t):
        return column_values(arr.dictionary_decode())
    return [jsonable(v) for v in arr.to_pylist()]


def logical(col):
    lt = col.logical_type
    if lt is None or lt.type == "NONE":
        return None
    try:
        return json.loads(lt.to_json())
    except Exception:  # older pyarrow: no to_json
        return str(lt)


def main(path):
    pf = pq.ParquetFile(path)
    md = pf.metadata
    arrow_schema = pf.schema_arrow
    table = pf.read()

    leaf_columns = []
    for i in range(md.num_columns):
        c = md.schema.column(i)
        leaf_columns.append(
            {
                "path": c.path,
                "physical_type": c.physical_type,
                "logical_type": logical(c),
                "converted_type": None if c.converted_type == "NONE" else c.converted_type,
                "max_definition_level": c.max_definition_level,
                "max_repetition_level": c.max_repetition_level,
            }
        )

    row_groups = []
    codecs = set()
    for g in range(md.num_row_groups):
        rg = md.row_group(g)
        cols = []
        for i in range(rg.num_columns):
            cc = rg.column(i)
            codecs.add(cc.compression)
            stats = cc.statistics if cc.is_stats_set else None
            cols.append(
                {
                    "path": cc.path_in_schema,
                    "compression": cc.compression,
                    "encodings": list(cc.encodings),
                    "has_statistics": stats is not None,
                    "null_count": stats.null_count if stats is not None and stats.has_null_count else None,
                    "total_compressed_size": cc.total_compressed_size,
                }
            )
        row_groups.append({"num_rows": rg.num_rows, "total_byte_size": rg.total_byte_size, "columns": cols})

    kv = {}
    for k, v in (md.metadata or {}).items():
        key = k.decode("utf-8", "replace")
        if key != "ARROW:schema":
            kv[key] = v.decode("utf-8", "replace")

    def field_meta(f):
        return {k.decode("utf-8", "replace"): v.decode("utf-8", "replace") for k, v in (f.metadata or {}).items()}

    out = {
        "file": path,
        "num_rows": md.num_rows,
        "num_row_groups": md.num_row_groups,
        "created_by": md.created_by,
        "format_version": md.format_version,
        "compression": (next(iter(codecs)) if len(codecs) == 1 else ("MIXED" if codecs else None)),
        "compressions": sorted(codecs),
        "arrow_schema": [
            {"name": f.name, "type": str(f.type), "nullable": f.nullable, "metadata": field_meta(f)}
            for f in arrow_schema
        ],
        "schema_metadata": {
            k.decode("utf-8", "replace"): v.decode("utf-8", "replace")
            for k, v in (arrow_schema.metadata or {}).items()
            if k != b"ARROW:schema"
        },
        "columns": leaf_columns,
        "row_groups": row_groups,
        "key_value_metadata": kv,
        "values": {name: column_values(table.column(name)) for name in table.column_names},
    }
    json.dump(out, sys.stdout, allow_nan=False)
    sys.stdout.write("\n")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: parquet_dump.py FILE.parquet")
    main(sys.argv[1])
