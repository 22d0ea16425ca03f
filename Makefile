# Two commands do all set-up on a fresh machine: `make test` and `make demo`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: test demo demo-stop install lint typecheck unit clean

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

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis .prefect-sessions
