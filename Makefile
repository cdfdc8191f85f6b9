# Two commands set everything up: `make demo` and `make test`. Each builds .venv from nothing.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint typecheck docs unit bench clean

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

bench: $(STAMP)
	$(BIN)/python -m bench.core
	$(BIN)/python -m bench.status
	$(BIN)/python -m bench.connectors
	$(BIN)/python -m bench.timestamps
	$(BIN)/python -m bench.vendor_files
	$(BIN)/python -m bench.postgres
	$(BIN)/python -m bench.round

clean:
	rm -rf $(VENV) site .mypy_cache .pytest_cache .ruff_cache .coverage build dist
