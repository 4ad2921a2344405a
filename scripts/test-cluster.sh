#!/usr/bin/env bash
# The cluster tier (`make test-cluster`): starts a real, node-less Kubernetes control plane
# (etcd + kube-apiserver + kube-controller-manager from ../shared/testinfra/k8s), builds the
# binaries the tier runs (bronze-copier as the worker Pods' command, bronze-operator as the
# operator process), builds the image from that bronze-operator (`scripts/image.sh prebuilt`: the
# Dockerfile's runtime stage, no second compilation) for the container-mode tests, runs
# operator/tests/cluster with KUBECONFIG, BRONZE_CLUSTER_IMAGE and BRONZE_CLUSTER_REQUIRED=1 (a
# skip is a failure), and always stops the control plane and removes the image and any container
# left behind.
#
# Env: K8S_CLUSTER (default ../shared/testinfra/k8s/cluster, relative to the repository root),
#      CLUSTER_TEST_ARGS (extra `cargo test` arguments, e.g. a test name filter after `--`),
#      CLUSTER_TEST_THREADS (tests at once; default 4: they mostly wait on the API server),
#      CLUSTER_LIBTEST_ARGS (extra test-harness arguments, e.g. `--ignored --nocapture scale::`:
#      how `make bench-cluster` runs the ignored benchmark).
# With CI=true a control plane that does not start fails the run (it always does here: the
# tier never skips under this script).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
CARGO=${CARGO:-cargo}
cluster=${K8S_CLUSTER:-$root/../shared/testinfra/k8s/cluster}
threads=${CLUSTER_TEST_THREADS:-4}
start=$SECONDS

if [[ ! -x $cluster ]]; then
    echo "test-cluster: $cluster not found (set K8S_CLUSTER to the testinfra/k8s/cluster script)" >&2
    exit 1
fi

echo "== building bronze-copier and bronze-operator"
# The workspace's test build (as `make test` does it): it holds both binaries, and the same feature
# set, so after `make test` nothing is compiled again (`-p bronze-operator` alone, or `cargo build`,
# resolves other features and rebuilds kube, reqwest and aws-lc from scratch: minutes in CI).
$CARGO test -q --workspace --no-run

dir=$(mktemp -d "${TMPDIR:-/tmp}/bronze-k8s.XXXXXX")
# One image per run (parallel runs on one machine must not replace each other's).
image=localhost/bronze:cluster-$(basename "$dir" | tr -cd 'a-zA-Z0-9' | tr 'A-Z' 'a-z')
stop() {
    if command -v podman >/dev/null; then
        # Containers a failed test left running (the kubelet stand-in labels them by namespace).
        podman ps -aq --filter "label=io.bronze.cluster-tier" --filter "label=io.bronze.cluster-run=$image" \
            | xargs -r podman rm -f >/dev/null 2>&1 || true
        # By ID: every tag the tests gave it goes too (containers.rs tags it `$image-next`).
        if [[ -n ${image_id:-} ]]; then podman rmi -f "$image_id" >/dev/null 2>&1 || true; fi
    fi
    "$cluster" stop "$dir" || true
    if [[ ${KEEP_CLUSTER_DIR:-} != 1 ]]; then rm -rf "$dir"; fi
}
trap stop EXIT

echo "== building the image $image from target/debug/bronze-operator (t+$((SECONDS - start))s)"
IMAGE=$image BINARY="$root/target/debug/bronze-operator" STAND_INS=always bash scripts/image.sh prebuilt >"$dir/image.log" 2>&1 \
    || { tail -n 30 "$dir/image.log" >&2; echo "test-cluster: the image did not build" >&2; exit 1; }
tail -n 1 "$dir/image.log"
image_id=$(podman image inspect --format '{{.Id}}' "$image")
# What the image build used: podman's settings for these machines (scripts/image.sh).
conf=$(cd "$root/../shared/testinfra/containers" 2>/dev/null && pwd)/containers.conf
[[ -z ${CONTAINERS_CONF:-} && -f $conf ]] && export CONTAINERS_CONF=$conf

# The control plane picks free loopback ports and then binds them; another process on the
# machine (a second cluster tier, a test server) can take one in between ("bind: address
# already in use"). That is the only start failure retried: anything else fails at once.
attempt=1
while :; do
    echo "== starting the control plane in $dir (t+$((SECONDS - start))s, attempt $attempt)"
    if kubeconfig=$("$cluster" start "$dir"); then
        break
    fi
    if ((attempt < 3)) && grep -qs 'address already in use' "$dir"/*.log; then
        echo "test-cluster: a port was taken while the control plane started; starting again" >&2
        "$cluster" stop "$dir" || true
        rm -rf "$dir" && mkdir -p "$dir"
        attempt=$((attempt + 1))
        continue
    fi
    echo "test-cluster: the control plane did not start; logs:" >&2
    tail -n 30 "$dir"/*.log >&2 || true
    exit 1  # in CI and locally alike: this script never skips the tier
done

echo "== cluster tier (t+$((SECONDS - start))s)"
KUBECONFIG=$kubeconfig BRONZE_CLUSTER_REQUIRED=1 BRONZE_CLUSTER_IMAGE=$image \
    BRONZE_COPIER_BIN="$root/target/debug/bronze-copier" \
    $CARGO test --workspace --test cluster ${CLUSTER_TEST_ARGS:-} -- --test-threads="$threads" ${CLUSTER_LIBTEST_ARGS:-}
echo "== cluster tier passed in $((SECONDS - start))s"
