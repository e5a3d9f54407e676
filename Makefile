# imsflow: make test (all tests, race detector on) and make build are the
# everyday targets; see README.md.
GO          ?= go
BIN         := bin
STATICCHECK := honnef.co/go/tools/cmd/staticcheck@v0.8.2
FUZZTIME    ?= 30s

.PHONY: all build test test-short lint bench fuzz run clean

all: lint test build

## build: compile the imsflow command into bin/
build:
	$(GO) build -o $(BIN)/imsflow ./cmd/imsflow

## test: every test, with the race detector
test:
	$(GO) test -race -count=1 ./...

## test-short: the quick tests only
test-short:
	$(GO) test -short -count=1 ./...

## lint: go vet, gofmt and staticcheck (fetched through the Go module proxy)
lint:
	$(GO) vet ./...
	@unformatted=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$unformatted" ]; then echo "gofmt: not formatted:"; echo "$$unformatted"; exit 1; fi
	$(GO) run $(STATICCHECK) ./...

## bench: the benchmarks, with allocations
bench:
	$(GO) test -run '^$$' -bench . -benchmem ./...

## fuzz: run each fuzz test for FUZZTIME
fuzz:
	$(GO) test -run '^$$' -fuzz '^FuzzSign$$' -fuzztime $(FUZZTIME) ./pkg/imsapi

## run: build and show what imsflow can do today
run: build
	./$(BIN)/imsflow help

clean:
	rm -rf $(BIN)
