#!/usr/bin/env bash
# Cloud-latency benchmark: the copier reads a one-ledger-per-object datastore over S3 from
# `bronze-s3dir` (testkit: a read-only S3 endpoint over a directory) with 50 ms added to every
# request, against the same store without the delay as the baseline, in the same run. Both shapes:
# pubnet-sized ledgers and small (early-history-sized) ones. Each run is one partition, the work
# of one operator Job, with the copier's default perf settings (no hand-tuning). Prints ledgers/s,
# the ratio to the baseline and peak RSS.
#
#   BENCH_CLOUD_PUBNET=3000 BENCH_CLOUD_SMALL=10000 BENCH_DELAY_MS=50 BENCH_ROUNDS=1 scripts/bench-cloud.sh
#
# BENCH_PROFILE=dev: unoptimised, figures meaningless, runs end to end quickly (`make bench-smoke`).
set -euo pipefail
cd "$(dirname "$0")/.."

PUBNET=${BENCH_CLOUD_PUBNET:-3000}
SMALL=${BENCH_CLOUD_SMALL:-10000}
DELAY=${BENCH_DELAY_MS:-50}
ROUNDS=${BENCH_ROUNDS:-1}
WORK=${BENCH_DIR:-$(mktemp -d /tmp/bronze-bench-cloud.XXXXXX)}
PROFILE=${BENCH_PROFILE:-release}
case $PROFILE in
    release) OUT=target/release ;;
    dev) OUT=target/debug ;;
    *) echo "BENCH_PROFILE must be release or dev, not '$PROFILE'" >&2; exit 2 ;;
esac
BIN=$OUT/bronze-copier
# Two builds: the copier with exactly bench.sh's selection, so features unify the same way and
# the (LTO) binary is not rebuilt between the two scripts.
cargo build --profile "$PROFILE" -q -p bronze --bin bronze-copier --example bench_floor
cargo build --profile "$PROFILE" -q -p bronze-testkit --bin bronze-s3dir

P=ledger/tests/data/stellar-core-protocols/ledger-close-meta-v0-protocol
generate() { # shape ledgers
    local dir="$WORK/datastore-$1-$2"
    if [ ! -f "$dir/.config.json" ]; then
        local templates=(--template tests/fixtures/pubnet-variants)
        [ "$1" = small ] && templates=(--template "$P-0.xdr" --template "$P-12.xdr" --template "$P-19.xdr"
            --template tests/fixtures/testnet-datastore/FFFFFFFF--0-63999)
        "$BIN" generate-datastore --out "$dir" "${templates[@]}" --ledgers "$2" --first-ledger 2 \
            --network pubnet >/dev/null
    fi
    echo "$dir"
}

SERVER_PIDS=()
cleanup() { for pid in "${SERVER_PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done; }
trap cleanup EXIT
# Not called in $(...): the server's pid must reach SERVER_PIDS in this shell, for the trap.
serve() { # dir delay_ms -> sets ENDPOINT
    local log="$WORK/s3dir-$2.log"
    "$OUT/bronze-s3dir" "$1" "$2" >"$log" 2>&1 &
    SERVER_PIDS+=($!)
    ENDPOINT=
    for _ in $(seq 200); do
        ENDPOINT=$(sed -n 's/^endpoint //p' "$log")
        [ -n "$ENDPOINT" ] && return
        sleep 0.05
    done
    echo "bronze-s3dir did not start: $(cat "$log")" >&2
    exit 1
}

copy() { # endpoint ledgers -> the "backfill complete" line plus wall_s
    cat >"$WORK/config.yaml" <<YAML
copier_id: bench-cloud
era:
  network: pubnet
  ledger_start: 2
  ledger_end: $(($2 + 1))
  partition_size: $2
  ingested_at: "2025-01-15T10:00:00Z"
source:
  mode: s3
  s3_bucket: datastore
  s3_endpoint: $1
  s3_region: us-east-1
storage:
  backend: local
  local_dir: $WORK/out
checkpoint:
  dir: $WORK/state
YAML
    rm -rf "$WORK/out" "$WORK/state"
    local start end log
    start=$(date +%s.%N)
    log=$(AWS_ACCESS_KEY_ID=bench AWS_SECRET_ACCESS_KEY=bench AWS_EC2_METADATA_DISABLED=true \
        "$BIN" -config "$WORK/config.yaml" --no-progress)
    end=$(date +%s.%N)
    echo "$(echo "$log" | grep -E "backfill complete") wall_s=$(python3 -c "print($end - $start)")"
}

RESULTS=()
for shape in pubnet small; do
    ledgers=$PUBNET
    [ "$shape" = small ] && ledgers=$SMALL
    dir=$(generate "$shape" "$ledgers")
    serve "$dir" 0
    direct=$ENDPOINT
    serve "$dir" "$DELAY"
    delayed=$ENDPOINT
    for round in $(seq 1 "$ROUNDS"); do
        for kind in baseline delayed; do
            endpoint=$direct
            [ "$kind" = delayed ] && endpoint=$delayed
            echo "== $shape round $round/$ROUNDS: $kind ($endpoint)"
            line=$(copy "$endpoint" "$ledgers")
            echo "$line" | sed 's/^.*INFO //'
            RESULTS+=("$shape $kind $ledgers $line")
        done
    done
    cleanup
    SERVER_PIDS=()
done

python3 - "$DELAY" "${RESULTS[@]}" <<'PY'
import re, sys
delay, rows = sys.argv[1], sys.argv[2:]
num = lambda pattern, text: float(re.search(pattern, text).group(1))
best = {}
for row in rows:
    shape, kind, ledgers, line = row.split(" ", 3)
    wall, rss = num(r"wall_s=([\d.]+)", line), num(r'peak_rss_mb="?([\d.]+)', line)
    w, r, _ = best.get((shape, kind), (float("inf"), 0.0, 0))
    best[(shape, kind)] = (min(w, wall), max(r, rss), int(ledgers))
print(f"== cloud latency: {delay} ms added to every request, one ledger per object, default perf settings")
for shape, goal in (("pubnet", "delayed >= 0.90 of baseline"), ("small", "delayed >= 3000 ledgers/s")):
    (bw, br, n), (dw, dr, _) = best[(shape, "baseline")], best[(shape, "delayed")]
    print(f"{shape}: baseline {n / bw:.1f} ledgers/s (peak RSS {br:.1f} MiB), "
          f"+{delay} ms {n / dw:.1f} ledgers/s (peak RSS {dr:.1f} MiB), ratio {bw / dw:.2f} (goal: {goal}, RSS < 512 MiB)")
PY
echo "(work dir: $WORK)"
