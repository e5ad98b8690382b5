# Two commands do all the set-up on a fresh machine: `make demo` (the main job) and `make test`.
# Both install the tested dependency set, constraints.txt, exactly (docs/dependencies.md).
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PIN := -c constraints.txt

$(BIN)/.installed: pyproject.toml constraints.txt
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q $(PIN) pip setuptools
	$(BIN)/python -m pip install -q $(PIN) --no-build-isolation -e ".[dev]"
	touch $@

.PHONY: install demo test test-fast lint upgrade-deps
install: $(BIN)/.installed

demo: $(BIN)/.installed
	$(BIN)/nasdun search

test: $(BIN)/.installed
	$(BIN)/python -m pytest -q -n 2 --dist worksteal

test-fast: $(BIN)/.installed
	$(BIN)/python -m pytest -q -m "not slow"

lint: $(BIN)/.installed
	$(BIN)/ruff check . && $(BIN)/mypy

# The one upgrade command: the newest releases pyproject.toml admits, in a fresh venv; the samplers' tests
# on them; then constraints.txt rewritten from that venv (git diff shows what moved). Run `make test` next.
UP := .venv-upgrade
upgrade-deps:
	rm -rf $(UP) && $(PY) -m venv $(UP)
	$(UP)/bin/python -m pip install -q --upgrade pip setuptools
	$(UP)/bin/python -m pip install -q --no-build-isolation -e ".[dev]"
	$(UP)/bin/python -m pytest -q tests/test_samplers.py tests/test_search.py
	{ sed -n '/^#/p' constraints.txt; $(UP)/bin/python -m pip freeze --all --exclude-editable | sed 's/^torch==\(.*\)+cpu$$/torch==\1/'; } > constraints.new
	mv constraints.new constraints.txt && git diff --stat constraints.txt; git diff constraints.txt | grep '^[-+][A-Za-z]' || true
