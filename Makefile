# link.etcd: the two commands of the README, plus lint and bench.
#   make demo   store `pip inspect`'s JSON in a throwaway etcd, read it back, compare
#   make test   the whole suite (v3 and v2) against a real etcd started by the tests
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
EXTRAS ?= test,pydantic,b3j0f,dev

.PHONY: venv demo test b3j0f-suite lint bench clean

venv: $(STAMP)

$(STAMP): pyproject.toml setup.py _link_etcd_hook.py link_etcd_b3j0f.pth
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[$(EXTRAS)]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/python -m link.etcd.demo

test: $(STAMP)
	$(BIN)/python tools/run_b3j0f_suite.py
	$(BIN)/python -m pytest

b3j0f-suite: $(STAMP)
	$(BIN)/python tools/run_b3j0f_suite.py

lint: $(STAMP)
	$(BIN)/ruff check link tests bench tools setup.py _link_etcd_hook.py
	$(BIN)/mypy link tools setup.py _link_etcd_hook.py

bench: $(STAMP)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[bench]'
	$(BIN)/python -m bench --profile

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .hypothesis .mypy_cache .ruff_cache
