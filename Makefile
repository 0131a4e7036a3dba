# callbridge developer commands. `make dev` runs the server with your .env; `make test` runs everything CI runs.
# `make help` lists the targets.

CARGO  ?= cargo
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
# Where the integration tests write every client event the relay sent to the fake Realtime server (JSON lines).
EVENTS_DIR := target/conformance/realtime-events
# The same for the client events the relay sent to the fake GPT-Live server.
LIVE_EVENTS_DIR := target/conformance/live-events

# The port the server listens on, as `callbridge serve` picks it: CALLBRIDGE_PORT, else PORT, each from the environment
# first and then from .env; 5050 if none. `make tunnel-quick PORT=6000` overrides it.
ENV_FILE ?= .env
dotenv = $(shell sed -n -E "s/^[[:space:]]*(export[[:space:]]+)?$(1)[[:space:]]*=[[:space:]]*[\"']?([0-9]+).*/\2/p" $(ENV_FILE) 2>/dev/null | tail -n 1)
PORT := $(or $(CALLBRIDGE_PORT),$(call dotenv,CALLBRIDGE_PORT),$(PORT),$(call dotenv,PORT),5050)
# The named tunnel's cloudflared configuration (`make tunnel`).
TUNNEL_CONFIG ?= deploy/cloudflared/config.yml
RELEASE_BIN := target/release/callbridge
# The binary `make build` makes (dev profile: dependencies at opt-level 1); `make dev`, `make simulate`, the tests and
# `make install` all use it, so one build serves them all.
DEBUG_BIN := target/debug/callbridge
# `make install` copies DEBUG_BIN to $(BINDIR)/callbridge: where cargo installs binaries ($CARGO_HOME/bin, else
# ~/.cargo/bin), which rustup puts on PATH.
PREFIX ?= $(or $(CARGO_HOME),$(HOME)/.cargo)
BINDIR ?= $(PREFIX)/bin

# Plain `make` runs the server, as it always has.
.DEFAULT_GOAL := dev

.PHONY: help bench bench-load bench-load-floor bench-fleet services services-stop dev test test-rust test-conformance test-deploy test-functions test-prerequisites lint simulate venv \
	build install release tunnel-quick tunnel clean-venv

help: ## List the targets
	@grep -E '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | sed -E 's/^([a-zA-Z_-]+):.*## /\1\t/' | \
		awk -F '\t' '{ printf "  %-18s %s\n", $$1, $$2 }'

# `make dev` and `make test` share one build: the dev profile, every target at once. A binary-only build
# (`cargo run -- serve`) would compile tokio without the tests' `test-util` feature, and so again the 28 crates built
# on it (actix-web, awc, rmcp, rusqlite, ...); a release build shares nothing with the tests' build.
dev: build ## Run the server with the settings in .env (the build `make test` uses)
	$(DEBUG_BIN) serve

build: ## Debug build of every target (the server, the tests, the benches)
	$(CARGO) build --all-targets --locked

install: build ## Put `callbridge` on PATH: copies the build to $(BINDIR) (BINDIR=... or PREFIX=... to change)
	install -d "$(BINDIR)"
	install -m 0755 $(DEBUG_BIN) "$(BINDIR)/callbridge"
	@case ":$$PATH:" in *":$(BINDIR):"*) echo "Installed $(BINDIR)/callbridge";; \
		*) echo "Installed $(BINDIR)/callbridge; $(BINDIR) is not on PATH: add it (export PATH=\"$(BINDIR):\$$PATH\")";; esac

release: ## Optimised binary for deployment: target/release/callbridge
	$(CARGO) build --release --locked
	@bytes=$$(wc -c < $(RELEASE_BIN)); \
		printf 'Built %s: %s bytes (%s MiB)\n' "$(abspath $(RELEASE_BIN))" "$$bytes" \
			"$$(awk -v b="$$bytes" 'BEGIN { printf "%.1f", b / 1048576 }')"

test: test-prerequisites services build test-rust test-conformance test-deploy test-functions ## Everything: unit, integration, conformance, deployment and Function tests

