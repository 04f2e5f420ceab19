# durable-streams-server: the one entry point.
#
#   make build             bin/durable-streams-server
#   make dev               build, then run the in-memory dev server (DEV_ARGS=...)
#   make test              test-native, test-sim, test-go, test-conformance; summary at the end
#   make test-native       GoogleTest suites in tests/native (CMake + Ninja)
#   make test-sim          power-loss simulator, short run (fixed seeds, every fsync mode)
#   make sim-long          power-loss simulator, long run (>= 10,000 crash states; SIM_ARGS=...)
#   make test-go           gofmt check, go vet, go test (e2e tests use the built binary)
#   make test-conformance  protocol conformance suite, in memory and with data_dir
#   make test-browser      SSE reconnects: EventSource in headless Chromium, official client
#   make bench             benchmarks (tests/bench/run.sh, BENCH_ARGS=...)
#   make bench-quick       short benchmark run (about 3 minutes)
#   make test-bench-smoke  every benchmark scenario at tiny size (< 60 s)
#   make cluster           3 nodes (network namespaces) + router on this machine, until Ctrl-C
#   make test-cluster      cluster end to end: kill -9 a node, move a group, conformance via the router
#   make cluster-bench     cluster numbers: recovery of a node with 100,000 streams (STREAMS=...)
#   make ops-restart       restart/upgrade under load with 100,000 streams (STREAMS=...)
#   make dist              release archives for every platform + SHA256SUMS in dist/
#                          (RELEASE_TARGETS=linux_amd64 ... for a subset)
#   make test-release      test the archives in dist/ (chroot, qemu, wine; tests/release)
#   make test-xcaddy       xcaddy build --with this module (+ another plugin), then serve a stream
#   make test-kubernetes   packaging/kubernetes decoded strictly into the Kubernetes API types
#   make test-cache        read fan-out through Varnish (packaging/varnish; skipped without varnishd)
#   make cache-bench       long-poll fan-out through Varnish vs the origin (READERS=10000)
#   make test-container-conformance  conformance suite against the container image (buildah)
#   make fuzz              libFuzzer on the engine's request parsing (clang; FUZZ_SECONDS=60)
#   make clean

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := build

GO         ?= go
BIN        := bin/durable-streams-server
NATIVE_DIR := build/native
LOG_DIR    := build/test-logs
CONF_DIR   := tests/conformance
# npm ci runs again when the lock file or package.json is newer than this.
CONF_STAMP := $(CONF_DIR)/node_modules/.npm-ci-stamp
# The reserved subscription APIs (PROTOCOL.md §6-7): their six conformance
# tests run in both modes (0 skips them).
export DS_CONFORMANCE_SUBSCRIPTIONS ?= 1
VERSION    := $(shell sed -n 's/.*kVersion\[\] = "\(.*\)";/\1/p' native/version.h)
GOOS       := $(shell $(GO) env GOOS)
GOARCH     := $(shell $(GO) env GOARCH)

.PHONY: build dev test test-native sim-build test-sim sim-long test-go test-conformance test-browser test-bench-smoke bench bench-quick ops-restart dist test-release fuzz clean test-xcaddy test-kubernetes test-container-conformance test-cache cache-bench cluster test-cluster cluster-bench

build:
	$(GO) build -trimpath -o $(BIN) ./cmd/durable-streams-server

dev: build
	$(BIN) dev $(DEV_ARGS)

test-native:
	@if [ ! -f tests/native/CMakeLists.txt ]; then \
	  echo "test-native: tests/native/CMakeLists.txt does not exist yet; skipping native tests"; \
	  exit 0; \
	fi; \
	set -x; \
	cmake -S tests/native -B $(NATIVE_DIR) -G Ninja -DCMAKE_BUILD_TYPE=Debug; \
	cmake --build $(NATIVE_DIR); \
	ctest --test-dir $(NATIVE_DIR) --output-on-failure --no-tests=error

# The power-loss simulator (tests/sim, docs/powerloss-simulator.md), built over
# test-native's engine (ASan/UBSan). Violation kinds that today's code is known
# to produce under fsync interval/off (issue 19; native/STORAGE_FORMAT.md,
# "Fault model and simulation") are listed with their seeds but not counted as
# failures; fsync always and backups are never excused. Drop a kind from
# SIM_KNOWN once its fix lands. All are fixed: store-lost, json-torn,
# delete-/trim-not-atomic (durable unlinks), nul-bytes-served and
# acked-bytes-lost (synced checkpoints, STORAGE_FORMAT.md); none is excused.
SIM_BIN   := $(NATIVE_DIR)/sim/ds_powerloss_sim
SIM_KNOWN ?=
sim-build:
	cmake -S tests/native -B $(NATIVE_DIR) -G Ninja -DCMAKE_BUILD_TYPE=Debug >/dev/null
	cmake --build $(NATIVE_DIR) --target ds_powerloss_sim

