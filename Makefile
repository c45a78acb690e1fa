# Two commands on a fresh machine:
#   make serve   runs Baton (SQLite in ./baton.db, resumes unfinished runs)
#   make test    runs lint, types and the whole test suite
# Both create .venv on first use.

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin

.PHONY: serve test lint types install clean

$(BIN)/baton: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	@touch $(BIN)/baton

install: $(BIN)/baton

serve: $(BIN)/baton
	$(BIN)/baton serve

lint: $(BIN)/baton
	$(BIN)/ruff check .
	$(BIN)/ruff format --check agents bot storage tests $(wildcard bench)
	$(BIN)/hadolint Dockerfile

types: $(BIN)/baton
	$(BIN)/mypy agents storage bot

test: lint types
	LITELLM_LOCAL_MODEL_COST_MAP=True $(BIN)/pytest -q

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
