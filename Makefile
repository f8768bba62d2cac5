# Two commands matter: `make run` starts the app, `make test` runs lint, types and every test.
# Each creates .venv itself. Windows equivalents are in README.md.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# The real Bluesky Queue Server for the tests, apart from ours (see tests/bluesky_stack.py).
BLUESKY_VENV ?= .venv-bluesky
BLUESKY_STAMP := $(BLUESKY_VENV)/.installed

.PHONY: run test lint typecheck pytest bench bundle clean bluesky-venv screenshots

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

$(BLUESKY_STAMP): tests/bluesky-requirements.txt
	$(PYTHON) -m venv $(BLUESKY_VENV)
	$(BLUESKY_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(BLUESKY_VENV)/bin/python -m pip install --quiet -r tests/bluesky-requirements.txt
	touch $(BLUESKY_STAMP)

bluesky-venv: $(BLUESKY_STAMP)

run: $(STAMP)
	$(BIN)/python -m trayapp

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/check-jsonschema --builtin-schema vendor.github-workflows .github/workflows/*.yml

typecheck: lint

pytest: $(STAMP) $(BLUESKY_STAMP)
	BLUESKY_VENV=$(BLUESKY_VENV) $(BIN)/python -m pytest

test: lint pytest

# The README's pictures, taken again on the real desktop harness (needs its Debian packages).
screenshots: $(STAMP) $(BLUESKY_STAMP)
	BLUESKY_VENV=$(BLUESKY_VENV) $(BIN)/python -m pytest -q tests/desktop/test_bluesky_tray.py \
	  tests/desktop/test_remote_tray.py tests/desktop/test_accessibility_desktop.py
	$(BIN)/python tests/desktop/readme_screenshots.py

bench: $(STAMP)
	$(BIN)/python benchmarks/scan_bench.py

# The one-folder app for this OS in dist/ (Linux: dist/portwatch/), see packaging/.
bundle: $(STAMP)
	$(BIN)/python packaging/build_bundle.py

clean:
	rm -rf $(VENV) $(BLUESKY_VENV) build dist *.egg-info .mypy_cache .ruff_cache .pytest_cache test-artifacts
