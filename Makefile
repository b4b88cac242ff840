# Targets are the README's words. `make help` lists them.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: help venv test unit integration lint

help: ## list the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-16s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	@echo "==> creating $(VENV) and installing hello-mtls[dev]"
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	@touch $@

venv: $(STAMP) ## create the virtualenv with every extra and the test tools

test: $(STAMP) ## unit + integration tests (no cluster needed)
	$(BIN)/pytest tests/unit tests/integration

unit: $(STAMP) ## unit tests only
	$(BIN)/pytest tests/unit

lint: $(STAMP) ## ruff, mypy and the import-layering contracts
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports

.PHONY: bench bench-ca
bench: bench-ca ## every benchmark that needs no cluster (figures: benchmarks/RESULTS.md)

bench-ca: $(STAMP) ## CA service: POST /sign over keep-alive mTLS (target >= 300/s)
	@uptime
	$(BIN)/python benchmarks/bench_ca.py
