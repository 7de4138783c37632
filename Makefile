# gpufleet: `make run` brings the stack up on this machine; `make test` runs every test.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: help setup run kafka test test-gpu check bench chaos clean

help:
	@echo "make run       the whole stack on this machine (Kafka, services, a simulated fleet)"
	@echo "make test      every test, against a real Kafka broker the tests start themselves"
	@echo "make test-gpu  the NVML tests against the real driver (skip where there is no GPU)"
	@echo "make check     ruff and mypy"
	@echo "make bench     the benchmarks, printed as a report table"
	@echo "make chaos     the fault suite: kill and restart every part under load, check invariants"
	@echo "make kafka     only the local Kafka broker, in the foreground"

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "gpufleet needs Python 3.11 or newer: make PYTHON=python3.11 ...")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	@touch $@

setup: $(STAMP)
	@$(BIN)/gpufleet kafka fetch >/dev/null

run: setup
	$(BIN)/gpufleet up

kafka: setup
	$(BIN)/gpufleet kafka run

test: setup
	$(BIN)/pytest -q -m "not gpu"

test-gpu: setup
	$(BIN)/pytest -q -m gpu -rs

check: setup
	$(BIN)/ruff check .
	$(BIN)/mypy

bench: setup
	$(BIN)/python -m bench

chaos: setup
	$(BIN)/python -m chaos --profile long

clean:
	rm -rf $(VENV) .cache/kafka/data .pytest_cache .mypy_cache .ruff_cache
