# Set-up is part of every target: a fresh clone needs only Python 3.11+ and make.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: setup demo test lint bench clean

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit("bulk needs Python 3.11 or newer (PYTHON=python3.11 make ...)" if sys.version_info < (3, 11) else 0)'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	$(BIN)/bulk demo

test: $(STAMP)
	$(BIN)/python -m pytest -q

# pip-audit asks PyPI's advisory data about every installed distribution. --strict:
# a distribution it could not look up fails the audit (by default it is skipped,
# and an unreachable service prints "No known vulnerabilities found").
# --timeout bounds each request. AUDIT=skip leaves the audit out, saying so.
AUDIT ?= on
AUDIT_FLAGS := --strict --skip-editable --timeout 15 --progress-spinner off

lint: $(STAMP)
	$(BIN)/ruff check bulk tests bench
	$(BIN)/ruff format --check bulk tests bench
	$(BIN)/mypy --strict bulk
ifeq ($(AUDIT),skip)
	@echo "make lint: dependency audit SKIPPED (AUDIT=skip): known advisories were not checked" >&2
else
	@$(BIN)/pip-audit $(AUDIT_FLAGS) || { \
	  echo "make lint: pip-audit failed: a dependency above has a known advisory, or the" \
	    "advisory service could not be reached or did not know a dependency (then nothing" \
	    "was audited). Rerun with AUDIT=skip to lint without the audit." >&2; exit 1; }
endif

bench: $(STAMP)
	$(BIN)/python bench/run.py

clean:
	rm -rf $(VENV) reports .pytest_cache .mypy_cache .ruff_cache