test-sim: sim-build
	$(SIM_BIN) --self-test --seeds 4-6 --points 20 --variants 4 $(if $(SIM_KNOWN),--known $(SIM_KNOWN)) $(SIM_ARGS)

# The long run uses its own optimised build without sanitizers (build/sim):
# about 10x cheaper per crash state than the ASan build.
sim-long:
	cmake -S tests/sim -B build/sim -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
	cmake --build build/sim
	build/sim/ds_powerloss_sim --self-test --seeds 1-30 --points 30 --variants 4 $(if $(SIM_KNOWN),--known $(SIM_KNOWN)) $(SIM_ARGS)

test-go: build
	@echo "gofmt -l (excluding node_modules and build/)"; \
	unformatted=$$(find . -name '*.go' -not -path '*/node_modules/*' -not -path './build/*' -print0 | xargs -0 -r gofmt -l); \
	if [ -n "$$unformatted" ]; then echo "gofmt: these files need formatting:"; echo "$$unformatted"; exit 1; fi
	$(GO) vet ./...
	DS_BIN=$(CURDIR)/$(BIN) $(GO) test ./...

$(CONF_STAMP): $(CONF_DIR)/package.json $(CONF_DIR)/package-lock.json
	cd $(CONF_DIR) && npm ci --no-audit --no-fund
	touch $@

# Both modes run even if the first fails; each prints "N passed, N failed[, N skipped]".
test-conformance: build $(CONF_STAMP)
	@rc=0; \
	$(CONF_DIR)/run.sh $(BIN) memory || rc=1; \
	$(CONF_DIR)/run.sh $(BIN) data_dir || rc=1; \
	exit $$rc

BROWSER_DIR   := tests/browser
BROWSER_STAMP := $(BROWSER_DIR)/node_modules/.npm-ci-stamp

$(BROWSER_STAMP): $(BROWSER_DIR)/package.json $(BROWSER_DIR)/package-lock.json
	cd $(BROWSER_DIR) && npm ci --no-audit --no-fund
	touch $@

# SSE across reconnects (~20 s): a plain EventSource in Debian's chromium
# driven by puppeteer-core (prints SKIP and passes only if chromium cannot
# start; CHROMIUM=path picks another binary), then the official client;
# then the official client's appends under a tight rate limit (~10 s, 429).
test-browser: build $(BROWSER_STAMP)
	@rc=0; \
	node $(BROWSER_DIR)/eventsource.test.mjs $(BIN) || rc=1; \
	node $(BROWSER_DIR)/client.test.mjs $(BIN) || rc=1; \
	node $(BROWSER_DIR)/ratelimit.test.mjs $(BIN) || rc=1; \
	exit $$rc

# Builds once, runs every suite even when one fails, prints a summary, and
# fails if anything failed. Each suite's output is also kept in build/test-logs/.
test:
	@mkdir -p $(LOG_DIR); rm -f $(LOG_DIR)/*.log; \
	failed=0; summary=(); \
	step() { \
	  local name=$$1 start=$$SECONDS rc=0; \
	  echo; echo "==== make $$name ===="; \
	  $(MAKE) --no-print-directory $$name 2>&1 | tee $(LOG_DIR)/$$name.log || rc=$$?; \
	  local took=$$((SECONDS - start)) status=ok; \
	  if [ $$rc -ne 0 ]; then status=FAILED; failed=1; fi; \
	  summary+=("$$(printf '  %-17s %-6s %4ds' "$$name" "$$status" "$$took")"); \
	  return $$rc; \
	}; \
	if step build; then \
	  step test-native || true; \
	  step test-sim || true; \
	  step test-go || true; \
	  step test-conformance || true; \
	  step test-browser || true; \
	  step test-bench-smoke || true; \
	  step test-xcaddy || true; \
	  step test-kubernetes || true; \
	  step test-cache || true; \
	  step test-cluster || true; \
	fi; \
	echo; echo "==== make test summary ===="; \
	printf '%s\n' "$${summary[@]}"; \
	if [ -f $(LOG_DIR)/test-conformance.log ]; then \
	  awk '/^conformance \(/ { h = $$0; sub(/:.*/, "", h) } \
	       /^[0-9]+ passed, [0-9]+ failed/ { print "  " h ": " $$0 }' $(LOG_DIR)/test-conformance.log; \
	fi; \
	if [ -f $(LOG_DIR)/test-sim.log ]; then \
	  awk '/^[0-9]+ passed, [0-9]+ failed/ { print "  power-loss simulator (crash states): " $$0 }' $(LOG_DIR)/test-sim.log; \
	fi; \
	if [ $$failed -ne 0 ]; then echo "make test: FAILED"; exit 1; fi; \
	echo "make test: all passed"

