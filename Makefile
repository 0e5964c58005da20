# One-command entry points. `make demo` and `make test` set up everything on a fresh machine with Python 3.11.
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-postgres install lint format bench lock clean

# Exactly the versions of requirements-dev.lock (hash-checked). The code runs from this checkout.
$(STAMP): requirements-dev.lock
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet --require-hashes -r requirements-dev.lock
	touch $(STAMP)

install: $(STAMP)

## The demo on the embedded default: SQLite, filesystem broker, emails as files under var/mail.
demo: $(STAMP)
	$(BIN)/python manage.py demo

## The whole test suite (SQLite unless DATABASE_URL says otherwise).
test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/pytest -q $(PYTEST_ARGS)

## The same suite on PostgreSQL (a fresh test database on 127.0.0.1:5432).
test-postgres: $(STAMP)
	DATABASE_URL=$${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/campaign} $(BIN)/pytest -q --create-db $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

format: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

## Benchmarks on PostgreSQL + Redis + gunicorn (see bench/README.md); not part of the tests.
bench: $(STAMP)
	$(BIN)/pip install --quiet -e ".[dev,bench]"
	$(BIN)/python bench/run.py $(BENCH_ARGS)

## Pin every dependency again from pyproject.toml's ranges (after changing them), with hashes.
## Pins already in the lock files are kept unless a range excludes them; `make lock UPGRADE=1` takes the newest.
lock: $(STAMP)
	$(BIN)/pip install --quiet uv
	$(BIN)/uv pip compile pyproject.toml $(if $(UPGRADE),--upgrade) --generate-hashes --universal --python-version 3.11 --quiet -o requirements.lock
	$(BIN)/uv pip compile pyproject.toml --extra dev $(if $(UPGRADE),--upgrade) --generate-hashes --universal --python-version 3.11 --quiet -o requirements-dev.lock

clean:
	rm -rf $(VENV) var staticfiles
