# Two commands set everything up: `make demo` and `make test`. Each builds .venv from nothing.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-partitions lint typecheck docs unit bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/python -m incsync.demo

lint: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/lint-imports

typecheck: $(STAMP)
	$(BIN)/mypy

# The documentation site, in strict mode: a broken link, nav entry or docstring fails the build.
docs: $(STAMP)
	$(BIN)/mkdocs build --strict --quiet

unit: $(STAMP)
	$(BIN)/pytest --cov --cov-report=term

test: lint typecheck docs unit

# The scenario suites whose assertions hold for any reader order, with every in-memory
# connector reading full reads in 4 time partitions (tests/conftest.py). The others fix page
# numbers or cursors of one sequential reader (see docs/concepts.md).
test-partitions: $(STAMP)
	INCSYNC_TEST_PARTITIONS=4 $(BIN)/pytest -q -p no:randomly tests/test_model.py \
		tests/test_sweep.py tests/test_counts.py tests/test_reconcile.py \
		tests/test_reconcile_stop.py tests/test_fencing.py tests/test_door.py \
		tests/test_engine_rewind.py tests/test_engine_failure_log.py \
		tests/test_engine_partitions.py tests/connectors

# Every benchmark (docs/performance.md), about 55 minutes, on an otherwise idle machine.
# BENCH_IMPORTS="before=../other-checkout/src" adds a tree to the import-time comparison.
BENCH_IMPORTS ?=
bench: $(STAMP)
	$(BIN)/python -m bench.imports src $(BENCH_IMPORTS)
	$(BIN)/python -m bench.core
	$(BIN)/python -m bench.status
	$(BIN)/python -m bench.connectors
	$(BIN)/python -m bench.connectors --latency-ms 0
	$(BIN)/python -m bench.timestamps
	$(BIN)/python -m bench.vendor_files
	$(BIN)/python -m bench.postgres
	$(BIN)/python -m bench.round
	$(BIN)/python -m bench.telemetry
	$(BIN)/python -m bench.counts
	$(BIN)/python -m bench.sweep
	$(BIN)/python -m bench.fullsync
	$(BIN)/python -m bench.reconcile_ids
	$(BIN)/python -m bench.console
	$(BIN)/python -m bench.mapping

clean:
	rm -rf $(VENV) site .mypy_cache .pytest_cache .ruff_cache .coverage build dist
