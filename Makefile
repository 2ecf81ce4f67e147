# Two commands for a fresh machine with Python 3.11+ and make:
#   make run    the example project (SQLite, local Frame.io stand-in, Celery on a folder broker)
#   make test   the test suite (PostgreSQL and Redis when they answer; CI=true requires them)

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run test lint check-migrations browser-deps clean

$(STAMP): setup.cfg requirements/constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c requirements/constraints.txt -e ".[test,redis,lint]"
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/python -m example_project.run

# CI runs the same suite under coverage: make test PYTEST="$(BIN)/coverage run -m pytest"
PYTEST ?= $(BIN)/python -m pytest

test: $(STAMP)
	$(PYTEST)
	$(BIN)/python manage.py makemigrations --check --dry-run

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

clean:
	rm -rf $(VENV) var .pytest_cache
