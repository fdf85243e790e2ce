# featureline: the two commands of the README, and their parts.
#   make quickstart   set up, start Redis + Kafka, run the example end to end
#   make test         set up, start Redis + Kafka, run the whole test suite
#   make soak         the stream under faults for 11 minutes (not part of make test)
# Both are idempotent: a second run reuses the venv and the running services.

SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
FL := $(VENV)/bin/featureline
# the venv is rebuilt when pyproject.toml or the lock changes
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml requirements.lock | cksum | cut -d' ' -f1)
PYTEST_ARGS ?=
SOAK_ARGS ?=

.PHONY: quickstart test soak fuzz fuzz-http venv lock services services-down cluster cluster-down lint clean

venv: $(STAMP)

$(STAMP): pyproject.toml requirements.lock
	@echo "[setup] creating $(VENV) and installing featureline with its dev extras, versions from requirements.lock (first run only)"
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(PY) -m pip install --quiet --upgrade pip
	@$(PY) -m pip install --quiet -e '.[dev]' -c requirements.lock
	@rm -f $(VENV)/.installed-*
	@touch $(STAMP)
	@echo "[setup] $(VENV) ready"

# requirements.lock from a fresh venv with pyproject.toml's latest allowed versions (then run `make test`)
lock:
	@rm -rf .venv-lock && $(PYTHON) -m venv .venv-lock
	@.venv-lock/bin/python -m pip install --quiet --upgrade pip
	@.venv-lock/bin/python -m pip install --quiet -e '.[dev]'
	@{ head -3 requirements.lock; .venv-lock/bin/python -m pip freeze --exclude-editable; } > requirements.lock.new
	@mv requirements.lock.new requirements.lock && rm -rf .venv-lock
	@echo "[lock] requirements.lock: $$(grep -c '==' requirements.lock) pins"

services: venv
	@PYTHON=$(PY) scripts/services up

services-down:
	@scripts/services down

# the 3-node Kafka cluster for fault drills (127.0.0.1:19092-19094); not used by `make test`
cluster: venv
	@PYTHON=$(PY) scripts/services cluster up

cluster-down:
	@scripts/services cluster down

quickstart: venv services
	@scripts/quickstart

test: venv services
	@echo "[test] running the test suite against the real Redis and Kafka"
	@$(PY) -m pytest $(PYTEST_ARGS)

# not part of `make test`: the live stream for 11 minutes under faults (docs/reliability.md)
soak: venv services
	@$(PY) bench/soak.py $(SOAK_ARGS)

# not part of `make test`: the contract runtime's fuzz for 5 minutes
fuzz: venv
	@$(PY) bench/fuzz_contracts.py --minutes 5

# not part of `make test` (which runs 300 cases per operation and mode): the HTTP API fuzzed from its OpenAPI document
fuzz-http: venv services
	@FEATURELINE_HTTP_FUZZ_EXAMPLES=$${FEATURELINE_HTTP_FUZZ_EXAMPLES:-2000} $(PY) -m pytest tests/integration/test_http_fuzz.py -q -k fuzz_from

lint: venv
	@$(VENV)/bin/ruff check src tests

clean: services-down cluster-down
	rm -rf $(VENV) .services data/history data/offline
