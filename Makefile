# Prybar — one binary, one command each: `make run`, `make test`.
GO       ?= go
BIN      := bin/prybar
DB       ?= prybar.db
LISTEN   ?= 127.0.0.1:8080
PKGS     := ./...
NPM      ?= npm

.PHONY: all build frontend run test test-go fuzz-short bench-dhcp lint vet fmt-check generate check-generate bench bench-topology bench-fanout clean bench-web

all: build

# The SPA is built into frontend/dist and embedded by go:embed; without Node the placeholder page
# ships instead.
frontend:
	@if [ -f frontend/package.json ] && command -v $(NPM) >/dev/null; then \
		cd frontend && ( [ -d node_modules ] || $(NPM) ci --no-audit --no-fund ) && $(NPM) run build; \
	else echo "frontend: skipped (no frontend/package.json or npm)"; fi

build: frontend
	$(GO) build -o $(BIN) ./cmd/prybar

# Builds everything, starts the server on SQLite with the demo fixtures and prints the URL.
run: build
	./$(BIN) serve --db $(DB) --listen $(LISTEN) --fixtures demo

test: fmt-check vet lint test-go fuzz-short
	@if [ -f frontend/package.json ] && command -v $(NPM) >/dev/null; then cd frontend && $(NPM) test; fi

test-go:
	$(GO) test -count=1 -timeout 25m $(PKGS)

# Every fuzz target for a bounded few seconds on top of its committed seed corpus (testdata/fuzz;
# the corpora also run in test-go).
# provision/dhcp's target runs a count of executions instead of a time: its instrumented test
# binary (it links ent and SQLite) runs a few hundred executions a second with pauses of seconds,
# and a timed run that ends during a pause fails with "context deadline exceeded" (CI did, now and
# then) without any input having failed.
FUZZTIME ?= 5s
FUZZEXECS ?= 1000x
fuzz-short:
	$(GO) test -run '^$$' -fuzz '^FuzzParseRequest$$' -fuzztime $(FUZZTIME) ./provision/tftp/
	$(GO) test -run '^$$' -fuzz '^FuzzHandle$$' -fuzztime $(FUZZEXECS) ./provision/dhcp/

# DHCP benchmark (not a test): perfdhcp as a relay against Prybar, Kea and dnsmasq; needs root.
bench-dhcp:
	./provision/dhcp/bench/run.sh

vet:
	$(GO) vet $(PKGS)

lint:
	$(GO) tool staticcheck $(PKGS)

fmt-check:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

# Regenerates ent (ent/, graph/ent.graphqls) and gqlgen (graph/generated.go, graph/model).
generate:
	$(GO) run -mod=mod ./ent/entc.go
	$(GO) run ./internal/gqlgenerate
	@# The console's typed operations (frontend/src/gql) from graph/*.graphqls; offline once npm ci ran.
	@if [ -f frontend/package.json ] && command -v $(NPM) >/dev/null; then \
		cd frontend && ( [ -d node_modules ] || $(NPM) ci --no-audit --no-fund ) && $(NPM) run --silent codegen; \
	else echo "generate: console codegen skipped (no npm)"; fi

# CI: generated code must be exactly what `make generate` produces.
check-generate: generate
	@git diff --exit-code --stat -- ent graph gqlgen.yml frontend/src/gql || \
		(echo "generated code is stale: run 'make generate' and commit the result"; exit 1)
	@test -z "$$(git status --porcelain -- ent graph frontend/src/gql)" || \
		(git status --porcelain -- ent graph frontend/src/gql; echo "make generate created untracked files"; exit 1)

