# Every target installs what it needs into .venv first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install learn test lint fmt bench report clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

learn: $(STAMP)
	$(BIN)/coach learn traces/

test: $(STAMP)
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check pipeline tests
	$(BIN)/ruff format --check pipeline tests
	$(BIN)/mypy pipeline

fmt: $(STAMP)
	$(BIN)/ruff format pipeline tests
	$(BIN)/ruff check --fix pipeline tests

bench: $(STAMP)
	@echo "bench: no benchmarks yet (see the open issue on benchmarks)"; exit 1

report: $(STAMP)
	@echo "report: not built yet (see the open issue on the HTML report)"; exit 1

clean:
	rm -rf $(VENV) .coach .pytest_cache .ruff_cache .mypy_cache
