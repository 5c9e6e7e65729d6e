# link.etcd: the two commands of the README, plus lint and bench.
#   make demo   store `pip inspect`'s JSON in a throwaway etcd, read it back, compare
#   make test   the whole suite (v3 and v2) against a real etcd started by the tests
#   make test-faults         the fault suite (marker `faults`): members killed, hung, cut off
#   make test-faults-etcd34  the same against Debian's etcd 3.4 (apt-get installs it)
#   make test-pythons        unit tests and a core subset on Python 3.12 and 3.13, when present
#   make lint   ruff check, ruff format --check and mypy --strict (settings in pyproject.toml)
#   make check  make lint, then make test
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
EXTRAS ?= test,pydantic,b3j0f,dev,docs
# the oldest protobuf supported; the main venv gets the newest
PROTOBUF_OLDEST ?= 4.21.12
OLD := .venv-protobuf-oldest
OLD_STAMP := $(OLD)/.installed
# link/etcd/decoding.py and encoding.py are compiled by mypyc at install
# (setup.py); the venvs here must run the compiled modules (=1: the install fails
# rather than fall back to pure Python), and are reinstalled when they change
# (else the old build runs)
export LINK_ETCD_COMPILE := 1
COMPILED_SOURCES := link/etcd/decoding.py link/etcd/encoding.py

.PHONY: venv demo test docs test-protobuf-oldest test-faults test-faults-etcd34 test-pythons b3j0f-suite lint check bench clean

venv: $(STAMP)

$(STAMP): pyproject.toml setup.py _link_etcd_hook.py link_etcd_b3j0f.pth $(COMPILED_SOURCES)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[$(EXTRAS)]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/python -m link.etcd.demo

test: $(STAMP) $(OLD_STAMP)
	$(BIN)/python -c "from link.etcd import decoding as d, encoding as e; assert d.COMPILED and e.COMPILED, 'runs uncompiled'"
	$(BIN)/python tools/run_b3j0f_suite.py
	$(BIN)/python -m pytest
	$(MAKE) --no-print-directory test-protobuf-oldest

$(OLD_STAMP): pyproject.toml setup.py $(COMPILED_SOURCES)
	$(PYTHON) -m venv $(OLD)
	$(OLD)/bin/python -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(OLD)/bin/python -m pip install --quiet --disable-pip-version-check -e '.[test]' 'protobuf==$(PROTOBUF_OLDEST)'
	touch $(OLD_STAMP)

# the v3 suite (both transports) on the oldest protobuf link.etcd supports (not the
# test beside python3-etcd3, whose generated code needs protobuf >= 5.26)
test-protobuf-oldest: $(OLD_STAMP)
	$(OLD)/bin/python -c "import google.protobuf as p; assert p.__version__ == '$(PROTOBUF_OLDEST)', p.__version__"
	$(OLD)/bin/python -m pytest -q -p no:cacheprovider tests/test_v3_transports.py tests/test_middleware.py tests/test_watch.py -k "not v2 and not beside"

# the documentation site (Sphinx + MyST) into build/docs, warnings as errors; the
# settings table of docs/configuration.md must match link.etcd.settings
docs: $(STAMP)
	$(BIN)/python tools/gen_settings_reference.py --check
	$(BIN)/python -m sphinx -W --keep-going -q -b html docs build/docs

# the fault suite (tests/faults, marker `faults`): members killed, hung, cut off
test-faults: $(STAMP)
	$(BIN)/python -m pytest -p no:cacheprovider -m faults tests/faults

# the same against Debian's etcd 3.4 (installed with apt-get when missing: needs root)
ETCD34 ?= /usr/bin/etcd
ETCDCTL34 ?= /usr/bin/etcdctl
$(ETCD34) $(ETCDCTL34):
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends etcd-server etcd-client

test-faults-etcd34: $(STAMP) $(ETCD34) $(ETCDCTL34)
	$(ETCD34) --version | grep -q '^etcd Version: 3\.4\.'
	LINK_ETCD_BINARY=$(ETCD34) LINK_ETCDCTL_BINARY=$(ETCDCTL34) \
		$(BIN)/python -m pytest -p no:cacheprovider -m faults tests/faults

# the unit tests (marker `unit`) and a core integration subset on each other Python
# present (python3.X on PATH, else pyenv's), in its own venv .venv-py3.X; a
# missing interpreter is skipped with a message (about 2 minutes each here)
OTHER_PYTHONS ?= 3.12 3.13
PYTHONS_EXTRAS ?= test,pydantic,b3j0f
# KNOWN BUGS (1 December 2026): tests/test_aio.py was flaky on the newer Pythons: on
# 3.12 a cancelled one-txn async write over grpc.aio once left the test waiting
# forever; on 3.13 test_aclose_leaves_no_task_channel_or_socket[gateway] once timed
# out. The second was the test's socket count (other clients' sockets closing
# meanwhile; it compares socket sets now); the first was not seen again in 7 runs
# of the module on 3.12 (4 under load) and 8,000 cancelled writes, and a cancelled
# task that does not end now fails the test instead of hanging it. test_aio runs on
# 3.11 in make test, and stays out of this target until it has a clean record here.
PYTHONS_DESELECT ?= not cancelled
PYTHONS_SUBSET ?= tests/test_middleware.py tests/test_v3_transports.py tests/test_primitives.py \
	tests/test_watch.py tests/test_driver.py

test-pythons:
	@set -e; for v in $(OTHER_PYTHONS); do \
		py=; \
		for c in python$$v $$(pyenv root 2>/dev/null)/versions/$$v.*/bin/python$$v; do \
			if $$c -c 'import sys' >/dev/null 2>&1; then py=$$c; break; fi; \
		done; \
		if [ -z "$$py" ]; then echo "test-pythons: no working python$$v, skipped"; continue; fi; \
		venv=.venv-py$$v; \
		if [ ! -f $$venv/.installed ] || [ pyproject.toml -nt $$venv/.installed ] \
				|| [ setup.py -nt $$venv/.installed ] \
				|| [ -n "$$(find $(COMPILED_SOURCES) -newer $$venv/.installed)" ]; then \
			$$py -m venv $$venv; \
			$$venv/bin/python -m pip install --quiet --disable-pip-version-check --upgrade pip; \
			$$venv/bin/python -m pip install --quiet --disable-pip-version-check \
				-e '.[$(PYTHONS_EXTRAS)]'; \
			touch $$venv/.installed; \
		fi; \
		echo "test-pythons: $$($$venv/bin/python -V) ($$py)"; \
		$$venv/bin/python -m pytest -q -p no:cacheprovider -m unit; \
		$$venv/bin/python -m pytest -q -p no:cacheprovider -m integration \
			-k "$(PYTHONS_DESELECT)" $(PYTHONS_SUBSET); \
	done

b3j0f-suite: $(STAMP)
	$(BIN)/python tools/run_b3j0f_suite.py

LINTED := link tests bench tools setup.py _link_etcd_hook.py

# mypy checks the files listed in pyproject.toml ([tool.mypy] files)
lint: $(STAMP)
	$(BIN)/ruff check $(LINTED)
	$(BIN)/ruff format --check $(LINTED)
	$(BIN)/mypy

# the fast checks first: a lint or type error fails before the suite's minutes
check: $(STAMP)
	$(MAKE) --no-print-directory lint
	$(MAKE) --no-print-directory test

bench: $(STAMP)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[bench]'
	$(BIN)/python -m bench --profile

clean:
	rm -rf $(VENV) $(OLD) .venv-py3.* build *.egg-info .pytest_cache .hypothesis .mypy_cache .ruff_cache
	rm -f link/etcd/*.so
