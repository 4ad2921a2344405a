#!/usr/bin/env python3
"""Read a Bronze Delta table with Apache Spark, as Delta Lake on Spark does: Spark's own Parquet
reader over the data files the log lists, with the table's schema from the log (the Delta Spark
jars are not installable here, so the log is read by delta-rs and the files by Spark).

Usage: spark_read.py TABLE_DIR [VERSION]

Prints one JSON document:
* `version`, `files`: the version read and its files (relative, in ledger order)
* `spark_version`, `java_version`
* `schema`: Spark's schema of the rows read, as `name: simpleString`
* `rows`, `equal`: the rows Spark read, and whether they are equal (all 17 columns, sorted by
  ledger_sequence) to pyarrow's reading of the same files
* `point_rows`: rows of `WHERE ledger_sequence = X` for X the second ledger of the middle file
  (Spark pushes the filter down to the Parquet row-group statistics of the signed column)
* `error`: the exception Spark raised (and no other key but version and files) if it failed

Spark runs in-process on `local[1]` with a small heap, no UI, bound to loopback only.
"""

import json
import os
import sys

import deltalake
import pyarrow as pa
import pyarrow.parquet as pq

from delta_read import ledger_order, normalise, relative


def spark_session():
    # Loopback only: Spark would otherwise resolve the host name to pick its address.
    os.environ["SPARK_LOCAL_IP"] = "127.0.0.1"
    from pyspark.sql import SparkSession

    return (
        SparkSession.builder.master("local[1]")
        .appName("bronze-spark-read")
        .config("spark.ui.enabled", "false")
        .config("spark.driver.bindAddress", "127.0.0.1")
        .config("spark.driver.host", "127.0.0.1")
        .config("spark.driver.memory", "512m")
        .config("spark.sql.shuffle.partitions", "1")
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.sql.parquet.filterPushdown", "true")
        .config("spark.ui.showConsoleProgress", "false")
        .getOrCreate()
    )


def main() -> None:
    path = os.path.abspath(sys.argv[1])
    version = int(sys.argv[2]) if len(sys.argv) > 2 else None
    dt = deltalake.DeltaTable(path, version=version)
    rel = ledger_order(relative(f, path) for f in dt.file_uris())
    out = {"version": dt.version(), "files": rel}
    files = [os.path.join(path, f) for f in rel]
    # The table's own schema, from the log: Delta's schemaString is Spark's StructType JSON.
    schema_json = dt.schema().to_json()
    spark = spark_session()
    try:
        from pyspark.sql.types import StructType

        schema = StructType.fromJson(json.loads(schema_json))
        df = spark.read.schema(schema).parquet(*files)
        got = df.toArrow()
        expected = normalise(pa.concat_tables([pq.read_table(f) for f in files]))
        got = normalise(got)
        middle = rel[len(rel) // 2]
        start, end = (int(n) for n in middle.split("/", 1)[0].split("=", 1)[1].split("-", 1))
        x = min(start + 1, end)
        out.update(
            {
                "spark_version": spark.version,
                "java_version": spark.sparkContext._jvm.java.lang.System.getProperty(
                    "java.version"
                ),
                "schema": [f"{f.name}: {f.dataType.simpleString()}" for f in df.schema.fields],
                "rows": got.num_rows,
                "equal": got.column_names == expected.column_names
                and all(got.column(n).equals(expected.column(n)) for n in got.column_names),
                "ledger_sequences": got.column("ledger_sequence").to_pylist(),
                "point_ledger": x,
                "point_rows": df.where(f"ledger_sequence = {x}").count(),
            }
        )
    except Exception as e:  # Spark refusing the files is the finding
        # The Java exceptions of the chain (the root cause is deep in a Py4J stack trace).
        lines = [l.strip() for l in str(e).splitlines()]
        causes = [l for l in lines if "Exception" in l and not l.startswith("at ")]
        out["error"] = f"{type(e).__name__}: " + " | ".join(dict.fromkeys(causes[:12]))
    finally:
        spark.stop()
    print(json.dumps(out))


if __name__ == "__main__":
    main()
