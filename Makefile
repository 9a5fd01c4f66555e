# Herald. `make run` starts a server on the defaults; `make test` runs every
# check CI runs. Nothing here needs more than Go; Node's `ws` package (for the
# interop test) is installed from the npm registry when node is present.

GO          ?= go
STATICCHECK ?= honnef.co/go/tools/cmd/staticcheck@v0.8.2
FUZZTIME    ?= 30s
BENCHTIME   ?= 1s
REPEATS     ?= 3
SCALE       ?= 1000000
BIN         := bin/herald
PKGS        := ./...

.PHONY: all build run test lint fmt vet staticcheck unit soak allocs node-deps browser-deps promtool-deps test-deps proxy-deps fuzz bench bench-peers bench-scale autobahn clean

all: build

build:
	$(GO) build -o $(BIN) ./cmd/herald

## run: a working server on the defaults (in-memory broker, /echo on, no auth, 127.0.0.1:8080)
run: build
	./$(BIN) serve -echo

## test: formatting, vet, staticcheck, unit/integration tests under -race, then the soak and allocation passes
test: lint node-deps browser-deps promtool-deps test-deps proxy-deps unit soak allocs

lint: fmt vet staticcheck

fmt:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go' -not -path './node_modules/*')); \
	if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

vet:
	$(GO) vet $(PKGS)

staticcheck:
	$(GO) run $(STATICCHECK) $(PKGS)

unit:
	$(GO) test -race -count=1 -timeout 15m $(PKGS)

# Soak tests hold thousands of connections; they run without -race (whose
# goroutine limit and overhead they would exceed) in a pass of their own.
soak:
	$(GO) test -count=1 -tags soak -timeout 15m -run 'Soak' ./soak/

node-deps:
	@if command -v npm >/dev/null 2>&1; then \
		[ -d interop/node/node_modules/eventsource ] || npm ci --prefix interop/node --no-audit --no-fund --loglevel=error; \
	else echo "npm not found: the Node interop test will skip (CI requires it)"; fi

# Allocation tests (testing.AllocsPerRun) skip under -race, whose
# instrumentation and sync.Pool behaviour change the counts; they run here,
# without it.
allocs:
	$(GO) test -count=1 -run 'Alloc' ./codec/ ./hub/ ./session/ ./push/ ./engine/

# Debian's Chromium for the browser test; the script is a no-op when it is
# already installed and says so (without failing) when it cannot install.
browser-deps:
	@sh scripts/install-chromium.sh || echo "Chromium not installed: the browser tests will skip (CI requires them)"

# Debian's prometheus package for promtool (alert-rule checks and unit
# tests in server/deploy_test.go); the script starts no service.
promtool-deps:
	@sh scripts/install-promtool.sh || echo "promtool not installed: the alert-rule tests will skip (CI requires them)"

# Debian's nginx and HAProxy for the wss:// tests through a TLS proxy
# (tlsproxy/); the script refuses to upgrade anything already installed.
proxy-deps:
	@sh scripts/install-nginx.sh haproxy || echo "nginx/haproxy not installed: the TLS proxy tests will skip (CI requires them)"

# Debian packages for the packaging tests (systemd-analyze, podman); like
# browser-deps, it says so without failing when it cannot install.
test-deps:
	@sh scripts/install-test-deps.sh || echo "packaging tools not installed: the packaging tests will skip (CI requires them)"

## fuzz: every fuzz target of every package for FUZZTIME each (FUZZPAR workers)
FUZZPKGS ?= $(sort $(dir $(shell grep -rl --include='*_test.go' '^func Fuzz' . | grep -v '^./benchmarks/')))
FUZZPAR  ?= 2
fuzz:
	@for p in $(FUZZPKGS); do for t in $$($(GO) test -list '^Fuzz' ./$$p | grep '^Fuzz'); do \
		echo "== $$p $$t"; $(GO) test ./$$p -run '^$$' -fuzz "^$$t$$" -fuzztime $(FUZZTIME) -fuzzminimizetime 5s -parallel $(FUZZPAR) || exit 1; \
	done; done

## bench: codec and fan-out micro-benchmarks
bench:
	$(GO) test -run '^$$' -bench . -benchmem -benchtime $(BENCHTIME) ./codec/ ./session/ ./engine/

clean:
	rm -rf bin benchmarks/out

## autobahn: the Autobahn TestSuite's fuzzingclient against /echo, without and with -compression (needs WSTEST; not part of test)
autobahn:
	bash conformance/autobahn/run.sh

## bench-peers: Herald against nbio, gorilla, coder, gobwas and the write(2)-per-socket floor through the same loadtest scenarios (broadcasts and sustained fan-out); rewrites benchmarks/RESULTS.md
bench-peers:
	$(GO) run ./benchmarks/peerbench -repeats $(REPEATS)

## bench-scale: SCALE connections (default a million) over herald processes sharing one SO_REUSEPORT port and NATS; raises sysctls for the run (root), bounded by TIMEOUT, kills every process it started. Small check: make bench-scale SCALE=20000 NODES=2 DURATION=8s
bench-scale:
	SCALE=$(SCALE) $(if $(NODES),NODES=$(NODES)) $(if $(PROCS),PROCS=$(PROCS)) $(if $(DURATION),DURATION=$(DURATION)) $(if $(TIMEOUT),TIMEOUT=$(TIMEOUT)) $(if $(PHASES),PHASES="$(PHASES)") $(if $(PERSONAL_RATE),PERSONAL_RATE=$(PERSONAL_RATE)) $(if $(BROADCAST_RATE),BROADCAST_RATE=$(BROADCAST_RATE)) $(if $(DRAIN),DRAIN=$(DRAIN)) $(if $(PUB_CONCURRENCY),PUB_CONCURRENCY=$(PUB_CONCURRENCY)) $(if $(PUB_BATCH),PUB_BATCH=$(PUB_BATCH)) $(if $(RATE),RATE=$(RATE)) ./scripts/bench-scale.sh
