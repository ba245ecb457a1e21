# Sluice: `make run` runs the demo gateway, `make test` runs every test.
GO      ?= go
SLUICE  := bin/sluice
# Every folder under plugins/ is a plugin named after its folder.
PLUGINS := $(patsubst plugins/%/,%,$(sort $(dir $(wildcard plugins/*/main.go))))
WASM    := $(foreach p,$(PLUGINS),plugins/$(p)/$(p).wasm)
DEMO_KEYS := var/keys/rsa-demo.pem var/keys/ed-demo.pem

.PHONY: all build plugins run test vet bench clean

all: build plugins

build:
	$(GO) build -o $(SLUICE) ./gateway/cmd/sluice

# The Go toolchain decides what is out of date, so plugins always "rebuild".
plugins:
	@for p in $(PLUGINS); do \
		echo "plugin $$p"; \
		GOOS=wasip1 GOARCH=wasm $(GO) build -buildmode=c-shared -o plugins/$$p/$$p.wasm ./plugins/$$p || exit 1; \
	done

var/keys/rsa-demo.pem: | build
	$(SLUICE) keygen -algorithm rsa -selector rsa-demo -domain your-domain.test -out $@

var/keys/ed-demo.pem: | build
	$(SLUICE) keygen -algorithm ed25519 -selector ed-demo -domain your-domain.test -out $@

run: build plugins $(DEMO_KEYS)
	$(SLUICE) serve -c gateway.toml

vet:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
		if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	GOOS=wasip1 GOARCH=wasm $(GO) vet ./sdk/... ./plugins/...

test: vet plugins
	$(GO) test ./...

bench:
	$(GO) test -run '^$$' -bench . -benchmem ./...

clean:
	rm -rf bin var $(WASM)
