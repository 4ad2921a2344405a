#!/usr/bin/env bash
# Builds the container image from the Dockerfile as it is (`make image`, `make image-prebuilt`).
#
#   scripts/image.sh            the whole Dockerfile: compiles the release binary in the builder
#   scripts/image.sh prebuilt   the same runtime stage from a binary compiled already
#                               (BINARY=target/debug/bronze-operator by default: the one `make
#                               test` builds), stripped here: CI's way, no second compilation
#
# Env: IMAGE (default bronze:dev), GIT_SHA (default: git rev-parse HEAD),
#      DOCKER (default: podman when installed, else docker),
#      BINARY (prebuilt only), BASES (default ../shared/testinfra/containers/bases),
#      STAND_INS=always (use BASES' stand-ins without asking the registries first).
#
# Base images: when the registries of the two base images (docker.io for rust:…, gcr.io for
# distroless) answer, the CLI pulls them as usual. When they do not (machines without registry
# access), BASES builds local stand-ins under the upstream names (see its README) and the build
# runs with `--pull=never` and that directory's containers.conf; without BASES it stops and says
# what to provide. The Dockerfile keeps the upstream names either way.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
mode=${1:-full}
IMAGE=${IMAGE:-bronze:dev}
GIT_SHA=${GIT_SHA:-$(git rev-parse HEAD 2>/dev/null || echo unknown)}
BASES=${BASES:-$root/../shared/testinfra/containers/bases}
start=$SECONDS

say() { echo "image: $*" >&2; }
die() { say "error: $*"; exit 1; }

if [[ -z ${DOCKER:-} ]]; then
    if command -v podman >/dev/null; then DOCKER=podman
    elif command -v docker >/dev/null; then DOCKER=docker
    else die "neither podman nor docker is installed (apt-get install podman)"
    fi
fi

# A registry answers /v2/ (200, or 401 asking for a token) when it is reachable.
reachable() {
    local code
    code=$(curl -sS -m 10 -o /dev/null -w '%{http_code}' "https://$1/v2/" 2>/dev/null) || true
    [[ $code == 200 || $code == 401 ]]
}
pull=()
# STAND_INS=always: never ask a registry (the cluster tier: tests reach no outside service).
if [[ ${STAND_INS:-auto} != always ]] && reachable registry-1.docker.io && reachable gcr.io; then
    say "base images from their registries"
else
    [[ -x $BASES ]] || die "the registries (docker.io, gcr.io) are unreachable and $BASES is missing: \
load rust:1.95.0-slim-bookworm and gcr.io/distroless/cc-debian12:nonroot into the local image store \
(or set BASES to a script that builds stand-ins) and rerun"
    [[ $DOCKER == *podman* ]] || die "the registries are unreachable: the local stand-ins ($BASES) are podman images; run with DOCKER=podman"
    say "registries unreachable: local stand-ins for the base images ($BASES)"
    "$BASES" >/dev/null
    export CONTAINERS_CONF=${CONTAINERS_CONF:-$(cd "$(dirname "$BASES")" && pwd)/containers.conf}
    pull=(--pull=never)
fi

args=("${pull[@]}" --build-arg "GIT_SHA=$GIT_SHA" -t "$IMAGE" -f "$root/Dockerfile")
case $mode in
    full)
        say "$DOCKER build ${args[*]} . (compiles the release binary: many minutes)"
        "$DOCKER" build "${args[@]}" "$root"
        ;;
    prebuilt)
        BINARY=${BINARY:-$root/target/debug/bronze-operator}
        [[ -x $BINARY ]] || die "$BINARY missing: build it first (make test, or cargo build -p bronze-operator)"
        ctx=$(mktemp -d "${TMPDIR:-/tmp}/bronze-image.XXXXXX")
        trap 'rm -rf "$ctx"' EXIT
        objcopy --strip-all "$BINARY" "$ctx/bronze-operator"
        ln -s bronze-operator "$ctx/bronze-copier"
        say "$DOCKER build ${args[*]} --target prebuilt (binary: $BINARY)"
        "$DOCKER" build "${args[@]}" --target prebuilt "$ctx"
        ;;
    *) die "unknown mode $mode (full or prebuilt)" ;;
esac
size=$("$DOCKER" image inspect --format '{{.Size}}' "$IMAGE" 2>/dev/null || echo '?')
say "built $IMAGE in $((SECONDS - start)) s, $size bytes"
