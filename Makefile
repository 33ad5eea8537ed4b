# novanet. "make help" lists the targets.
SHELL := /bin/bash
export PATH := /usr/local/go/bin:$(PATH)
GO ?= go
VERSION ?= 0.1.0
LDFLAGS := -X main.version=$(VERSION)
BIN := bin
CMDS := network-manager network-host netadm
PREFIX ?= /usr/local
# make run: a local PostgreSQL cluster (Debian's pg_ctlcluster) and the manager.
PG_VERSION ?= $(shell ls /usr/lib/postgresql 2>/dev/null | sort -n | tail -1)
PG_CLUSTER ?= novanet
PG_PORT ?= 5439
# Two roles: novanet owns the schema and runs the migrations; novanet_app,
# with DML only, is the one the manager serves with (docs/security.md).
MIGRATE_DATABASE_URL ?= postgres://novanet:novanet@127.0.0.1:$(PG_PORT)/novanet?sslmode=disable
DATABASE_URL ?= postgres://novanet_app:novanet_app@127.0.0.1:$(PG_PORT)/novanet?sslmode=disable
FUZZTIME ?= 20s

.PHONY: help build test vet fmt-check run db db-stop demo bench fuzz install install-nats clean

help:
	@echo "make build     build $(CMDS) into $(BIN)/"
	@echo "make test      gofmt check, go vet, and every test with the race detector (privileged tests need root)"
	@echo "make run       start a local PostgreSQL cluster ($(PG_CLUSTER), port $(PG_PORT)) and run network-manager with embedded NATS"
	@echo "make db-stop   stop that cluster"
	@echo "make demo      (root) manager, agent and two DHCP \"VMs\" end to end in throwaway namespaces, then clean up"
	@echo "make bench     benchmarks, each beside a baseline measured in the same run"
	@echo "make fuzz      run every fuzz target for FUZZTIME ($(FUZZTIME)) each"
	@echo "make install   install the binaries into $(PREFIX)/bin and the units into /etc/systemd/system"
	@echo "make install-nats  (a NATS node) nats-server at go.mod's version, deploy/nats/ into /etc/nats, its unit"

build:
	@mkdir -p $(BIN)
	$(GO) build -ldflags "$(LDFLAGS)" -o $(BIN)/ $(addprefix ./cmd/,$(CMDS))

fmt-check:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi

vet:
	$(GO) vet ./...

test: fmt-check vet
	$(GO) test -race -count=1 -timeout 15m ./...

db:
	@if ! pg_lsclusters -h | awk '{print $$2}' | grep -qx $(PG_CLUSTER); then \
		pg_createcluster $(PG_VERSION) $(PG_CLUSTER) -p $(PG_PORT) >/dev/null; fi
	@pg_ctlcluster $(PG_VERSION) $(PG_CLUSTER) start 2>/dev/null || pg_ctlcluster $(PG_VERSION) $(PG_CLUSTER) status >/dev/null
	@runuser -u postgres -- psql -p $(PG_PORT) -qtAc "SELECT 1 FROM pg_roles WHERE rolname='novanet'" | grep -q 1 || \
		runuser -u postgres -- psql -p $(PG_PORT) -qc "CREATE ROLE novanet LOGIN PASSWORD 'novanet'"
	@runuser -u postgres -- psql -p $(PG_PORT) -qtAc "SELECT 1 FROM pg_roles WHERE rolname='novanet_app'" | grep -q 1 || \
		runuser -u postgres -- psql -p $(PG_PORT) -qc "CREATE ROLE novanet_app LOGIN PASSWORD 'novanet_app'"
	@runuser -u postgres -- psql -p $(PG_PORT) -qtAc "SELECT 1 FROM pg_database WHERE datname='novanet'" | grep -q 1 || \
		runuser -u postgres -- createdb -p $(PG_PORT) -O novanet novanet
	@# Only the owner creates in the schema (PostgreSQL 15's default; older ones let everybody).
	@runuser -u postgres -- psql -p $(PG_PORT) -d novanet -qc "REVOKE CREATE ON SCHEMA public FROM PUBLIC"
	@echo "PostgreSQL cluster $(PG_VERSION)/$(PG_CLUSTER) on port $(PG_PORT): owner $(MIGRATE_DATABASE_URL), runtime $(DATABASE_URL)"

