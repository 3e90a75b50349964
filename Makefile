# Every target installs what it needs into .venv first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install learn test lint fmt bench eval report clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

learn: $(STAMP)
	$(BIN)/coach learn traces/

# The browser test of the HTML report needs Debian's chromium: installed here when missing (as
# root, or with passwordless sudo); COACH_REQUIRE_CHROMIUM=1 makes that test fail, not skip,
# when it is still missing.
CHROMIUM_INSTALL = command -v chromium >/dev/null 2>&1 || { \
	SUDO=$$([ "$$(id -u)" = 0 ] || echo "sudo -n"); \
	$$SUDO apt-get update -qq && \
	$$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } || \
	echo "make: could not install chromium; the report's browser test will fail" >&2

test: $(STAMP)
	@$(CHROMIUM_INSTALL)
	COACH_REQUIRE_CHROMIUM=1 $(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check pipeline tests
	$(BIN)/ruff format --check pipeline tests
	$(BIN)/mypy pipeline

fmt: $(STAMP)
	$(BIN)/ruff format pipeline tests
	$(BIN)/ruff check --fix pipeline tests

bench: $(STAMP)
	$(BIN)/python bench/run_bench.py

eval: $(STAMP)
	$(BIN)/python bench/eval_planted.py

report: $(STAMP)
	$(BIN)/coach report -o .coach/report.html

clean:
	rm -rf $(VENV) .coach .pytest_cache .ruff_cache .mypy_cache
