# Only python3 (3.11+) and git are assumed: the first target run creates .venv and
# installs the pinned dependencies from constraints.txt.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed

.PHONY: demo test lint typecheck imports pytest pgbouncer chromium screenshots vendor-js schema-snapshot lock clean bench bench-quick chaos

$(INSTALLED): pyproject.toml constraints.txt
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "LQS needs Python 3.11 or newer")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[dev]'
	@touch $(INSTALLED)

## The main job end to end: embedded PostgreSQL, migrations, verification.
demo: $(INSTALLED)
	$(BIN)/lqs demo $(if $(KEEP),--keep) $(ARGS)

## Lint, types, the layering contract, then the test suite on a real PostgreSQL.
test: lint typecheck imports pytest

lint: $(INSTALLED)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(INSTALLED)
	$(BIN)/mypy

imports: $(INSTALLED)
	$(BIN)/lint-imports

## In parallel: one worker per CPU (at most 4), each test file whole on one worker (its
## module-scoped database is made once); each worker has its own embedded server.
pytest: $(INSTALLED) pgbouncer chromium
	$(BIN)/pytest --numprocesses auto --maxprocesses 4 --dist loadfile

## The transaction pooler tests need Debian's pgbouncer: installed here when missing and
## root can (otherwise those tests skip, saying how to install it).
pgbouncer:
	@command -v pgbouncer >/dev/null || test -x /usr/sbin/pgbouncer || \
	  { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
	    echo "installing pgbouncer (apt-get)" && \
	    { DEBIAN_FRONTEND=noninteractive apt-get install -y -qq pgbouncer >/dev/null 2>&1 || \
	      { apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq pgbouncer >/dev/null; }; }; } || \
	  echo "pgbouncer is not installed and cannot be here: the pooler tests will skip"

## The dashboard's browser tests (tests/browser) drive Debian's chromium through its
## chromedriver: installed here when missing and root can (otherwise those tests skip,
## saying how to install them). No browser is downloaded from anywhere else.
chromium:
	@{ test -x /usr/bin/chromium && test -x /usr/bin/chromedriver; } || \
	  { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
	    echo "installing chromium and chromium-driver (apt-get)" && \
	    { DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null 2>&1 || \
	      { apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null; }; }; } || \
	  echo "chromium is not installed and cannot be here: the browser tests will skip"

## PNGs of the dashboard's pages in docs/screenshots (the list: tests/browser/test_screenshots.py).
screenshots: $(INSTALLED) chromium
	@test -x /usr/bin/chromium || { echo "screenshots need Debian's chromium and chromium-driver"; exit 1; }
	@mkdir -p .lqs
	LQS_SCREENSHOTS_DIR=$(CURDIR)/docs/screenshots $(BIN)/pytest -q -p no:cacheprovider \
	  --basetemp=$(CURDIR)/.lqs/screenshots-tmp tests/browser/test_screenshots.py

## Vendor the dashboard's htmx and Chart.js again (needs npm; versions in the script).
vendor-js:
	scripts/vendor_js.sh

## Benchmarks (writes docs/BENCHMARKS.md); bench-quick stays under two minutes.
BENCH_INSTALLED := $(VENV)/.bench-installed

$(BENCH_INSTALLED): $(INSTALLED) pyproject.toml constraints.txt
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev,bench]'
	@touch $(BENCH_INSTALLED)

bench: $(BENCH_INSTALLED)
	$(BIN)/python -m bench

bench-quick: $(BENCH_INSTALLED)
	$(BIN)/python -m bench --quick

## The full fault harness (tests/chaos): leads under worker kills, terminated sessions,
## PostgreSQL restarts and statement timeouts; prints its table and writes it to
## CHAOS_REPORT (the short version runs in make test).
CHAOS_REPORT ?= .lqs/chaos-report.md
chaos: $(INSTALLED)
	$(BIN)/python -m tests.chaos --report $(CHAOS_REPORT)

## Regenerate src/lqs/db/schema.json from a freshly migrated scratch database.
schema-snapshot: $(INSTALLED)
	LQS_UPDATE_SCHEMA_SNAPSHOT=1 $(BIN)/pytest -q tests/integration/test_verify.py -k shipped_schema_description

## Re-resolve the pinned dependency set (then commit constraints.txt).
lock:
	rm -rf .lock-venv
	$(PYTHON) -m venv .lock-venv
	.lock-venv/bin/python -m pip install --quiet -e '.[dev,bench]'
	.lock-venv/bin/python -m pip freeze --exclude-editable | grep -v '^-e' > constraints.txt
	rm -rf .lock-venv

clean:
	rm -rf $(VENV) .lqs .pytest_cache .mypy_cache .ruff_cache