db-stop:
	pg_ctlcluster $(PG_VERSION) $(PG_CLUSTER) stop

# Root: its own PostgreSQL, manager and agent, network namespaces only.
demo:
	scripts/demo.sh

run: build db
	@echo "network-manager: NATS on nats://127.0.0.1:4222 (identities in ~/.config/novanet/nats; anonymous clients refused), health on http://127.0.0.1:9696; try, as this user: $(BIN)/netadm network create 10.0.0.0/8 3 16"
	NOVANET_DATABASE_URL='$(DATABASE_URL)' NOVANET_MIGRATE_DATABASE_URL='$(MIGRATE_DATABASE_URL)' \
		$(BIN)/network-manager serve --migrate --log-format console

# Allocation and network creation against pgbench and a bulk INSERT; then
# iptables-restore against go-iptables rule by rule, and one floating IP
# associated end to end with 10,000 on the host against one restore (root:
# makes namespaces; bench/floating takes a fixed 20 samples, not BENCH_SECONDS).
BENCH_SECONDS ?= 8
bench:
	$(GO) run ./bench/manager -seconds $(BENCH_SECONDS)
	@if [ "$$(id -u)" = 0 ]; then $(GO) run ./bench/iptables; \
	else echo "bench/iptables skipped: needs root to create a network namespace"; fi
	@if [ "$$(id -u)" = 0 ]; then $(GO) run ./bench/floating; \
	else echo "bench/floating skipped: needs root to create a network namespace"; fi

fuzz:
	@set -e; for pkg in $$($(GO) list ./...); do \
		for f in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz' || true); do \
			echo "== $$pkg $$f"; $(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) $$pkg; \
		done; done

install: build
	install -D -m 0755 -t $(PREFIX)/bin $(addprefix $(BIN)/,$(CMDS))
	install -D -m 0644 -t $(PREFIX)/share/doc/novanet README.md
	install -D -m 0644 -t /etc/systemd/system deploy/systemd/network-*.service
	id novanet >/dev/null 2>&1 || useradd --system --no-create-home --shell /usr/sbin/nologin novanet
	install -d -m 0755 /etc/novanet
	@for f in network-manager network-host; do \
		[ -e /etc/novanet/$$f.env ] || install -m 0640 -g novanet deploy/$$f.env.example /etc/novanet/$$f.env; done
	@if [ -d /run/systemd/system ]; then systemctl daemon-reload; fi

# One node of the NATS cluster (deploy/nats/): nats-server built at the
# version go.mod pins for the embedded server. The node's TLS files and the
# generated novanet-authorization.conf go into /etc/nats by hand.
install-nats:
	@mkdir -p $(BIN)
	$(GO) build -o $(BIN)/ github.com/nats-io/nats-server/v2
	install -D -m 0755 -t $(PREFIX)/bin $(BIN)/nats-server
	install -D -m 0644 -t /etc/systemd/system deploy/systemd/nats-server.service
	id nats >/dev/null 2>&1 || useradd --system --no-create-home --shell /usr/sbin/nologin nats
	install -d -m 0750 -g nats /etc/nats /etc/nats/tls
	@[ -e /etc/nats/nats-server.conf ] || install -m 0640 -g nats deploy/nats/nats-server.conf /etc/nats/
	@[ -e /etc/nats/nats-server.env ] || install -m 0640 -g nats deploy/nats/nats-server.env.example /etc/nats/nats-server.env
	@if [ -d /run/systemd/system ]; then systemctl daemon-reload; fi

clean:
	rm -rf $(BIN)
