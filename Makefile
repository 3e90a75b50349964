# Every target installs what it needs into .venv first, at the versions the suite was tested
# with (requirements.lock); `make lock` refreshes the lock from pyproject.toml's ranges.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
LOCK := requirements.lock

.PHONY: install phoenix lock learn test lint docs fmt bench eval loop report clean

$(STAMP): pyproject.toml $(LOCK)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -r $(LOCK)
	$(BIN)/python -m pip install --quiet --no-deps -e .
	touch $(STAMP)

install: $(STAMP)

# The Phoenix server of tests/test_phoenix.py, in a virtual environment of its own (its
# dependencies do not fit the lock), from the phoenix-test extra of pyproject.toml; about two
# minutes the first time. When it cannot be installed the test skips, saying so.
PHOENIX_VENV := $(VENV)/phoenix
PHOENIX_STAMP := $(PHOENIX_VENV)/.installed
$(PHOENIX_STAMP): pyproject.toml
	$(PYTHON) -m venv $(PHOENIX_VENV)
	$(BIN)/python -c "import tomllib; print('\\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['optional-dependencies']['phoenix-test']))" > $(PHOENIX_VENV)/requirements.txt
	$(PHOENIX_VENV)/bin/python -m pip install --quiet -r $(PHOENIX_VENV)/requirements.txt
	touch $(PHOENIX_STAMP)

phoenix: $(PHOENIX_STAMP)

# Resolve the newest versions that pyproject.toml allows (core and dev) for every platform,
# pin them in requirements.lock, and reinstall; run `make test` before committing the lock.
lock:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet 'uv>=0.5'
	$(BIN)/uv pip compile pyproject.toml --extra dev --universal --python-version 3.11 \
		--upgrade --quiet -o $(LOCK)
	$(BIN)/python -m pip install --quiet -r $(LOCK)
	touch $(STAMP)

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
	@$(MAKE) --no-print-directory $(PHOENIX_STAMP) || \
		echo "make: could not install Phoenix; tests/test_phoenix.py will skip its server test" >&2
	COACH_REQUIRE_CHROMIUM=1 $(BIN)/python -m pytest

# The Markdown files with cog blocks (docs/cli.md: every command's --help, generated).
COG_FILES = $(shell grep -l -F '[[[cog' README.md docs/*.md)

lint: $(STAMP)
	$(BIN)/ruff check pipeline tests
	$(BIN)/ruff format --check pipeline tests
	$(BIN)/mypy pipeline
	$(BIN)/cog --check --diff --check-fail-msg 'run make docs' $(COG_FILES)

# Regenerate what cog blocks print (every command's --help in docs/cli.md) after a change.
docs: $(STAMP)
	$(BIN)/cog -r $(COG_FILES)

fmt: $(STAMP)
	$(BIN)/ruff format pipeline tests
	$(BIN)/ruff check --fix pipeline tests

# Benchmarks write to the ignored bench/out/; UPDATE=1 rewrites the committed figures
# (bench/results.*, bench/eval_results.*) instead.
bench: $(STAMP)
	$(BIN)/python bench/run_bench.py --out $(if $(UPDATE),bench/results,bench/out/results)

eval: $(STAMP)
	$(BIN)/python bench/eval_planted.py --out $(if $(UPDATE),bench/eval_results,bench/out/eval_results)

# The closed loop: simulated traffic night after night against coach's prompt experiments
# (bench/loop.py; UPDATE=1 rewrites bench/loop_results.*).
loop: $(STAMP)
	$(BIN)/python bench/loop.py --out $(if $(UPDATE),bench/loop_results,bench/out/loop_results)

report: $(STAMP)
	$(BIN)/coach report -o .coach/report.html

clean:
	rm -rf $(VENV) .coach .pytest_cache .ruff_cache .mypy_cache
