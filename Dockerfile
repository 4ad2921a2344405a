# syntax=docker/dockerfile:1
# One image for both binaries: `bronze-copier` (the entrypoint, so the operator's worker Jobs can
# pass only `worker --range S-E` as args) and `bronze-operator` (the Helm chart's Deployment sets
# `command: [bronze-operator]`).
#
#   make image                                   # docker build -t bronze:dev .
#   make image IMAGE=ghcr.io/you/bronze:0.1.0 GIT_SHA=$(git rev-parse HEAD)
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
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target,sharing=locked \
    set -eu; \
    cargo build --release --locked -p bronze --bin bronze-copier -p bronze-operator --bin bronze-operator; \
    mkdir -p /out; \
    cp target/release/bronze-copier target/release/bronze-operator /out/

FROM ${RUNTIME_IMAGE}
ARG GIT_SHA=unknown
LABEL org.opencontainers.image.title="bronze" \
      org.opencontainers.image.description="bronze-copier and bronze-operator: Stellar ledgers from Galexie datastores into checksummed Parquet" \
      org.opencontainers.image.source="https://github.com/withObsrvr/bronze" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.revision="${GIT_SHA}"
COPY --from=build /out/bronze-copier /usr/local/bin/bronze-copier
COPY --from=build /out/bronze-operator /usr/local/bin/bronze-operator
# 65532 is distroless' `nonroot`; numeric so `runAsNonRoot: true` can check it.
USER 65532:65532
WORKDIR /tmp
ENTRYPOINT ["/usr/local/bin/bronze-copier"]
