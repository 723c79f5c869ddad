# tenantwatch — every target installs what it needs (venv, pip packages, Kafka jars) once.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml edge/pyproject.toml | sha1sum | cut -c1-12)
PYTEST_ARGS ?=
GO     ?= $(shell command -v go 2>/dev/null || echo /usr/local/go/bin/go)

.DEFAULT_GOAL := help
.PHONY: help install kafka-jars browser rls demo test test-unit bench lint clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml edge/pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e './edge[grpc]' -e '.[dev]'  # the edge client is its own small package
	rm -f $(VENV)/.installed-* && touch $@

install: $(STAMP)  ## create .venv and install tenantwatch with its dev tools

kafka-jars: $(STAMP)  ## fetch the Apache Kafka broker jars from Maven Central (cached)
	$(BIN)/python -c "from pipeline.settings import Settings as S; from pipeline.devstack.kafka import resolve_jars; s=S(); print(resolve_jars(s.cache_dir, s.kafka_version))"

demo: kafka-jars  ## run the pipeline on ~14 simulated days of synthetic traffic, print a summary
	$(BIN)/tenantwatch demo

browser:  ## Debian's chromium, for the static-report and console browser tests (skipped without it)
	@command -v chromium >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && (apt-get update -qq && apt-get install -y -qq chromium >/dev/null) || echo "chromium not installed: the report browser test will skip"; }

rls: $(STAMP)  ## build the Envoy rate-limit service (Go, edge/rls) into the cache dir, once per source change
	$(BIN)/python -c "from pipeline.settings import Settings as S; from pipeline.adapters.rls_service import binary; print(binary(S().cache_dir))"

test: kafka-jars browser rls  ## run every test (unit, property, integration on real Kafka/chDB/SMTP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

test-unit: $(STAMP)  ## only the fast tests (no broker)
	$(BIN)/python -m pytest -m "not integration" $(PYTEST_ARGS)

bench: kafka-jars  ## run the benchmarks and print their figures
	$(BIN)/python tests/bench/run_all.py

lint: $(STAMP)  ## ruff and mypy (strict on schemas and the pure cores)
	$(BIN)/ruff check .
	$(BIN)/mypy
	cd edge/rls && test -z "$$($(dir $(GO))gofmt -l .)" && GOFLAGS=-mod=mod $(GO) vet ./...

clean:  ## remove local state (.tenantwatch); keeps the venv and the jar cache
	rm -rf .tenantwatch
