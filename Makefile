# The front door. `make run` starts the suite, `make test` runs every test.
# Both create the virtual environment, install the pinned dependencies, generate the
# protobuf code and migrate the databases as needed.

PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
PROTOS := $(shell find protos -name '*.proto' | sort)
INSTALLED := $(VENV)/.installed
GENERATED := gen/.generated

.PHONY: run test test-fast protos migrate lint format bench chaos demo clean

run: $(GENERATED)
	$(PY) deploy/run_local.py

test: $(GENERATED)
	$(PY) -m pytest $(PYTEST_ARGS)

# Skips the tests marked slow (large imports, multi-process runs).
test-fast: $(GENERATED)
	$(PY) -m pytest -m "not slow" $(PYTEST_ARGS)

protos: $(GENERATED)

migrate: $(GENERATED)
	$(PY) deploy/run_local.py --migrate-only

lint: $(GENERATED)
	$(VENV)/bin/ruff check services tests deploy
	$(VENV)/bin/ruff format --check services tests deploy
	$(VENV)/bin/mypy services

format: $(INSTALLED)
	$(VENV)/bin/ruff check --fix services tests deploy
	$(VENV)/bin/ruff format services tests deploy

# One person from application to an active card, against a suite started with `make run`.
demo: $(GENERATED)
	$(PY) deploy/demo.py

# Speed is measured here, never asserted in tests; results and method in BENCHMARKS.md.
bench: $(GENERATED)
	$(PY) -m tests.bench.bench_import
	$(PY) -m tests.bench.bench_batch
	if [ -n "$$SSCARD_TEST_PG_URL" ]; then $(PY) -m tests.bench.bench_timers; fi
	$(PY) -m tests.bench.bench_topup

# Seeded fault simulation (tests/chaos): SEEDS seeds of OPS operations each on SQLite, and on
# PostgreSQL too when SSCARD_TEST_PG_URL is set; a failure prints its seed and a shrunk trace.
SEEDS ?= 3
OPS ?= 60
chaos: $(GENERATED)
	$(PY) -m tests.chaos --seeds $(SEEDS) --ops $(OPS) $(CHAOS_ARGS)
	if [ -n "$$SSCARD_TEST_PG_URL" ]; then $(PY) -m tests.chaos --seeds $(SEEDS) --ops $(OPS) --pg $(CHAOS_ARGS); fi

$(INSTALLED): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	mkdir -p gen/sscard && touch gen/sscard/__init__.py
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $@

$(GENERATED): $(INSTALLED) $(PROTOS)
	rm -rf gen/sscard && mkdir -p gen/sscard
	$(PY) -m grpc_tools.protoc -I protos \
	  -I "$$($(PY) -c 'import google.type, pathlib; print(pathlib.Path(google.type.__path__[0]).parent.parent)')" \
	  --python_out=gen --grpc_python_out=gen --pyi_out=gen $(PROTOS)
	find gen/sscard -type d -exec touch {}/__init__.py \;
	touch gen/sscard/py.typed $@

clean:
	rm -rf $(VENV) gen var .pytest_cache .mypy_cache .ruff_cache *.egg-info
