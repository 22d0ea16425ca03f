# Two commands do all set-up on a fresh machine: `make test` and `make demo`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: test demo demo-stop install lint typecheck unit clean ci

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# Reinstall only when the dependencies change.
$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports --no-cache

typecheck: install
	$(BIN)/mypy prefect_sessions

unit: install
	$(BIN)/pytest

test: lint typecheck unit

# The main job: Prefect's local server, the bundled emulator with a rate limit on, and the
# example suite of 200 conversations run through `prefect-sessions run`.
demo: install
	$(BIN)/python scripts/demo.py

# Stop the Prefect server that `make demo` left running for its UI.
demo-stop:
	@if [ -f .prefect-sessions/demo/prefect-server.pid ]; then \
		kill -- -$$(cat .prefect-sessions/demo/prefect-server.pid) 2>/dev/null || true; \
		rm -f .prefect-sessions/demo/prefect-server.pid; echo "Prefect server stopped"; \
	else echo "no demo Prefect server running"; fi

# Benchmarks (benchmarks/README.md): each prints its ratios and writes build/bench/<name>.json.
# The workers benchmark needs Redis on 127.0.0.1:6379. About 10 minutes on 2 cores.
.PHONY: bench bench-smoke
bench: install
	mkdir -p build/bench
	$(BIN)/python -m benchmarks.at_limit --json build/bench/at_limit.json
	$(BIN)/python -m benchmarks.overhead --json build/bench/overhead.json
	$(BIN)/python -m benchmarks.growth --json build/bench/growth.json
	$(BIN)/python -m benchmarks.workers --json build/bench/workers.json
	$(BIN)/python -m benchmarks.judge_limit --json build/bench/judge_limit.json

# No request gets a 5xx from the emulator (tests/contract/test_no_server_errors.py): schemathesis'
# command line over every vendor document with three seeds, and mutated requests on live
# sessions. About 8 minutes on 2 cores; `make test` skips these (marker `fuzz`).
.PHONY: fuzz
fuzz: install
	$(BIN)/pytest -q -p no:cacheprovider -m fuzz tests/contract/test_no_server_errors.py

# Every benchmark at a tiny size (the same smoke tests `make test` runs).
bench-smoke: install
	$(BIN)/pytest -q tests/integration/test_benchmarks_smoke.py

# End-to-end tests (tests/e2e, docs/deployments.md): prefect.yaml deployed to a real Prefect server
# on PostgreSQL, a process worker, the emulator, and headless Chromium driven by Playwright. Installs
# Debian's chromium and Playwright when missing, and holds SQLAlchemy below 2.1 (Prefect 3.8's
# scheduler fails on 2.1). About 1 minute on 2 cores; output in build/e2e/.
.PHONY: e2e
# The official Vectara Python SDK the e2e contract test runs against the emulator.
VECTARA_SDK = vectara==0.4.3
# LiveAvatar's web SDK, whose SessionAPIClient the same test runs in Node.
LIVEAVATAR_WEB_SDK = @heygen/liveavatar-web-sdk@0.0.18

e2e: install
	@test -x /usr/bin/chromium || { apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; }
	@$(BIN)/python -c "import playwright" 2>/dev/null || \
		$(BIN)/python -m pip install --quiet --disable-pip-version-check playwright
	@$(BIN)/python -c "import sqlalchemy, sys; from packaging.version import Version as V; \
		sys.exit(V(sqlalchemy.__version__) >= V('2.1'))" || \
		$(BIN)/python -m pip install --quiet --disable-pip-version-check 'sqlalchemy[asyncio]>=2.0,<2.1'
	@# Vendors' own clients judge the emulator, each pinned, in a virtual environment of its own.
	@build/vendor-sdk/bin/python -c "import vectara" 2>/dev/null || { python3 -m venv build/vendor-sdk && \
		build/vendor-sdk/bin/pip install --quiet --disable-pip-version-check "$(VECTARA_SDK)"; }
	@test -d build/vendor-node/node_modules/@heygen/liveavatar-web-sdk || { mkdir -p build/vendor-node && \
		npm install --silent --no-audit --no-fund --prefix build/vendor-node "$(LIVEAVATAR_WEB_SDK)"; }
	PREFECT_SESSIONS_E2E=1 $(BIN)/pytest -q -p no:cacheprovider --durations=10 tests/e2e

# Issue 10's long variant: 10,000 conversations against the emulator at a low rate limit, every
# one accounted for and memory bounded (docs/reliability.md). About 3 minutes on 2 cores.
.PHONY: reliability-load
reliability-load: install
	RELIABILITY_LOAD_CONVERSATIONS=10000 $(BIN)/pytest -q -p no:cacheprovider tests/integration/reliability/test_load.py

# The documentation site (mkdocs-material; API reference from the docstrings by mkdocstrings),
# built strict: a broken link or a docstring griffe cannot read fails it. Output in build/site.
.PHONY: docs
DOCS_STAMP := $(VENV)/.docs-stamp
$(DOCS_STAMP): pyproject.toml | $(STAMP)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[test,docs]'
	touch $(DOCS_STAMP)

docs: $(DOCS_STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --quiet

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis .prefect-sessions