# Benchmarks print their numbers; docs/benchmarks.md records them. A benchmark that skipped (a
# peer or data missing outside CI) is listed in a SKIPPED summary at the end, loudly, so a number
# that was never measured is not mistaken for one that was; the summary is also in bench-skipped.txt.
BENCH_PKGS ?= ./graph/ ./scheduler/... ./provision/...
bench:
	@out=$$(mktemp); \
	( $(GO) test -run '^$$' -bench . -benchtime 1x -v -timeout 30m $(BENCH_PKGS) 2>&1; echo $$? >$$out.rc ) | tee $$out; \
	rc=$$(cat $$out.rc); \
	grep -B1 -E -- '--- SKIP' $$out | grep -v -E '^--$$' >bench-skipped.txt || true; \
	n=$$(grep -c -E -- '--- SKIP' bench-skipped.txt || true); \
	if [ "$$n" -gt 0 ]; then \
		echo; echo "################ SKIPPED: $$n benchmark(s) did not run ################"; \
		cat bench-skipped.txt; \
		echo "################ (their numbers above are missing, not zero) ################"; \
	else echo; echo "bench: nothing skipped"; rm -f bench-skipped.txt; fi; \
	rm -f $$out $$out.rc; exit $$rc

# The topology query over 10,000 machines next to the raw-SQLite JSON read of the same rows
# (metrics ms/query, raw-sqlite-json-ms and x-raw-sqlite).
bench-topology:
	$(GO) test -run '^$$' -bench 'Topology10k' -benchtime 3x -timeout 30m ./graph/

# Commit → delivery latency at 100 and 1,000 WebSocket subscribers (p50/p99/max).
bench-fanout:
	$(GO) test -run '^$$' -bench 'Fanout' -benchtime 1x -timeout 30m ./graph/

clean:
	rm -rf bin frontend/node_modules

# The web console: initial JS size, view timings with 10,000 machines, repaint under 100 events/s
# (headless chromium; see docs/benchmarks.md).
bench-web:
	cd frontend && ( [ -d node_modules ] || $(NPM) ci --no-audit --no-fund ) && node e2e/bench.mjs

# The discovery image (docs/discovery.md): Debian's cloud kernel (apt-get download) and a u-root
# initramfs with prybar-agent, into $(DISCOVERY_OUT)/discovery/{vmlinuz,initrd}; serve with
# --boot-assets $(DISCOVERY_OUT). Cached in $PRYBAR_CACHE; rebuilt only when its inputs change.
DISCOVERY_OUT ?= build/discovery-image
.PHONY: discovery-image
discovery-image:
	$(GO) run ./provision/agent/mkimage -out $(DISCOVERY_OUT)

# The reproducibility check: the image built once more outside the cache must be byte-identical
# (a second u-root build: about a minute with a warm Go build cache, ~7 min cold).
.PHONY: discovery-image-verify
discovery-image-verify:
	$(GO) run ./provision/agent/mkimage -out $(DISCOVERY_OUT) -verify

# Discovery: the real VM's time from start to its agent's registration (TCG, BIOS; the test logs
# it with its phases — firmware, DHCP, script, kernel and initrd transfers, kernel, init, modules,
# network, check-in — and writes them to $(DISCOVERY_BENCH_OUT)), and the registration benchmark
# (sql/op).
DISCOVERY_BENCH_OUT ?= $(CURDIR)/bench-discovery.txt
.PHONY: bench-discovery
bench-discovery:
	PRYBAR_BENCH_OUT=$(DISCOVERY_BENCH_OUT) $(GO) test -run 'TestDiscoveryVMUnknownMachine' -count=1 -v -timeout 30m ./cmd/prybar/
	$(GO) test -run '^$$' -bench 'Register' -benchtime 500x ./provision/agentapi/
	@cat $(DISCOVERY_BENCH_OUT)

# Discover → ready at fleet scale without VMs (docs/benchmarks.md, "Discover → ready"): a real
# prybar serve, FLEET_MACHINES simulated BMCs with simulated agents, the built-in chain bound and
# committed over GraphQL; prints wall time, node-roles/s and the server's peak RSS. `make bench`
# runs the same as BenchmarkDiscoverToReady (PRYBAR_FLEET_MACHINES, default 10000).
FLEET_MACHINES ?= 10000
.PHONY: bench-fleet
bench-fleet:
	$(GO) build -o $(BIN) ./cmd/prybar
	./$(BIN) sim bench --machines $(FLEET_MACHINES)
