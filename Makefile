# Ownlight: `make serve` sets up everything and starts the gateway; `make test` runs the suite.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: install serve test test-fast lint bench clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --upgrade pip
	# llama-cpp-python compiles llama.cpp from source here: the first install takes minutes.
	$(BIN)/pip install -e '.[dev]'
	touch $@

install: $(BIN)/.installed

serve: install
	$(BIN)/ownlight serve

test: install lint
	$(BIN)/python -m pytest

test-fast: install
	$(BIN)/python -m pytest -m "not slow"

lint: install
	$(BIN)/ruff check src tests bench

bench: install
	$(BIN)/python bench/overhead.py

clean:
	rm -rf $(VENV) build src/*.egg-info .pytest_cache .ruff_cache