# The Redis and PostgreSQL the tests run against: private to this checkout, on loopback, under target/services
# (tests/services/start.sh; ports: CALLBRIDGE_SERVICES_REDIS_PORT, default 6479, and CALLBRIDGE_SERVICES_PG_PORT,
# default 5479). Already running is fine. The test steps source SERVICES_ENV for CALLBRIDGE_TEST_DATABASE_URL and
# CALLBRIDGE_TEST_REDIS_URL.
SERVICES_ENV := target/services/env
services: ## Start the tests' private redis-server and PostgreSQL (target/services); writes target/services/env
	bash tests/services/start.sh

services-stop: ## Stop what `make services` started
	bash tests/services/stop.sh

# What `make test` needs beside Rust; each missing one is named with how to install it (Debian/Ubuntu).
test-prerequisites:
	@missing=0; \
	if ! $(CARGO) nextest --version >/dev/null 2>&1; then \
		echo "make test needs cargo-nextest: cargo install cargo-nextest --locked"; missing=1; fi; \
	if ! $(PYTHON) -c 'import ensurepip, venv' >/dev/null 2>&1; then \
		echo "make test needs Python 3 with venv: apt-get install python3-venv"; missing=1; fi; \
	node_major=$$(node --version 2>/dev/null | sed -E 's/^v([0-9]+).*/\1/'); \
	if [ -z "$$node_major" ] || [ "$$node_major" -lt 20 ] || ! command -v npm >/dev/null 2>&1; then \
		echo "make test needs Node.js 20+ and npm (found: $$(node --version 2>/dev/null || echo none)): https://nodejs.org/en/download"; missing=1; fi; \
	if ! command -v systemd-analyze >/dev/null 2>&1; then \
		echo "make test needs systemd-analyze: apt-get install systemd"; missing=1; fi; \
	if ! command -v strace >/dev/null 2>&1; then \
		echo "make test needs strace (the demo's test watches its sockets): apt-get install strace"; missing=1; fi; \
	if ! command -v redis-server >/dev/null 2>&1; then \
		echo "make test needs redis-server (make services starts one): apt-get install redis-server"; missing=1; fi; \
	if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 && ! command -v initdb >/dev/null 2>&1; then \
		echo "make test needs the PostgreSQL server binaries (make services starts a cluster): apt-get install postgresql"; missing=1; fi; \
	if ! command -v haproxy >/dev/null 2>&1 && [ ! -x /usr/sbin/haproxy ]; then \
		echo "make test needs haproxy (the fleet tests run two instances behind it): apt-get install haproxy"; missing=1; fi; \
	exit $$missing

test-rust: services
	rm -rf $(EVENTS_DIR) $(LIVE_EVENTS_DIR) && mkdir -p $(EVENTS_DIR) $(LIVE_EVENTS_DIR)
	. ./$(SERVICES_ENV) && REALTIME_EVENTS_DIR=$(abspath $(EVENTS_DIR)) LIVE_EVENTS_DIR=$(abspath $(LIVE_EVENTS_DIR)) \
		$(CARGO) nextest run --no-fail-fast

$(VENV)/.installed: tests/conformance/requirements.txt tests/deploy/requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -r tests/conformance/requirements.txt -r tests/deploy/requirements.txt
	touch $@

venv: $(VENV)/.installed

test-conformance: venv services
	. ./$(SERVICES_ENV) && CALLBRIDGE_BIN=$(abspath $(DEBUG_BIN)) REALTIME_EVENTS_DIR=$(abspath $(EVENTS_DIR)) \
		LIVE_EVENTS_DIR=$(abspath $(LIVE_EVENTS_DIR)) $(PY) -m pytest -q tests/conformance

# Needs systemd-analyze (Debian: apt-get install systemd; .ci/run installs it).
test-deploy: venv ## systemd unit, Dockerfile, compose and cloudflared files, tunnel scripts, these make targets
	CALLBRIDGE_BIN=$(abspath $(DEBUG_BIN)) $(PY) -m pytest -q tests/deploy

# The allowlist Twilio Function (twilio-functions/): Node's test runner, with the official twilio npm package that
# `npm ci` installs from the lock file (`npm install` if there is none). Needs Node.js 20+ and npm.
FUNCTIONS_DIR := twilio-functions
$(FUNCTIONS_DIR)/node_modules/.installed: $(FUNCTIONS_DIR)/package.json $(wildcard $(FUNCTIONS_DIR)/package-lock.json)
	cd $(FUNCTIONS_DIR) && if [ -f package-lock.json ]; then npm ci --no-audit --no-fund; else npm install --no-audit --no-fund; fi
	touch $@