# xcaddy from PATH, $GOPATH/bin or the Go module proxy (skipped, saying so, if
# none). -trimpath alone (xcaddy's default adds -tags and -ldflags) shares the
# Go build cache with `make build`, so only our package and the link are new.
test-xcaddy: build
	DS_XCADDY=1 XCADDY_GO_BUILD_FLAGS=-trimpath $(GO) test -count=1 -timeout 30m -v -run TestXcaddyBuild ./tests/xcaddy

# The conformance suite against the container image (buildah; minutes).
test-container-conformance: build $(CONF_STAMP)
	DS_CONTAINER_CONFORMANCE=1 DS_BIN=$(CURDIR)/$(BIN) $(GO) test -count=1 -timeout 60m -v -run TestContainerConformance ./tests/container

# Its own Go module (k8s.io/api stays out of the server's go.mod).
test-kubernetes:
	cd tests/kubernetes && $(GO) vet ./... && $(GO) test -count=1 ./...

# Varnish with packaging/varnish/durable-streams.vcl in front of the server
# (tests/cache, ~10 s): catch-up reads cached, long-polls collapsed onto one
# origin request per round, SSE streamed, HEAD and writes passed. Skipped,
# saying so, if varnishd is not installed.
test-cache: build
	DS_CACHE_TEST=1 DS_BIN=$(CURDIR)/$(BIN) $(GO) test -count=1 -timeout 120s -v ./tests/cache

# READERS long-poll readers of one stream through Varnish, then the same
# readers on the origin: origin requests per append, delivery p50/p99, origin
# CPU (tests/cache/bench.sh; minutes).
cache-bench: build
	tests/cache/bench.sh $(CACHE_BENCH_ARGS)

# The scenario table, then append→webhook-received latency with 1,000
# subscriptions (issue 16's benchmark; its own program: it needs a receiver).
bench:
	tests/bench/run.sh $(BENCH_ARGS)
	$(MAKE) --no-print-directory bench-webhook

bench-quick:
	tests/bench/run.sh --quick $(BENCH_ARGS)

# Append→webhook-received latency with 1,000 webhook subscriptions, memory and
# data_dir (tests/bench/webhooklat); not part of make test.
bench-webhook: build
	$(GO) run ./tests/bench/webhooklat -bin $(BIN) -storage mem
	$(GO) run ./tests/bench/webhooklat -bin $(BIN) -storage disk

test-bench-smoke: build
	tests/bench/run.sh --smoke --no-build

# The scale-out topology (README, Scaling; tests/cluster/topology.sh): nodes
# in network namespaces (root; else loopback addresses) behind a router.
CLUSTER_NODES ?= 3
cluster: build
	tests/cluster/topology.sh run $(CLUSTER_NODES)

test-cluster: build $(CONF_STAMP)
	DS_CLUSTER=1 DS_BIN=$(CURDIR)/$(BIN) $(GO) test -count=1 -timeout 10m -v -run 'TestCluster$$' ./tests/cluster

cluster-bench: build
	DS_CLUSTER=1 DS_CLUSTER_STREAMS=$(or $(STREAMS),100000) DS_BIN=$(CURDIR)/$(BIN) $(GO) test -count=1 -timeout 60m -v -run 'TestClusterBench$$' ./tests/cluster

# Restart and binary upgrade under load, socket handed over as systemd does
# (tests/ops/restart.sh); make test runs the same test with 1,000 streams.
ops-restart: build
	tests/ops/restart.sh --no-build

# durable-streams-server_<VERSION>_<os>_<arch>.tar.gz (.zip for windows) and
# dist/SHA256SUMS, named as the deployment guide says; self-contained binaries
# cross-compiled by tools/release/build.sh (gcc, aarch64-linux-gnu-gcc, zig).
RELEASE_TARGETS ?= linux_amd64 linux_arm64 darwin_amd64 darwin_arm64 windows_amd64
dist:
	tools/release/dist.sh $(VERSION) $(RELEASE_TARGETS)

test-release: $(CONF_STAMP)
	tests/release/run.sh dist

FUZZ_CXX     ?= clang++-14
FUZZ_SECONDS ?= 60
fuzz:
	cmake -S tests/fuzz -B build/fuzz -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_CXX_COMPILER=$(FUZZ_CXX)
	cmake --build build/fuzz
	mkdir -p build/fuzz/corpus
	build/fuzz/engine_request_fuzzer -max_total_time=$(FUZZ_SECONDS) -timeout=10 build/fuzz/corpus tests/fuzz/seeds

clean:
	rm -rf bin build dist
