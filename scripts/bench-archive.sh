#!/usr/bin/env bash
# History-archive check benchmark: the copier on a generated datastore of real-sized pubnet
# ledgers (the 16 pubnet variants, relinked into a chain), local disk, one core, with and without
# `archive.url`, in the same run:
#   baseline  no archive
#   local     an archive of the same ledgers on local disk (as stellar-core lays it out; the
#             `bench_archive` example writes it from the datastore)
#   trusted   the same plus `archive.trusted_ledger` at the archive's newest checkpoint (the
#             archive's own chain walked back from it to the partition)
#   delayed   the same archive over loopback HTTP with BENCH_DELAY_MS (50) added to every request
#             (`bronze-s3dir`, the cloud benchmark's server; a plain GET per file)
# Each kind runs BENCH_ROUNDS times, alternately, and the best of each is compared. Prints
# ledgers/s, CPU seconds and the ratios: local / baseline (goal: >= 0.90, the check costs under
# 10%), trusted / baseline, delayed / local (goal: >= 0.95, the latency does not slow the copy).
#
#   BENCH_ARCHIVE_LEDGERS=10046 BENCH_ROUNDS=2 scripts/bench-archive.sh
#
# The ledger count is rounded down to end on a checkpoint (64 k - 1), so the archive holds every
# ledger copied. One partition of all of them by default (BENCH_ARCHIVE_PARTITION), the work of
# one operator Job: 10,046 ledgers span 157 checkpoint files.
# BENCH_PROFILE=dev: unoptimised, figures meaningless, runs end to end quickly (`make bench-smoke`).
set -euo pipefail
cd "$(dirname "$0")/.."

REQUESTED=${BENCH_ARCHIVE_LEDGERS:-10046}
# Ledgers 2..=LEDGERS+1, the last one a checkpoint's last ledger.
LEDGERS=$(( (REQUESTED + 2) / 64 * 64 - 2 ))
[ "$LEDGERS" -ge 62 ] || { echo "BENCH_ARCHIVE_LEDGERS must be at least 62" >&2; exit 2; }
PARTITION=${BENCH_ARCHIVE_PARTITION:-$LEDGERS}
DELAY=${BENCH_DELAY_MS:-50}
ROUNDS=${BENCH_ROUNDS:-2}
CORE=${BENCH_CORE:-0}
WORK=${BENCH_DIR:-$(mktemp -d /tmp/bronze-bench-archive.XXXXXX)}
PROFILE=${BENCH_PROFILE:-release}
case $PROFILE in
    release) OUT=target/release ;;
    dev) OUT=target/debug ;;
    *) echo "BENCH_PROFILE must be release or dev, not '$PROFILE'" >&2; exit 2 ;;
esac
BIN=$OUT/bronze-copier
# The copier with bench.sh's selection (examples built with it), so the binary is not rebuilt.
if [ "$PROFILE" = dev ]; then
    # The workspace's test build (as `make test` builds it: same features, nothing rebuilt).
    cargo test -q --workspace --no-run
else
    cargo build --profile "$PROFILE" -q -p bronze --bin bronze-copier --example bench_floor --example bench_archive
fi
cargo build --profile "$PROFILE" -q -p bronze-testkit --bin bronze-s3dir

DATASTORE="$WORK/datastore-pubnet-$LEDGERS"
if [ ! -f "$DATASTORE/.config.json" ]; then
    echo "generating $LEDGERS pubnet-sized ledgers into $DATASTORE ..."
    "$BIN" generate-datastore --out "$DATASTORE" --template tests/fixtures/pubnet-variants \
        --ledgers "$LEDGERS" --first-ledger 2 --network pubnet >/dev/null
fi
ARCHIVE="$WORK/archive-pubnet-$LEDGERS"
rm -rf "$ARCHIVE"
WRITTEN=$("$OUT/examples/bench_archive" "$DATASTORE" "$ARCHIVE" "Public Global Stellar Network ; September 2015")
echo "$WRITTEN"
NEWEST=$(echo "$WRITTEN" | sed -n 's/.* newest \([0-9]*\) hash .*/\1/p')
HASH=$(echo "$WRITTEN" | sed -n 's/.* hash \([0-9a-f]*\)$/\1/p')
[ "$NEWEST" = $((LEDGERS + 1)) ] || { echo "the archive ends at $NEWEST, not $((LEDGERS + 1))" >&2; exit 1; }
sync

