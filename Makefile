# callbridge developer commands. `make dev` runs the server with your .env; `make test` runs everything CI runs.

CARGO  ?= cargo
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
# Where the integration tests write every client event the relay sent to the fake Realtime server (JSON lines).
EVENTS_DIR := target/conformance/realtime-events

.PHONY: dev test test-rust test-conformance lint simulate venv build clean-venv

dev: ## Run the server with the settings in .env
	$(CARGO) run --release -- serve

build:
	$(CARGO) build --all-targets

test: build test-rust test-conformance ## Everything: unit, integration and conformance tests

test-rust:
	rm -rf $(EVENTS_DIR) && mkdir -p $(EVENTS_DIR)
	REALTIME_EVENTS_DIR=$(abspath $(EVENTS_DIR)) $(CARGO) nextest run --no-fail-fast

$(VENV)/.installed: tests/conformance/requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -r tests/conformance/requirements.txt
	touch $@

venv: $(VENV)/.installed

test-conformance: venv
	CALLBRIDGE_BIN=$(abspath target/debug/callbridge) REALTIME_EVENTS_DIR=$(abspath $(EVENTS_DIR)) \
		$(PY) -m pytest -q tests/conformance

lint: ## rustfmt check and clippy with warnings as errors
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --all-targets -- -D warnings

# Play Twilio against a running server: make simulate WAV=tests/fixtures/caller-hello.wav [ARGS="--barge-in-at 4"]
WAV ?= tests/fixtures/caller-hello.wav
simulate:
	$(CARGO) run --release -- simulate --audio $(WAV) $(ARGS)

clean-venv:
	rm -rf $(VENV)