test-functions: $(FUNCTIONS_DIR)/node_modules/.installed ## The allowlist Twilio Function's tests (Node.js 20+)
	cd $(FUNCTIONS_DIR) && node --test

lint: ## rustfmt check and clippy with warnings as errors
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --all-targets -- -D warnings

# Play Twilio against a running server: make simulate [WAV=my-question.wav] [ARGS="--barge-in-at 4"] (WAV or raw .ulaw)
WAV ?= tests/fixtures/caller-hello.ulaw
simulate: build ## Play Twilio against the running server: make simulate WAV=file.wav ARGS="--barge-in-at 4"
	$(DEBUG_BIN) simulate --audio $(WAV) $(ARGS)

tunnel-quick: ## Cloudflare quick tunnel to localhost:PORT; prints the webhook URL and the PUBLIC_URL line
	bash deploy/scripts/tunnel-quick.sh $(PORT)

tunnel: ## Named Cloudflare tunnel from deploy/cloudflared/config.yml (TUNNEL_CONFIG=...)
	bash deploy/scripts/tunnel-named.sh $(TUNNEL_CONFIG)

clean-venv:
	rm -rf $(VENV)

bench: ## Relay hot-path and call-latency benchmarks (release build; prints figures)
	$(CARGO) bench --bench relay
	$(CARGO) bench --bench call_latency

# Not part of `make test`: about 2 minutes once built, and its figures depend on what else the machine is doing.
# BENCH_LOAD_CALLS, BENCH_LOAD_STEADY_S, BENCH_LOAD_WARMUP_S, BENCH_LOAD_DRAIN_S, BENCH_LOAD_GEN_THREADS: see
# benches/load.rs. The relay measured is the release binary, copied aside first (a later `cargo bench` may relink
# target/release/callbridge with the dev-dependencies' features). The load generator and the echo fake are built in
# the test profile (`cargo test --bench load`), with the debug build's dependencies, instead of a second, ~40-minute
# release build of everything with tokio's test-util: their own CPU is printed beside the relay's.
BENCH_LOAD_BIN ?= target/bench-load/callbridge
bench-load: ## Many-call load benchmark: relay CPU and RSS per call, round trip, frames lost at 10/100/200 calls
	$(CARGO) build --release --bin callbridge
	mkdir -p $(dir $(BENCH_LOAD_BIN)) && cp $(RELEASE_BIN) $(BENCH_LOAD_BIN)
	BENCH_LOAD_BIN=$(abspath $(BENCH_LOAD_BIN)) $(CARGO) test --bench load

# The same load benchmark run against examples/floor_relay.rs instead of callbridge: a relay that only moves the
# bench's frames (tokio, tungstenite, serde_json, no checks or call logic). Its figures are the floor of this machine
# for that traffic: read `make bench-load`'s against them. FLOOR_RELAY_WORKERS is not passed through (the bench clears
# the relay's environment); the floor uses one thread per CPU, as actix-web does.
bench-load-floor: ## The load benchmark against a relay that only moves frames: this machine's floor for the traffic
	$(CARGO) build --release --example floor_relay
	BENCH_LOAD_BIN=$(abspath target/release/examples/floor_relay) $(CARGO) test --bench load

# Not part of `make test`: about a minute once built; figures depend on what else the machine is doing. Two instances
# on the tests' Redis and PostgreSQL (make services) behind HAProxy: accepted calls per second, and webhook → TwiML
# latency with and without Redis. Runs the debug build (`cargo test --bench`); BENCH_FLEET_BIN=... measures another
# binary. BENCH_FLEET_REQUESTS, BENCH_FLEET_CONCURRENCY, BENCH_FLEET_SECONDS: see benches/fleet.rs.
bench-fleet: services ## Several instances: calls/s through HAProxy, the latency Redis adds to webhook → TwiML
	. ./$(SERVICES_ENV) && $(CARGO) test --bench fleet