SERVER_PID=
cleanup() { [ -n "$SERVER_PID" ] && kill "$SERVER_PID" 2>/dev/null || true; }
trap cleanup EXIT
"$OUT/bronze-s3dir" "$ARCHIVE" "$DELAY" none >"$WORK/archive-server.log" 2>&1 &
SERVER_PID=$!
ENDPOINT=
for _ in $(seq 200); do
    ENDPOINT=$(sed -n 's/^endpoint //p' "$WORK/archive-server.log" 2>/dev/null || true)
    [ -n "$ENDPOINT" ] && break
    sleep 0.05
done
[ -n "$ENDPOINT" ] || { echo "bronze-s3dir did not start: $(cat "$WORK/archive-server.log")" >&2; exit 1; }
# bronze-s3dir serves GET /BUCKET/KEY from ROOT/KEY: any first path segment will do.
DELAYED_URL="$ENDPOINT/archive"

copy() { # kind -> the "backfill complete" line plus wall_s
    local archive=""
    case $1 in
        baseline) ;;
        local) archive=$(printf 'archive:\n  url: "%s"\n' "$ARCHIVE") ;;
        trusted) archive=$(printf 'archive:\n  url: "%s"\n  trusted_ledger:\n    sequence: %s\n    hash: "%s"\n' \
            "$ARCHIVE" "$NEWEST" "$HASH") ;;
        delayed) archive=$(printf 'archive:\n  url: "%s"\n' "$DELAYED_URL") ;;
    esac
    cat >"$WORK/config.yaml" <<YAML
copier_id: bench-archive
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
$archive
YAML
    rm -rf "$WORK/out" "$WORK/state"
    local start end
    start=$(date +%s.%N)
    taskset -c "$CORE" "$BIN" -config "$WORK/config.yaml" --no-progress >"$WORK/copier.log" 2>&1 \
        || { echo "the $1 copy failed:" >&2; tail -20 "$WORK/copier.log" >&2; exit 1; }
    end=$(date +%s.%N)
    # Every manifest records the check (and the trusted ledger): the run did check.
    local want='"archives"'
    [ "$1" = trusted ] && want='"trusted_ledger"'
    if [ "$1" != baseline ] && [ -n "$(find "$WORK/out" -name _manifest.json -exec grep -L "$want" {} +)" ]; then
        echo "the $1 copy recorded no $want in its manifests" >&2
        exit 1
    fi
    echo "$(grep -E "backfill complete" "$WORK/copier.log") wall_s=$(python3 -c "print($end - $start)")"
}

KINDS=(baseline local trusted delayed)
RESULTS=()
for round in $(seq 1 "$ROUNDS"); do
    for kind in "${KINDS[@]}"; do
        echo "== round $round/$ROUNDS: $kind (one core)"
        line=$(copy "$kind")
        echo "$line" | sed 's/^.*INFO //'
        RESULTS+=("$kind $line")
    done
done

python3 - "$LEDGERS" "$PARTITION" "$DELAY" "$ROUNDS" "${RESULTS[@]}" <<'PY'
import re, sys
ledgers, partition, delay, rounds, rows = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5:]
num = lambda pattern, text: float(re.search(pattern, text).group(1))
best = {}
for row in rows:
    kind, line = row.split(" ", 1)
    wall, cpu, rss = num(r"wall_s=([\d.]+)", line), num(r'cpu_s="?([\d.]+)', line), num(r'peak_rss_mb="?([\d.]+)', line)
    w, c, r = best.get(kind, (float("inf"), float("inf"), 0.0))
    best[kind] = (min(w, wall), min(c, cpu), max(r, rss))
print(f"== history archive check: {ledgers} pubnet-sized ledgers, partitions of {partition}, local datastore, one core, best of {rounds}")
for kind, what in (("baseline", "no archive"), ("local", "archive on local disk"),
                   ("trusted", "local archive + trusted ledger at its newest checkpoint"),
                   ("delayed", f"archive over HTTP, +{delay} ms per request")):
    w, c, r = best[kind]
    print(f"{kind:9} {ledgers / w:8.1f} ledgers/s ({w:.2f} s, cpu {c:.2f} s, peak RSS {r:.1f} MiB): {what}")
(bw, bc, _), (lw, lc, _), (tw, tc, _), (dw, dc, _) = (best[k] for k in ("baseline", "local", "trusted", "delayed"))
print(f"local / baseline:   {bw / lw:.2f} wall, {bc / lc:.2f} CPU (goal: >= 0.90, the check costs under 10%)")
print(f"trusted / baseline: {bw / tw:.2f} wall, {bc / tc:.2f} CPU")
print(f"delayed / local:    {lw / dw:.2f} wall (goal: >= 0.95, {delay} ms per archive request does not slow the copy)")
PY
echo "(work dir: $WORK)"
