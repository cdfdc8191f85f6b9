# Two commands set everything up: `make demo` and `make test`. Each builds .venv from nothing.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-partitions scenarios-partitioned lint typecheck docs unit bench clean

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

test: lint typecheck docs unit scenarios-partitioned

# The suites that drive SyncEngine through the in-memory connector, run again by `make test` with
# every such connector reading full reads in 4 time partitions (tests/conftest.py): each
# assertion holds for any reader order, or the test pins one reader (docs/concepts.md).
SCENARIO_SUITES := tests/test_counts.py tests/test_door.py tests/test_engine.py \
	tests/test_engine_concurrency.py tests/test_engine_failure_log.py \
	tests/test_engine_partitions.py tests/test_engine_rewind.py tests/test_engine_stop.py \
	tests/test_fencing.py tests/test_history.py tests/test_history_summaries.py \
	tests/test_model.py tests/test_pipeline.py tests/test_reconcile.py \
	tests/test_reconcile_stop.py tests/test_scheduling.py tests/test_sweep.py \
	tests/test_telemetry.py tests/test_telemetry_logs.py
# The Celery round flushes a shared Redis database, and its workers are processes the variable
# does not reach.
CELERY_ROUND := tests/integration/test_celery.py::test_celery_workers_sync_every_source_every_round_without_overlap

scenarios-partitioned: $(STAMP)
	INCSYNC_TEST_PARTITIONS=4 $(BIN)/pytest -q -p no:randomly $(SCENARIO_SUITES)

# The whole suite with 4 partitions, but for the suites that never build an in-memory connector
# (the fake vendors, the vendor connectors, the demo, the status classifier): half its test time.
PARTITION_SUITES := $(filter-out tests/__pycache__/ tests/connectors/ tests/status/ \
	tests/testing/ tests/test_demo.py,$(wildcard tests/*/ tests/test_*.py)) \
	tests/connectors/test_memory.py tests/status/test_retrying.py

test-partitions: $(STAMP)
	INCSYNC_TEST_PARTITIONS=4 $(BIN)/pytest -q -p no:randomly --deselect $(CELERY_ROUND) \
		$(PARTITION_SUITES)

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
