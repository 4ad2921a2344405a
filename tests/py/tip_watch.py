#!/usr/bin/env python3
"""Poll a Bronze Delta table as a reader would while a copier follows the tip (docs/tip.md).

Usage: tip_watch.py TABLE_DIR STOP_FILE [POLL_SECONDS]

Until STOP_FILE exists: waits for the table, then every POLL_SECONDS (default 0.05) brings a
deltalake `DeltaTable` up to date and, for each version it has not seen, reads the table's
`ledger_sequence` column (every row of every file of that version, through deltalake) and
prints one JSON line:

* `version`, `seen_at` (unix seconds, float: when this reader first saw the version)
* `rows`, `distinct`, `min`, `max`: of the ledger sequences read
* `contiguous`: the sequences are exactly min..=max, each once (a chain prefix, no duplicate)
* `provisional`, `sealed`: the add paths of the version under `_tip/` and the others
* `provisional_max`: the largest ledger read from provisional files (null if none)
"""

import json
import os
import sys
import time

import deltalake
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq


def snapshot(dt: deltalake.DeltaTable, root: str) -> dict:
    files = [f.replace("file://", "", 1) for f in dt.file_uris()]
    files = [f[len(root):] if f.startswith(root) else f for f in files]
    provisional = sorted(f for f in files if f.startswith("_tip/"))
    sealed = sorted(f for f in files if not f.startswith("_tip/"))
    table = dt.to_pyarrow_table(columns=["ledger_sequence"])
    seqs = pc.cast(table.column("ledger_sequence"), pa.int64()).to_pylist()
    lo = min(seqs) if seqs else None
    hi = max(seqs) if seqs else None
    prov_max = None
    for f in provisional:
        col = pq.read_table(os.path.join(root, f), columns=["ledger_sequence"]).column(0)
        m = pc.max(pc.cast(col, pa.int64())).as_py()
        prov_max = m if prov_max is None else max(prov_max, m)
    return {
        "version": dt.version(),
        "rows": len(seqs),
        "distinct": len(set(seqs)),
        "min": lo,
        "max": hi,
        "contiguous": bool(seqs) and sorted(seqs) == list(range(lo, hi + 1)),
        "provisional": provisional,
        "sealed": sealed,
        "provisional_max": prov_max,
    }


def main() -> None:
    root = os.path.abspath(sys.argv[1]) + "/"
    stop = sys.argv[2]
    poll = float(sys.argv[3]) if len(sys.argv) > 3 else 0.05
    dt = None
    seen = -1
    while not os.path.exists(stop):
        try:
            if dt is None:
                if not os.path.exists(os.path.join(root, "_delta_log", "00000000000000000000.json")):
                    time.sleep(poll)
                    continue
                dt = deltalake.DeltaTable(root)
            else:
                dt.update_incremental()
        except Exception as e:  # a version being written: try again at the next poll
            print(json.dumps({"error": str(e)}), flush=True)
            dt = None
            time.sleep(poll)
            continue
        if dt.version() != seen:
            now = time.time()
            snap = snapshot(dt, root)
            snap["seen_at"] = now
            seen = snap["version"]
            print(json.dumps(snap), flush=True)
        time.sleep(poll)


if __name__ == "__main__":
    main()
