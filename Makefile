# Two commands for a newcomer: `make demo` and `make test`. Each creates .venv when missing.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# The CPU wheel on the project machines; on a CUDA box set TORCH_SPEC to the CUDA build.
TORCH_SPEC ?= torch==2.13.0
export HFT_HOME ?= $(CURDIR)/.hft_home
export DAGSTER_HOME ?= $(HFT_HOME)/dagster_home
STAMP := $(VENV)/.installed

.PHONY: install demo test lint ui bench dagster-home clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q "$(TORCH_SPEC)"
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

dagster-home:
	mkdir -p "$(DAGSTER_HOME)"
	cp dagster.yaml "$(DAGSTER_HOME)/dagster.yaml"

demo: install dagster-home
	$(BIN)/hft-pipeline demo --home "$(HFT_HOME)"

test: install
	$(BIN)/python -m pytest

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

ui: install dagster-home
	$(BIN)/dagster dev -w workspace.yaml -h 127.0.0.1 -p 3000

bench: install
	for script in benchmarks/bench_*.py; do $(BIN)/python $$script || exit 1; done

clean:
	rm -rf "$(HFT_HOME)"
