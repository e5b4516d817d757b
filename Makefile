# Two commands on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
PYTEST_ARGS ?=

.PHONY: help venv demo test lint timescaledb bench clean vendor screenshots

help:
	@echo "make demo         simulated factory -> edge -> collector -> KPIs on embedded PostgreSQL and broker"
	@echo "make test         create the environment, lint, and run the whole suite (real services on loopback)"
	@echo "make timescaledb  build and install TimescaleDB (Apache-2 edition) for the local PostgreSQL (root)"
	@echo "make bench        every benchmark at a few minutes' size (ratios against references in the same run)"
	@echo "make vendor       fetch the pinned htmx, ECharts and Swagger UI from npm into package data"
	@echo "make screenshots  save a screenshot of each dashboard page under docs/screenshots/ (headless Chromium)"

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[demo,dev]'
	touch $@

venv: $(BIN)/.installed

demo: venv
	$(BIN)/shopfloor demo $(DEMO_ARGS)

lint: venv
	$(BIN)/ruff check .
	$(BIN)/mypy core edge collector kpi simulator shopfloor api
	$(BIN)/shopfloor config check examples/plant.yaml
	@if [ -f ../shared/examples/plant-contract.yaml ]; then $(BIN)/shopfloor config check ../shared/examples/plant-contract.yaml; fi

test: venv lint
	$(BIN)/python -m pytest -q -p no:cacheprovider $(PYTEST_ARGS)

timescaledb:
	bash deploy/timescaledb.sh

bench: venv
	$(BIN)/pip install -q -e '.[bench]'
	$(BIN)/python benchmarks/bench_writer.py
	$(BIN)/python benchmarks/bench_modbus.py
	$(BIN)/python benchmarks/bench_opcua.py
	$(BIN)/python benchmarks/kpi/bench_kernels.py --scale 0.1
	$(BIN)/python benchmarks/bench_timescale.py --days 7
	$(BIN)/python benchmarks/kpi/bench_backfill.py --days 1 --machines 20
	$(BIN)/python benchmarks/kpi/bench_incremental.py --machines 10
	$(BIN)/python benchmarks/bench_pipeline.py --machines 20 --tags 20 --hz 10 --seconds 20
	$(BIN)/python benchmarks/api/bench_api.py --interval-s 30 --seconds 5
	$(BIN)/python benchmarks/evidence/bench_evidence.py --days 1 --machines 100
	$(BIN)/python benchmarks/dashboard/bench_dashboard.py --repeat 1

vendor:
	bash api/dashboard/vendor.sh

screenshots: venv
	$(BIN)/python -m tests.screenshots docs/screenshots

clean:
	rm -rf $(VENV) var build *.egg-info
