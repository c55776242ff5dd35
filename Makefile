# beambridge — the two commands: `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
PYTEST_WORKERS ?= 4

.PHONY: demo test test-quick test-security lint format system-deps bench peers-xpcs clean

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "beambridge needs Python >= 3.11"'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

## demo: the whole system on this machine (server on SQLite under ./.demo, a local site, pilots, XPCS jobs)
demo: $(STAMP)
	BEAMBRIDGE_HOME=$(CURDIR)/.demo $(BIN)/beambridge demo $(if $(KEEP),--keep)

## system-deps: install (with apt, as root) the real components the tests need when they are missing
system-deps:
	@bash scripts/system-deps.sh

## lint: ruff and mypy, as CI runs them
lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks
	$(BIN)/mypy

## test: everything, on SQLite and PostgreSQL, in parallel
test: $(STAMP) system-deps lint
	$(BIN)/pytest -n $(PYTEST_WORKERS) --dist loadgroup

## test-quick: the server suite on SQLite only, for iterating
test-quick: $(STAMP)
	$(BIN)/pytest -n 2 -q -m "not postgres and not slow" tests/server

## test-security: the attacker's suite (tenancy on every route, tokens, odd input, traversal, floods, quotas)
test-security: $(STAMP)
	$(BIN)/pytest -n $(PYTEST_WORKERS) tests/security

format: $(STAMP)
	$(BIN)/ruff format src tests benchmarks
	$(BIN)/ruff check --fix src tests benchmarks

## bench: the API and launcher benchmarks (start their own servers; Parsl from .venv-peers when present)
bench: $(STAMP)
	@command -v wrk >/dev/null 2>&1 || { echo "bench: installing wrk (GET latency)"; apt-get install -y -q wrk >/dev/null; }
	$(BIN)/python benchmarks/api_throughput.py
	$(BIN)/python benchmarks/launcher_throughput.py

## peers-xpcs: the peers' virtualenv .venv-peers for benchmarks/xpcs_speed.py (boost-corr 0.1.7, CPU torch, xpcscorr 0.4.5)
peers-xpcs: .venv-peers/.xpcs-stamp

.venv-peers/.xpcs-stamp:
	python3.11 -m venv .venv-peers
	.venv-peers/bin/pip download --quiet --no-deps --ignore-requires-python boost-corr==0.1.7 -d .venv-peers/wheels
	.venv-peers/bin/pip install --quiet --no-deps --ignore-requires-python .venv-peers/wheels/boost_corr-0.1.7-py3-none-any.whl
	.venv-peers/bin/pip install --quiet numpy h5py hdf5plugin tqdm psutil scipy torch==2.13.0
	.venv-peers/bin/pip install --quiet xpcs-correlator==0.4.5
	@touch $@

clean:
	rm -rf $(VENV) .demo .pytest_cache .mypy_cache .ruff_cache
