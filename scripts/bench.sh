#!/usr/bin/env bash
# Throughput benchmark: copies a generated datastore of real-sized pubnet ledgers (the 16
# pubnet variants, relinked into a chain; BENCH_SHAPE=small: early-history-sized ledgers cycled
# from the protocol 0-19 samples and the testnet fixtures, 2-4 KB each) and prints ledgers/s and MB/s of XDR beside a floor
# measured in the same run on the same bytes (zstd-decompress + sha256 + the Parquet codec's
# compression). Both run pinned to one core, alternately for BENCH_ROUNDS rounds, and the best
# run of each is compared. Also reports the copier's peak memory (RSS).
#
#   BENCH_LEDGERS=10000 BENCH_PARTITION=10000 BENCH_ROUNDS=3 scripts/bench.sh
#
# BENCH_PROFILE=dev builds without optimising the workspace's own crates: figures are then
# meaningless, but the script runs end to end in seconds (CI's smoke test: `make bench-smoke`).
set -euo pipefail
cd "$(dirname "$0")/.."

LEDGERS=${BENCH_LEDGERS:-10000}
PARTITION=${BENCH_PARTITION:-10000}
CORE=${BENCH_CORE:-0}
WORK=${BENCH_DIR:-$(mktemp -d /tmp/bronze-bench.XXXXXX)}
PROFILE=${BENCH_PROFILE:-release}
SHAPE=${BENCH_SHAPE:-pubnet}
case $SHAPE in
    pubnet) TEMPLATES=(tests/fixtures/pubnet-variants); GOAL="ratio to floor >= 0.70" ;;
    small)
        P=ledger/tests/data/stellar-core-protocols/ledger-close-meta-v0-protocol
        TEMPLATES=("$P-0.xdr" "$P-12.xdr" "$P-19.xdr" tests/fixtures/testnet-datastore/FFFFFFFF--0-63999)
        GOAL=">= 10000 ledgers/s" ;;
    *) echo "BENCH_SHAPE must be pubnet or small, not '$SHAPE'" >&2; exit 2 ;;
esac
case $PROFILE in
    release) OUT=target/release ;;
    dev) OUT=target/debug ;;
    *) echo "BENCH_PROFILE must be release or dev, not '$PROFILE'" >&2; exit 2 ;;
esac
BIN=$OUT/bronze-copier

if [ "$PROFILE" = dev ]; then
    # The workspace's test build (as `make test` and the cluster tier build it): it holds the
    # copier and the example with the same feature set, so after `make test` nothing is compiled
    # again (`-p bronze` alone resolves other features and rebuilds most dependencies: 20+ min of
    # a CI run's bench-smoke).
    cargo test -q --workspace --no-run
else
    cargo build --profile "$PROFILE" -q -p bronze --bin bronze-copier --example bench_floor
fi
DATASTORE="$WORK/datastore-$SHAPE-$LEDGERS"
if [ ! -f "$DATASTORE/.config.json" ]; then
    echo "generating $LEDGERS $SHAPE-sized ledgers into $DATASTORE ..."
    "$BIN" generate-datastore --out "$DATASTORE" "${TEMPLATES[@]/#/--template=}" \
        --ledgers "$LEDGERS" --first-ledger 2 --network pubnet >/dev/null
fi
sync

# The copier's config: written on every run (an earlier version only worked with a BENCH_DIR left
# over from a run that had written it).
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

ROUNDS=${BENCH_ROUNDS:-3}
# The machine may be shared: floor and copier alternate for ROUNDS rounds and the fastest run of
# each is compared (slower runs measure the neighbours, not us). Every round is printed.
FLOORS=()
COPIERS=()
for round in $(seq 1 "$ROUNDS"); do
    echo "== round $round/$ROUNDS: floor (one core)"
    FLOOR=$(taskset -c "$CORE" "$OUT/examples/bench_floor" "$DATASTORE")
    echo "$FLOOR"
    FLOORS+=("$FLOOR")

    rm -rf "$WORK/out" "$WORK/state"
    echo "== round $round/$ROUNDS: bronze-copier (one core)"
    START=$(date +%s.%N)
    LOG=$(taskset -c "$CORE" "$BIN" -config "$WORK/config.yaml" --no-progress)
    END=$(date +%s.%N)
    echo "$LOG" | grep -E "backfill complete" | sed 's/^.*INFO //'
    COPIERS+=("$(echo "$LOG" | grep -E "backfill complete") wall_s=$(python3 -c "print($END - $START)")")
done

python3 - "$LEDGERS" "$PARTITION" "$SHAPE" "$GOAL" "${#FLOORS[@]}" "${FLOORS[@]}" "${COPIERS[@]}" <<'PY'
import re, sys
ledgers, partition, shape, goal, n = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4], int(sys.argv[5])
floors, copiers = sys.argv[6:6 + n], sys.argv[6 + n:6 + 2 * n]
num = lambda pattern, text: float(re.search(pattern, text).group(1))
mb = num(r"([\d.]+) MB XDR", floors[0])
f_secs = min(num(r"in ([\d.]+) s:", f) for f in floors)
f_cpu = min(num(r"cpu ([\d.]+) s", f) for f in floors)
c_secs = min(num(r"wall_s=([\d.]+)", c) for c in copiers)
c_cpu = min(num(r'cpu_s="?([\d.]+)', c) for c in copiers)
rss = max(num(r'peak_rss_mb="?([\d.]+)', c) for c in copiers)
print(f"== {shape}-sized ledgers, one core: best of {n} rounds (goal: {goal})")
print(f"floor:  {ledgers / f_secs:.1f} ledgers/s, {mb / f_secs:.1f} MB/s of XDR ({f_secs:.2f} s, cpu {f_cpu:.2f} s)")
print(f"copier: {ledgers / c_secs:.1f} ledgers/s, {mb / c_secs:.1f} MB/s of XDR ({c_secs:.2f} s, cpu {c_cpu:.2f} s)")
print(f"ratio to floor (wall clock): {f_secs / c_secs:.2f}")
# CPU seconds barely move when other processes share the core: the steadier ratio.
print(f"ratio to floor (CPU time): {f_cpu / c_cpu:.2f}")
print(f"peak RSS: {rss:.1f} MiB (goal < 512 MiB for a {partition}-ledger partition)")
PY
echo "(work dir: $WORK)"
