# Sluice: `make run` runs the demo gateway, `make test` runs every test.
GO      ?= go
SLUICE  := bin/sluice
# Every folder under plugins/ and examples/ is a plugin named after its
# folder: in Go (main.go), or in WebAssembly text (NAME.wat, built with
# wabt's wat2wasm).
GO_PLUGINS  := $(patsubst %/,%,$(sort $(dir $(wildcard plugins/*/main.go examples/*/main.go))))
WAT_PLUGINS := $(patsubst %/,%,$(sort $(dir $(wildcard examples/*/*.wat))))
WASM        := $(foreach d,$(GO_PLUGINS) $(WAT_PLUGINS),$(d)/$(notdir $(d)).wasm)
# The first-party plugins, those under plugins/: the demo and make install
# use only these, which need only Go.
FIRST_PARTY := $(filter plugins/%,$(GO_PLUGINS))
DEMO_KEYS := var/keys/rsa-demo.pem var/keys/ed-demo.pem

# What `sluice version` and the sluice_build_info metric say. Outside a git
# checkout both are empty, and the binary says what Go recorded instead.
VERSION   ?= $(shell git describe --always --dirty 2>/dev/null)
REVISION  ?= $(shell git rev-parse HEAD 2>/dev/null)
BUILDINFO := github.com/sluice-mail/sluice/gateway/internal/buildinfo
LDFLAGS   := -X $(BUILDINFO).version=$(VERSION) -X $(BUILDINFO).revision=$(REVISION)

# Where make install puts things (docs/deploy.md); DESTDIR is prepended to
# each, for packaging and tests.
PREFIX     ?= /usr/local
BINDIR     ?= $(PREFIX)/bin
LIBDIR     ?= $(PREFIX)/lib/sluice
SYSCONFDIR ?= /etc
UNITDIR    ?= $(PREFIX)/lib/systemd/system
SUBST      := sed -e 's|@BINDIR@|$(BINDIR)|g' -e 's|@LIBDIR@|$(LIBDIR)|g' -e 's|@SYSCONFDIR@|$(SYSCONFDIR)|g'

# The binary is pure Go and static (CGO_ENABLED=0) unless OPENSSL=1, which
# builds it with cgo and the tag openssl: RSA signatures (DKIM, ARC) then go
# through the system's OpenSSL 3 (libssl-dev to build, libssl3 to run; the
# README says when to choose it).
ifeq ($(OPENSSL),1)
BUILDENV  := CGO_ENABLED=1
BUILDTAGS := -tags openssl
else
BUILDENV  := CGO_ENABLED=0
BUILDTAGS :=
endif
# The packages with code of their own in a build with the tag openssl, and
# those that sign with it: make test runs them in both builds.
OPENSSL_PKGS := ./gateway/internal/opensslrsa/ ./gateway/internal/dkim/ ./gateway/internal/arc/
# HAVE_OPENSSL says whether a C compiler and OpenSSL's headers are here:
# without them the OpenSSL build's checks are skipped, as every test skips
# without its tool, rather than fail make test on a fresh machine.
HAVE_OPENSSL = echo '\#include <openssl/evp.h>' | $${CC:-cc} -E - >/dev/null 2>&1
NO_OPENSSL   = echo "skipped: the OpenSSL build's checks need a C compiler and OpenSSL's headers (apt-get install gcc libc6-dev libssl-dev)"

.PHONY: all build plugins go-plugins first-party-plugins install run test vet bench fuzz-short clean

all: build plugins

build:
	$(BUILDENV) $(GO) build $(BUILDTAGS) -ldflags "$(LDFLAGS)" -o $(SLUICE) ./gateway/cmd/sluice

# The Go toolchain decides what is out of date, so Go plugins always
# "rebuild"; make decides for the others.
plugins: go-plugins $(foreach d,$(WAT_PLUGINS),$(d)/$(notdir $(d)).wasm)

go-plugins:
	@for d in $(GO_PLUGINS); do \
		echo "plugin $$d"; \
		GOOS=wasip1 GOARCH=wasm $(GO) build -trimpath -buildvcs=false -buildmode=c-shared -o $$d/$$(basename $$d).wasm ./$$d || exit 1; \
	done

# What the demo and make install need: no wabt for the examples' .wat.
first-party-plugins:
	@$(MAKE) --no-print-directory go-plugins GO_PLUGINS="$(FIRST_PARTY)"

%.wasm: %.wat
	@echo "plugin $(@D)"
	@command -v wat2wasm >/dev/null || { echo "wat2wasm not found: install the Debian package wabt"; exit 1; }
	wat2wasm $< -o $@

var/keys/rsa-demo.pem: | build
	$(SLUICE) keygen -algorithm rsa -selector rsa-demo -domain your-domain.test -out $@

var/keys/ed-demo.pem: | build
	$(SLUICE) keygen -algorithm ed25519 -selector ed-demo -domain your-domain.test -out $@

# The binary, the first-party plugins (plugins/NAME/NAME.wasm under
# LIBDIR), the production example configuration and the systemd unit, their
# paths filled in. It never overwrites gateway.toml: only the .example.
# Only plugins/ is installed, so only Go is needed: no wabt.
install: build first-party-plugins
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(SYSCONFDIR)/sluice $(DESTDIR)$(UNITDIR)
	install -m 0755 $(SLUICE) $(DESTDIR)$(BINDIR)/sluice
	@for d in $(FIRST_PARTY); do \
		echo "install $$d/$$(basename $$d).wasm"; \
		install -d $(DESTDIR)$(LIBDIR)/$$d && \
		install -m 0644 $$d/$$(basename $$d).wasm $(DESTDIR)$(LIBDIR)/$$d/ || exit 1; \
	done
	$(SUBST) deploy/gateway.toml > $(DESTDIR)$(SYSCONFDIR)/sluice/gateway.toml.example
	$(SUBST) deploy/sluice.service > $(DESTDIR)$(UNITDIR)/sluice.service
	chmod 0644 $(DESTDIR)$(SYSCONFDIR)/sluice/gateway.toml.example $(DESTDIR)$(UNITDIR)/sluice.service

# The demo (gateway.toml) uses the first-party plugins only, so that a
# machine with Go and make runs it.
run: build first-party-plugins $(DEMO_KEYS)
	$(SLUICE) serve -c gateway.toml

vet:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
		if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	@if $(HAVE_OPENSSL); then echo "$(GO) vet -tags openssl $(OPENSSL_PKGS)"; CGO_ENABLED=1 $(GO) vet -tags openssl $(OPENSSL_PKGS); else $(NO_OPENSSL); fi
	@$(GO) mod tidy -diff || { echo "go.mod or go.sum is not tidy: run go mod tidy"; exit 1; }
	GOOS=wasip1 GOARCH=wasm $(GO) vet ./sdk/... ./plugins/... ./examples/...

test: vet plugins
	$(GO) test ./...
	@if $(HAVE_OPENSSL); then echo "$(GO) test -tags openssl $(OPENSSL_PKGS)"; CGO_ENABLED=1 $(GO) test -tags openssl $(OPENSSL_PKGS) || exit 1; else $(NO_OPENSSL); fi

# Every fuzz target for FUZZTIME (3s by default) each, failing on any input
# that breaks one (scripts/fuzz-short; RELIABILITY.md lists the targets):
# about 3 minutes on 2 cores. CI runs it after make test.
fuzz-short:
	GO=$(GO) scripts/fuzz-short

# The Go benchmarks of the hot paths (the signing ones in both builds), then
# the load benchmark against Postfix's smtp-source and smtp-sink, both builds
# side by side (bench/README.md), then the long crash test (20,000 messages,
# 30 SIGKILLs; docs/queue.md): about 30 minutes.
bench:
	$(GO) test -run '^$$' -bench . -benchmem ./...
	@if $(HAVE_OPENSSL); then echo "$(GO) test -tags openssl -run '^$$' -bench . -benchmem $(OPENSSL_PKGS)"; CGO_ENABLED=1 $(GO) test -tags openssl -run '^$$' -bench . -benchmem $(OPENSSL_PKGS); else $(NO_OPENSSL); fi
	bench/load.sh
	SLUICE_CRASH_MESSAGES=20000 SLUICE_CRASH_KILLS=30 $(GO) test -run '^TestCrashAtRandomPoints$$' -v -timeout 60m ./gateway/

clean:
	rm -rf bin var $(WASM)
