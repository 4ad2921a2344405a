#!/usr/bin/env bash
# Cloud-latency benchmark: the copier reads a one-ledger-per-object datastore over S3 from
# `bronze-s3dir` (testkit: a read-only S3 endpoint over a directory) with 50 ms added to every
# request, against the same store without the delay as the baseline, in the same run. Both shapes:
# pubnet-sized ledgers and small (early-history-sized) ones. Each run is one partition, the work
# of one operator Job, with the copier's default perf settings (no hand-tuning). Prints ledgers/s,
# the ratio to the baseline and peak RSS. A third run per shape goes through the same delay plus
# injected cloud faults (BENCH_FAULTS, bronze-s3dir's FAULTS: by default `cloud`, i.e. 5% of
# requests answered 503 SlowDown or 500, 1% of connections reset mid-body, one request in 2,000
# stalled for 10 s) and prints its time against the delayed fault-free run (goal: within 2x).
#
#   BENCH_CLOUD_PUBNET=3000 BENCH_CLOUD_SMALL=10000 BENCH_DELAY_MS=50 BENCH_ROUNDS=1 scripts/bench-cloud.sh
#
# BENCH_PROFILE=dev: unoptimised, figures meaningless, runs end to end quickly (`make bench-smoke`).
set -euo pipefail
cd "$(dirname "$0")/.."

PUBNET=${BENCH_CLOUD_PUBNET:-3000}
SMALL=${BENCH_CLOUD_SMALL:-10000}
DELAY=${BENCH_DELAY_MS:-50}
FAULTS=${BENCH_FAULTS:-cloud}
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
if [ "$PROFILE" = dev ]; then
    # The workspace's test build (as `make test` and the cluster tier build it): it holds the
    # copier and the example with the same feature set, so after `make test` nothing is compiled
    # again (`-p bronze` alone resolves other features and rebuilds most dependencies: 20+ min of
    # a CI run's bench-smoke).
    cargo test -q --workspace --no-run
else
    cargo build --profile "$PROFILE" -q -p bronze --bin bronze-copier --example bench_floor
fi
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
serve() { # dir delay_ms [faults] -> sets ENDPOINT and SERVER_LOG
    local log="$WORK/s3dir-$2-${3:-none}.log"
    SERVER_LOG=$log
    "$OUT/bronze-s3dir" "$1" "$2" "${3:-none}" >"$log" 2>&1 &
    SERVER_PIDS+=($!)
    ENDPOINT=
    for _ in $(seq 200); do
        # The log may not exist yet: the backgrounded server's redirection races this loop.
        ENDPOINT=$(sed -n 's/^endpoint //p' "$log" 2>/dev/null || true)
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
    AWS_ACCESS_KEY_ID=bench AWS_SECRET_ACCESS_KEY=bench AWS_EC2_METADATA_DISABLED=true \
        "$BIN" -config "$WORK/config.yaml" --no-progress >"$WORK/copier.log" 2>&1
    log=$(cat "$WORK/copier.log")
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
    serve "$dir" "$DELAY" "$FAULTS"
    faulty=$ENDPOINT
    faulty_log=$SERVER_LOG
    for round in $(seq 1 "$ROUNDS"); do
        for kind in baseline delayed faulty; do
            case $kind in
                baseline) endpoint=$direct ;;
                delayed) endpoint=$delayed ;;
                faulty) endpoint=$faulty ;;
            esac
            echo "== $shape round $round/$ROUNDS: $kind ($endpoint)"
            line=$(copy "$endpoint" "$ledgers")
            echo "$line" | sed 's/^.*INFO //'
            if [ "$kind" = faulty ]; then
                sleep 1.1 # the server prints its fault counts once a second
                echo "   server: $(grep '^faults' "$faulty_log" | tail -1) (cumulative over rounds)"
                causes=$(grep -o 'cause="\?[a-z_]*' "$WORK/copier.log" | sed 's/cause="\?//' | sort | uniq -c \
                    | awk '{printf "%s%s %s", (NR > 1 ? ", " : ""), $1, $2}')
                echo "   copier: $(grep -c 'datastore read failed' "$WORK/copier.log") retried requests" \
                    "(${causes:-none}), $(grep -c 'racing a second one' "$WORK/copier.log") hedged GETs"
            fi
            RESULTS+=("$shape $kind $ledgers $line")
        done
    done
    cleanup
    SERVER_PIDS=()
done

python3 - "$DELAY" "$FAULTS" "${RESULTS[@]}" <<'PY'
import re, sys
delay, faults, rows = sys.argv[1], sys.argv[2], sys.argv[3:]
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
print(f"== cloud faults: the same {delay} ms plus injected faults ({faults}), against the fault-free {delay} ms run")
for shape in ("pubnet", "small"):
    (dw, _, n), (fw, fr, _) = best[(shape, "delayed")], best[(shape, "faulty")]
    print(f"{shape}: fault-free {dw:.2f} s, faulty {fw:.2f} s ({n / fw:.1f} ledgers/s, peak RSS {fr:.1f} MiB), "
          f"time ratio faulty/fault-free {fw / dw:.2f} (goal: <= 2)")
PY
echo "(work dir: $WORK)"
