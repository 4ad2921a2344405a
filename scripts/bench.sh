#!/usr/bin/env bash
# Throughput benchmark: copies a generated datastore of real-sized pubnet ledgers (the 16
# pubnet variants, relinked into a chain) and prints ledgers/s and MB/s of XDR beside a floor
# measured in the same run on the same bytes (zstd-decompress + sha256 + the Parquet codec's
# compression). Both run pinned to one core. Also reports the copier's peak memory (RSS).
#
#   BENCH_LEDGERS=10000 BENCH_PARTITION=10000 scripts/bench.sh
set -euo pipefail
cd "$(dirname "$0")/.."

LEDGERS=${BENCH_LEDGERS:-10000}
PARTITION=${BENCH_PARTITION:-10000}
CORE=${BENCH_CORE:-0}
WORK=${BENCH_DIR:-$(mktemp -d /tmp/bronze-bench.XXXXXX)}
BIN=target/release/bronze-copier

cargo build --release -q -p bronze --bin bronze-copier --example bench_floor
DATASTORE="$WORK/datastore"
if [ ! -f "$DATASTORE/.config.json" ]; then
    echo "generating $LEDGERS pubnet-sized ledgers into $DATASTORE ..."
    "$BIN" generate-datastore --out "$DATASTORE" --template tests/fixtures/pubnet-variants \
        --ledgers "$LEDGERS" --first-ledger 2 --network pubnet >/dev/null
fi
sync

echo "== floor (one core)"
FLOOR=$(taskset -c "$CORE" target/release/examples/bench_floor "$DATASTORE")
echo "$FLOOR"

rm -rf "$WORK/out" "$WORK/state"
cat > "$WORK/config.yaml" <<YAML
copier_id: bench
era:
  network: pubnet
  ledger_start: 2
  ledger_end: $((LEDGERS + 1))
  partition_size: $PARTITION
  ingested_at: "2025-01-15T10:00:00Z"
source:
  mode: local
  local_path: $DATASTORE
storage:
  backend: local
  local_dir: $WORK/out
checkpoint:
  dir: $WORK/state
perf:
  max_in_flight_partitions: 1
YAML

echo "== bronze-copier (one core)"
START=$(date +%s.%N)
LOG=$(taskset -c "$CORE" "$BIN" -config "$WORK/config.yaml" --no-progress)
END=$(date +%s.%N)
echo "$LOG" | grep -E "backfill complete" | sed 's/^.*INFO //'
python3 - "$FLOOR" "$START" "$END" "$LEDGERS" "$LOG" <<'PY'
import re, sys
floor, start, end, ledgers, log = sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
f_rate = float(re.search(r"([\d.]+) ledgers/s", floor).group(1))
f_mbs = float(re.search(r"([\d.]+) MB/s", floor).group(1))
mb = float(re.search(r"([\d.]+) MB XDR", floor).group(1))
secs = end - start
rate = ledgers / secs
rss = re.search(r'peak_rss_mb="?([\d.]+)', log)
f_cpu = float(re.search(r"cpu ([\d.]+) s", floor).group(1))
cpu = re.search(r'cpu_s="?([\d.]+)', log)
print(f"copier: {ledgers} ledgers in {secs:.2f} s: {rate:.1f} ledgers/s, {mb / secs:.1f} MB/s of XDR")
print(f"ratio to floor (wall clock): {rate / f_rate:.2f} (goal >= 0.70)")
if cpu:
    # CPU seconds barely move when other processes share the core: the steadier ratio.
    print(f"ratio to floor (CPU time): {f_cpu / float(cpu.group(1)):.2f} (floor {f_cpu:.2f} s, copier {cpu.group(1)} s)")
if rss:
    print(f"peak RSS: {rss.group(1)} MiB (goal < 512 MiB for a {ledgers}-ledger partition)")
PY
echo "(work dir: $WORK)"
