# imsflow: make test (all tests, race detector on) and make build are the
# everyday targets; see README.md.
GO          ?= go
BIN         := bin
STATICCHECK := honnef.co/go/tools/cmd/staticcheck@v0.8.2
# MinIO, the S3-compatible server the tests run against, built from its Go
# module (Debian has no package of it); AGPL, used as a separate program.
MINIO       := github.com/minio/minio@v0.0.0-20260212201848-7aac2a2c5b7c
FUZZTIME    ?= 30s
# test-stress: the packages whose tests involve timing, scheduling or
# several processes, and how many times each test runs under load.
STRESS_PKGS  ?= ./internal/... ./functions/... ./pkg/imsapi/... ./cmd/imsflow/
STRESS_COUNT ?= 10
# The emulator driven by Huawei's official Go SDK: a module of its own, so
# that the SDK stays out of imsflow's dependencies.
CONFORMANCE  := pkg/imsapi/imsemu/conformance
# The Kubernetes manifests' offline checks: a module of its own, so that
# kustomize, the Kubernetes API types and the PromQL parser stay out of
# imsflow's dependencies.
MANIFESTS    := manifests
export IMSFLOW_MINIO := $(abspath $(BIN))/minio

.PHONY: all build image tools test test-manifests test-short test-stress check-cgo lint bench fuzz run demo clean

all: lint test build

## build: compile the imsflow command into bin/
build:
	$(GO) build -o $(BIN)/imsflow ./cmd/imsflow

## tools: what the tests run besides Go (bin/minio; the first build takes minutes)
tools: $(BIN)/minio

# Static and stripped, with the flags of the minio image (scripts/image), so
# that make image links MinIO from the build cache instead of compiling it.
$(BIN)/minio:
	GOBIN=$(abspath $(BIN)) CGO_ENABLED=0 GOFLAGS= $(GO) install -trimpath -buildvcs=false -ldflags='-s -w -buildid=' $(MINIO)

## test: every test, with the race detector
test: tools check-cgo
	$(GO) test -race -count=1 ./...
	cd $(CONFORMANCE) && $(GO) test -race -count=1 ./...
	$(MAKE) test-manifests

## test-manifests: build every overlay of manifests/ with kustomize and check it offline (docs/deploy.md)
# Without the race detector: the checks run no goroutines of their own, and
# the Kubernetes types take minutes to compile with it.
test-manifests:
	cd $(MANIFESTS) && $(GO) test -count=1 ./...

## test-stress: STRESS_PKGS' tests STRESS_COUNT times with the race detector
## while every CPU is kept busy; reports the failed runs, and must report 0
test-stress: tools check-cgo
	$(GO) run ./scripts/stress -count $(STRESS_COUNT) $(STRESS_PKGS)

# The race detector needs cgo and a C compiler.
check-cgo:
	@if [ "$$($(GO) env CGO_ENABLED)" != 1 ] || ! command -v "$$($(GO) env CC)" >/dev/null 2>&1; then \
		echo "make test: the race detector needs cgo and a C compiler: install gcc (Debian: apt-get install gcc) and set CGO_ENABLED=1" >&2; exit 1; fi

## test-short: the quick tests only
test-short:
	$(GO) test -short -count=1 ./...

## lint: go vet, gofmt and staticcheck (fetched through the Go module proxy)
lint:
	$(GO) vet ./...
	cd $(CONFORMANCE) && $(GO) vet ./...
	cd $(MANIFESTS) && $(GO) vet ./...
	@unformatted=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$unformatted" ]; then echo "gofmt: not formatted:"; echo "$$unformatted"; exit 1; fi
	$(GO) run $(STATICCHECK) ./...

## bench: the benchmarks, with allocations
bench: tools
	$(GO) test -run '^$$' -bench . -benchmem ./...

## fuzz: run each fuzz test for FUZZTIME
fuzz:
	$(GO) test -run '^$$' -fuzz '^FuzzSign$$' -fuzztime $(FUZZTIME) ./pkg/imsapi

## image: the container images FROM scratch (imsflow, nats-server, minio), built here and loaded
## into the local Docker Engine as imsflow/<name>:local; prints each one's ID and size (docs/deploy.md)
image:
	$(GO) run ./scripts/image -minio $(MINIO)

## run: the whole pipeline in one process on embedded defaults, until Ctrl-C
run: build
	./$(BIN)/imsflow dev

## demo: a realistic mixed batch and one image lifecycle through the local pipeline, a summary, exit 0 when all is as expected
demo: build
	./$(BIN)/imsflow demo

## chaos: imsflow as real processes (3 NATS nodes, 2 replicas of each function, a faulty IMS) under
## kill -9 of replicas and of the IMSFLOW_JOBS leader; one table, exit 0 when it converged (up to 10
## minutes; docs/chaos.md). CHAOS_FLAGS adds flags, e.g. CHAOS_FLAGS='-seed 7 -keep'.
CHAOS_FLAGS ?=
chaos:
	$(GO) run ./scripts/chaos $(CHAOS_FLAGS)

## chaos-short: the same with a few hundred inputs and one kill of each kind (2-3 minutes, for CI)
chaos-short:
	$(GO) run ./scripts/chaos -short $(CHAOS_FLAGS)

.PHONY: chaos chaos-short

## test-cluster: the compose deployment (deploy/compose) in containers under faults: docker kill of
## the IMSFLOW_JOBS leader, SIGKILL of function containers, a NATS node cut off the network, a
## restart of all six functions; counted as make chaos counts (about 4 minutes; docs/chaos.md).
## Without a usable Docker it says so and passes, unless CI=true and IMSFLOW_REQUIRE_DOCKER=1.
## CLUSTER_FLAGS adds flags, e.g. CLUSTER_FLAGS='-keep -seed 7'.
CLUSTER_FLAGS ?=
test-cluster:
	@t0=$$(date +%s); set -e; \
	$(GO) build -o $(BIN)/chaos ./scripts/chaos; \
	rc=0; ./$(BIN)/chaos -compose deploy/compose -preflight || rc=$$?; \
	if [ $$rc -eq 3 ]; then exit 0; elif [ $$rc -ne 0 ]; then exit $$rc; fi; \
	echo "$(GO) run ./scripts/image -only imsflow,nats-server -out $(BIN)/images-cluster.tar"; \
	$(GO) run ./scripts/image -only imsflow,nats-server -out $(BIN)/images-cluster.tar; \
	./$(BIN)/chaos -compose deploy/compose -started $$t0 $(CLUSTER_FLAGS)

.PHONY: test-cluster

clean:
	rm -rf $(BIN)
