# Two commands for a fresh machine with Python 3.11+ and make:
#   make run    the example project (SQLite, local Frame.io stand-in, Celery on a folder broker);
#               its ports: make run EXAMPLE_PORT=8000 FRAMEIO_STANDIN_PORT=8001 (the defaults)
#   make test   the test suite (PostgreSQL and Redis when they answer; CI=true requires them)
# And for working on it: make lint, make docs (Sphinx, warnings as errors), make dist (the sdist
# and the wheel, and twine check of the README as the PyPI page).

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run test lint docs dist check-migrations browser-deps clean

$(STAMP): setup.cfg requirements/constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c requirements/constraints.txt -e ".[test,redis,lint,standin]"
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

# The docs and release tools go into the same venv, on top of what make test installs.
$(VENV)/.installed-docs: $(STAMP)
	$(BIN)/python -m pip install --quiet -c requirements/constraints.txt -e ".[docs]"
	touch $@

$(VENV)/.installed-release: $(STAMP)
	$(BIN)/python -m pip install --quiet -c requirements/constraints.txt -e ".[release]"
	touch $@

DOCS_OUT ?= build/docs
DIST_OUT ?= dist

docs: $(VENV)/.installed-docs
	$(BIN)/sphinx-build -W --keep-going -q -b html docs $(DOCS_OUT)

dist: $(VENV)/.installed-release
	rm -rf $(DIST_OUT)
	$(BIN)/python -m build --outdir $(DIST_OUT) .
	$(BIN)/twine check --strict $(DIST_OUT)/*

clean:
	rm -rf $(VENV) var .pytest_cache build
