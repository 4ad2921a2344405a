# syntax=docker/dockerfile:1
# One image, one binary: `bronze-operator`, and `bronze-copier` as a link to it (started under
# that name the binary is the copier, the same code as the standalone `bronze-copier`). The link
# is the ENTRYPOINT, so the operator's worker Jobs pass only `worker --range S-E` as args; the
# Helm chart's Deployment sets `command: [bronze-operator]`.
#
#   make image                                   # podman (or docker) build -t bronze:dev .
#   make image IMAGE=ghcr.io/you/bronze:0.1.0 GIT_SHA=$(git rev-parse HEAD)
#   docker build --build-arg GIT_SHA=$(git rev-parse HEAD) -t bronze:dev .   # the same, by hand
#
# Stages:
#   build          compiles the release binary, splits its debug info off and strips it
#   debug-symbols  only the split debug info (`--target debug-symbols --output DIR`): put
#                  `bronze-operator.debug` next to the binary (or under /usr/lib/debug/usr/local/bin)
#                  and backtraces get file and line again; `addr2line -e bronze-operator.debug`
#                  works offline on an address from a log
#   runtime-base   the runtime: base image, labels, user, entrypoint; no binary yet
#   prebuilt       runtime-base plus an already compiled binary from the build context
#                  (`--target prebuilt`, the context a directory holding a stripped
#                  `bronze-operator` and the `bronze-copier` link; `make image-prebuilt` prepares
#                  one from target/, so CI does not compile the workspace twice)
#   runtime        (the default, last) runtime-base plus the binary of the build stage
#
# Runtime: distroless `cc` (glibc, libgcc, CA certificates, no shell), user 65532 (nonroot).
# Nothing is written outside mounted volumes and $TMPDIR, so it runs with
# readOnlyRootFilesystem: true (mount an emptyDir at /tmp for `verify`, which spools Parquet
# files there). Base images are pinned by version; pin them by digest too when you publish
# (`--build-arg RUST_IMAGE=rust:1.95.0-slim-bookworm@sha256:...`).

ARG RUST_IMAGE=rust:1.95.0-slim-bookworm
ARG RUNTIME_IMAGE=gcr.io/distroless/cc-debian12:nonroot

FROM ${RUST_IMAGE} AS build
WORKDIR /src
COPY . .
ARG GIT_SHA=unknown
ENV BRONZE_GIT_SHA=${GIT_SHA}
# BuildKit caches the crates.io downloads and the target directory between builds.
# The `image` profile (Cargo.toml: release with fat LTO, one codegen unit) keeps line tables
# (symbolized backtraces); the image gets the binary stripped of them and of its symbol table
# (31.2 MB), with a debuglink
# to /debug/bronze-operator.debug (the debug-symbols target): with that file next to the binary
# a backtrace has function names, files and lines again.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target,sharing=locked \
    set -eu; \
    cargo build --profile image --locked -p bronze-operator --bin bronze-operator; \
    mkdir -p /out /debug; \
    objcopy --only-keep-debug --compress-debug-sections=zlib \
        target/image/bronze-operator /debug/bronze-operator.debug; \
    objcopy --strip-all --add-gnu-debuglink=/debug/bronze-operator.debug \
        target/image/bronze-operator /out/bronze-operator; \
    ln -s bronze-operator /out/bronze-copier

FROM scratch AS debug-symbols
COPY --from=build /debug/ /

FROM ${RUNTIME_IMAGE} AS runtime-base
ARG GIT_SHA=unknown
LABEL org.opencontainers.image.title="bronze" \
      org.opencontainers.image.description="bronze-copier and bronze-operator: Stellar ledgers from Galexie datastores into checksummed Parquet" \
      org.opencontainers.image.source="https://github.com/withObsrvr/bronze" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.revision="${GIT_SHA}"
# 65532 is distroless' `nonroot`; numeric so `runAsNonRoot: true` can check it.
USER 65532:65532
WORKDIR /tmp
ENTRYPOINT ["/usr/local/bin/bronze-copier"]

FROM runtime-base AS prebuilt
COPY . /usr/local/bin/

FROM runtime-base AS runtime
COPY --from=build /out/ /usr/local/bin/
