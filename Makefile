# Bronze: developer and CI entry points. `make help` lists the targets.
#
# Adding a target: declare it in .PHONY and end its rule line with `## what it does` so that
# `make help` shows it. CI (.ci/run) runs `make test-deps`, `make lint`, `make test`, then
# `make test-cluster` and `make bench-smoke`.

SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help

CARGO ?= cargo
# How the suite runs (profile, runner): the one place to change it, e.g. to
# `cargo test --release` or `cargo nextest run`.
CARGO_TEST ?= $(CARGO) test
# What it runs: the whole workspace, or e.g. `make test TEST_SCOPE='-p bronze-testkit'`.
TEST_SCOPE ?= --workspace
# Extra arguments, e.g. `make test TEST_ARGS='-- sink'` (a test name filter).
TEST_ARGS ?=
# `make image`: the tag to build and the commit baked into `-version`; the container CLI is
# podman when installed, else docker (override with DOCKER=...). See scripts/image.sh.
IMAGE ?= bronze:dev
GIT_SHA ?= $(shell git rev-parse HEAD 2>/dev/null || echo unknown)
export IMAGE GIT_SHA

.PHONY: help test-deps test test-cluster demo bench bench-tip bench-cluster bench-operator bench-smoke lint build crds chart-crds chart-check image image-prebuilt

help: ## List the targets
	@grep -E '^[a-zA-Z0-9_.-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "} {printf "  %-12s %s\n", $$1, $$2}'

test-deps: ## Install test dependencies: nginx + postgresql + openssl + prometheus (apt, needs root) and the pinned venv .venv (idempotent)
	bash .ci/test-deps

test: ## Run the whole test suite against real loopback servers (run `make test-deps` first)
	$(CARGO_TEST) $(TEST_SCOPE) $(TEST_ARGS)

test-cluster: ## The operator against a real Kubernetes control plane (../shared/testinfra/k8s): starts it, runs operator/tests/cluster, stops it
	bash scripts/test-cluster.sh

build: ## Build the release binaries
	$(CARGO) build --release -p bronze -p bronze-operator

demo: ## Back-fill the bundled real testnet ledgers (local disk, no cloud) into ./demo-output, then verify
	rm -rf demo-output
	$(CARGO) run --release -q -p bronze --bin bronze-copier -- -config examples/demo-testnet.yaml --no-progress
	@echo; echo "== committed partitions"; find demo-output/bronze-data -type f | sort
	@echo; echo "== checkpoint"; cat demo-output/state/checkpoint_testnet_pre_p23_v1.json
	@echo; echo "== verify (manifests, checksums, rows, hash links, checkpoint)"
	$(CARGO) run --release -q -p bronze --bin bronze-copier -- -config examples/demo-testnet.yaml verify

bench: ## Throughput on one core vs the zstd+sha256+codec floor (10,000 pubnet-sized, 50,000 small ledgers), then through a 50 ms S3 latency vs without, then through 50 ms plus injected cloud faults vs without the faults, then with the history archive check (local, trusted ledger, 50 ms) vs without
	bash scripts/bench.sh
	BENCH_SHAPE=small BENCH_LEDGERS=$${BENCH_SMALL_LEDGERS:-50000} bash scripts/bench.sh
	bash scripts/bench-cloud.sh
	bash scripts/bench-archive.sh

bench-tip: ## Provisional tip (docs/tip.md): landing-to-readable latency p50/p95/max at Galexie pace (an object every 5-6 s) and catch-up pace (4/s) with the default 2 s poll, and the write cost (Delta versions, provisional files, checkpoints per hour) (BENCH_TIP_GALEXIE_OBJECTS, BENCH_TIP_CATCHUP_OBJECTS, BENCH_TIP_PARTITION)
	$(CARGO) test --workspace --test e2e -- --ignored --nocapture tip_bench

bench-cluster: ## A few hundred small partitions, one per Job, on the real control plane (../shared/testinfra/k8s): wall time, Jobs/min, status writes per partition (BRONZE_BENCH_PARTITIONS, BRONZE_BENCH_JOBS)
	CLUSTER_LIBTEST_ARGS="--ignored --nocapture scale::" bash scripts/test-cluster.sh

bench-operator: ## The operator's sequencing + planning at 6,000 committed partitions (local disk, PAS outbox, real PostgreSQL catalog): catch-up, restart, 200 steady reconciles (p50/p99, storage requests, catalog queries, status size, RSS) (BRONZE_BENCH_PARTITIONS, BRONZE_BENCH_RECONCILES, BRONZE_BENCH_CATALOG=0)
	$(CARGO) test -p bronze-operator --lib -- --ignored --nocapture scale::bench

bench-smoke: ## `make bench` end to end on a few hundred ledgers, one round, unoptimised (CI: the scripts must keep working)
	d=$$(mktemp -d /tmp/bronze-bench-smoke.XXXXXX); \
	BENCH_DIR=$$d BENCH_PROFILE=dev BENCH_LEDGERS=300 BENCH_PARTITION=100 BENCH_ROUNDS=1 bash scripts/bench.sh; \
	BENCH_DIR=$$d BENCH_PROFILE=dev BENCH_LEDGERS=300 BENCH_PARTITION=100 BENCH_ROUNDS=1 BENCH_SHAPE=small bash scripts/bench.sh; \
	BENCH_DIR=$$d BENCH_PROFILE=dev BENCH_CLOUD_PUBNET=100 BENCH_CLOUD_SMALL=300 BENCH_ROUNDS=1 bash scripts/bench-cloud.sh; \
	BENCH_DIR=$$d BENCH_PROFILE=dev BENCH_ARCHIVE_LEDGERS=318 BENCH_ROUNDS=1 bash scripts/bench-archive.sh; \
	rm -rf $$d
	BRONZE_BENCH_PARTITIONS=300 BRONZE_BENCH_RECONCILES=20 $(MAKE) bench-operator
	BENCH_TIP_GALEXIE_OBJECTS=3 BENCH_TIP_CATCHUP_OBJECTS=20 BENCH_TIP_PARTITION=10 $(MAKE) bench-tip

lint: ## rustfmt --check and clippy -D warnings over every target (CI runs it before the tests)
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

crds: ## Regenerate crds/bronzebackfills.yaml from the operator's Rust types
	$(CARGO) run -q -p bronze-operator --bin crdgen > crds/bronzebackfills.yaml
	cp crds/bronzebackfills.yaml charts/bronze-operator/crds/bronzebackfills.yaml

chart-crds: ## Copy crds/bronzebackfills.yaml into the Helm chart (Helm installs crds/ but never upgrades it)
	cp crds/bronzebackfills.yaml charts/bronze-operator/crds/bronzebackfills.yaml

chart-check: ## Lint, render and validate the Helm chart and the sample resources (part of `make test`)
	$(CARGO_TEST) -p bronze-ship

image: ## Build the container image from the whole Dockerfile (IMAGE=bronze:dev; podman, else docker; without registry access it first runs ../shared/testinfra/containers/bases)
	bash scripts/image.sh full

image-prebuilt: ## The same runtime stage from the binary `make test` built (BINARY=target/debug/bronze-operator), no second compilation (CI)
	bash scripts/image.sh prebuilt
