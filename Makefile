# Two commands for a fresh machine with Python 3.11 (and Java 17 for the JVM test):
#   make demo   set up, generate a sample landing zone, run the nightly DAG, print results
#   make test   set up and run the whole test suite
SHELL := /bin/bash
PYTHON ?= python3.11
UV_VERSION := 0.13.9
UV := $(shell command -v uv 2>/dev/null || echo .tools/bin/uv)
VENV := .venv
STAMP := $(VENV)/.synced
DEMO_DIR ?= $(CURDIR)/demo
DEMO_MEMBERS ?= 2000
DEMO_DAYS ?= 400
DEMO_RUNS ?= 3
TEST_WORKERS ?= 2
# More pytest options for `make test`, e.g. PYTEST_ARGS=--junitxml=var/tests.xml
PYTEST_ARGS ?=

.PHONY: setup jars browser test test-jvm lint demo bench bench-engines spark-cluster spark-cluster-stop clean

.tools/bin/uv:
	$(PYTHON) -m venv .tools
	.tools/bin/pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)

$(STAMP): pyproject.toml uv.lock | $(if $(findstring .tools,$(UV)),.tools/bin/uv)
	$(UV) sync --frozen --compile-bytecode --python $(PYTHON)
	@touch $(STAMP)

# JVM engines (CDP_ENGINE=spark, Spark Connect server, standalone cluster): the JARs of
# jvm/pom.xml copied once into .jars/ with Maven; later runs use them offline.
JARS := .jars
JARS_STAMP := $(JARS)/.resolved

$(JARS_STAMP): jvm/pom.xml
	rm -rf $(JARS)
	mvn -q -B -f jvm/pom.xml dependency:copy-dependencies -DincludeScope=runtime -DoutputDirectory=$(CURDIR)/$(JARS)
	@touch $(JARS_STAMP)

jars: $(JARS_STAMP)

setup: $(STAMP) $(JARS_STAMP)

# The JVM tests with the opt-in ones: the whole parity scenario on a local JVM session
# (tests/jvm/test_parity.py; its JVM side alone takes ~24 minutes on 2 cores), its night 2 on
# the standalone cluster and a night on a local-mode Connect server (tests/jvm/test_cluster.py).
# `make test` runs night 1 of the scenario on a Connect server over a standalone cluster,
# and on a Sail local-cluster server (tests/test_sail_cluster.py; the whole scenario here).
test-jvm: setup
	CDP_TEST_CLUSTER=1 CDP_TEST_SAIL_CLUSTER=1 $(UV) run --frozen pytest -q tests/jvm tests/objectstore/test_s3_jvm.py tests/test_sail_cluster.py

lint: setup
	$(UV) run --frozen ruff check .

# The run report's browser test (tests/report/test_browser.py) renders it in headless
# Chromium: Debian's `chromium` is installed when missing and we are root with apt (CI,
# a fresh machine); otherwise that one test skips, saying why.
browser:
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || \
	{ if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing chromium (apt) for the report's browser test"; \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
	    || echo "chromium could not be installed: the report browser test will skip"; \
	  else echo "no chromium (apt-get install chromium): the report browser test will skip"; fi; }

test: setup browser
	$(UV) run --frozen ruff check .
	$(UV) run --frozen pytest -q -n $(TEST_WORKERS) --dist loadgroup --durations=25 $(PYTEST_ARGS)

demo: setup
	$(UV) run --frozen python -m jobs.demo --dir $(DEMO_DIR) --members $(DEMO_MEMBERS) --days $(DEMO_DAYS) --runs $(DEMO_RUNS)

bench: setup
	$(UV) run --frozen python bench/run.py $(BENCH_ARGS)

# Engines compared on one landing zone (BENCH_ARGS="--members 2000 --days 10" for a quick one).
bench-engines: setup
	$(UV) run --frozen python bench/engines.py $(BENCH_ARGS)

# A standalone master + 2 workers and a Spark Connect server on it, on localhost:
#   CDP_ENGINE=connect CDP_CONNECT_URL=sc://127.0.0.1:15002 cdp run --date ...
spark-cluster: setup
	$(UV) run --frozen cdp engine cluster start --workers 2
	$(UV) run --frozen cdp engine serve-spark --master spark://127.0.0.1:7077

spark-cluster-stop:
	$(UV) run --frozen cdp engine stop-spark
	$(UV) run --frozen cdp engine cluster stop

clean:
	rm -rf var demo .pytest_cache .ruff_cache
