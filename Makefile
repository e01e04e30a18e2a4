# The two commands a newcomer needs: `make demo` and `make test`. Both set everything up.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install test demo demo-agency lint typecheck check clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

# Installs PostgreSQL, PgBouncer, Chromium and promtool with apt-get when missing, lints,
# type-checks and runs the whole suite on two pytest-xdist workers (each starts its own
# throwaway PostgreSQL and PgBouncer); the slowest 15 tests are printed at the end.
# Any pytest exit code but 0 fails, 5 ("no tests collected") included.
PYTEST_WORKERS ?= 2
test: $(STAMP)
	bash scripts/ensure-system-deps.sh
	$(PY) -m ruff check src tests bench
	$(PY) -m mypy
	$(PY) -m pytest -n $(PYTEST_WORKERS) </dev/null

demo: $(STAMP)
	$(VENV)/bin/cronkeeper demo

# collect-daily at an agency's scale against the simulator (bench/agency_scale.py, no doc edit).
demo-agency: $(STAMP)
	$(PY) bench/agency_scale.py collect --no-doc

lint: $(STAMP)
	$(PY) -m ruff check src tests bench
	$(PY) -m ruff format --check src tests bench

typecheck: $(STAMP)
	$(PY) -m mypy

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .demo test-artifacts
