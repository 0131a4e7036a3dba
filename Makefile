# callbridge developer commands. `make dev` runs the server with your .env; `make test` runs everything CI runs.
# `make help` lists the targets.

CARGO  ?= cargo
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
# Where the integration tests write every client event the relay sent to the fake Realtime server (JSON lines).
EVENTS_DIR := target/conformance/realtime-events

# The port the server listens on, as `callbridge serve` picks it: CALLBRIDGE_PORT, else PORT, each from the environment
# first and then from .env; 5050 if none. `make tunnel-quick PORT=6000` overrides it.
ENV_FILE ?= .env
dotenv = $(shell sed -n -E "s/^[[:space:]]*(export[[:space:]]+)?$(1)[[:space:]]*=[[:space:]]*[\"']?([0-9]+).*/\2/p" $(ENV_FILE) 2>/dev/null | tail -n 1)
PORT := $(or $(CALLBRIDGE_PORT),$(call dotenv,CALLBRIDGE_PORT),$(PORT),$(call dotenv,PORT),5050)
# The named tunnel's cloudflared configuration (`make tunnel`).
TUNNEL_CONFIG ?= deploy/cloudflared/config.yml
RELEASE_BIN := target/release/callbridge

# Plain `make` runs the server, as it always has.
.DEFAULT_GOAL := dev

.PHONY: help bench bench-load dev test test-rust test-conformance test-deploy test-functions lint simulate venv build release tunnel-quick tunnel \
	clean-venv

help: ## List the targets
	@grep -E '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | sed -E 's/^([a-zA-Z_-]+):.*## /\1\t/' | \
		awk -F '\t' '{ printf "  %-18s %s\n", $$1, $$2 }'

dev: ## Run the server with the settings in .env
	$(CARGO) run --release -- serve

build: ## Debug build of every target (the tests run this binary)
	$(CARGO) build --all-targets

release: ## Optimised binary for deployment: target/release/callbridge
	$(CARGO) build --release --locked
	@bytes=$$(wc -c < $(RELEASE_BIN)); \
		printf 'Built %s: %s bytes (%s MiB)\n' "$(abspath $(RELEASE_BIN))" "$$bytes" \
			"$$(awk -v b="$$bytes" 'BEGIN { printf "%.1f", b / 1048576 }')"

test: build test-rust test-conformance test-deploy test-functions ## Everything: unit, integration, conformance, deployment and Function tests

test-rust:
	rm -rf $(EVENTS_DIR) && mkdir -p $(EVENTS_DIR)
	REALTIME_EVENTS_DIR=$(abspath $(EVENTS_DIR)) $(CARGO) nextest run --no-fail-fast

$(VENV)/.installed: tests/conformance/requirements.txt tests/deploy/requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -r tests/conformance/requirements.txt -r tests/deploy/requirements.txt
	touch $@

venv: $(VENV)/.installed

test-conformance: venv
	CALLBRIDGE_BIN=$(abspath target/debug/callbridge) REALTIME_EVENTS_DIR=$(abspath $(EVENTS_DIR)) \
		$(PY) -m pytest -q tests/conformance

# Needs systemd-analyze (Debian: apt-get install systemd; .ci/run installs it).
test-deploy: venv ## systemd unit, Dockerfile, compose and cloudflared files, tunnel scripts, these make targets
	CALLBRIDGE_BIN=$(abspath target/debug/callbridge) $(PY) -m pytest -q tests/deploy

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
simulate: ## Play Twilio against the running server: make simulate WAV=file.wav ARGS="--barge-in-at 4"
	$(CARGO) run --release -- simulate --audio $(WAV) $(ARGS)

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
