# rs3gw: every target sets itself up from a bare Debian machine (root, or sudo when not root).
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
SUDO := $(if $(filter 0,$(shell id -u)),,sudo)
APT_PACKAGES := build-essential python3-dev python3-venv libisal-dev liburing-dev libssl-dev libzstd-dev liblz4-dev \
	pkg-config rclone s3cmd openssl fio
# Anything that changes what `pip install -e` produces re-runs the install: every file under src/_core,
# whose sources sit one folder per module (a one-level wildcard would miss them).
DEPS_STAMP := $(VENV)/.rs3gw-deps.stamp
DEPS_INPUTS := pyproject.toml setup.py $(shell find src/_core -type f -not -path '*/__pycache__/*')
PYTEST_FAST := -m "not slow and not clients"

.PHONY: help deps apt serve test test-fast test-matrix matrix lint build clean bench-core bench \
	bench-cluster bench-versioning bench-lifecycle docs-graphs

help:
	@echo "make serve      run the gateway (RS3GW_* env passes through)"
	@echo "make test       lint + types + the whole test suite, then again on the reference core and"
	@echo "                on the threads I/O backend (what CI runs)"
	@echo "make test-fast  lint + types + tests not marked slow or clients"
	@echo "make test-matrix  the fast tests with the reference core, then with the threads I/O backend"
	@echo "make build      rebuild the compiled core in place"
	@echo "make bench-core compiled-core benchmarks (ratios vs hashlib, google-crc32c, zstd, fio)"
	@echo "make bench      end-to-end load runs against nginx and moto (writes benchmarks/results/)"
	@echo "make bench-cluster  a 3-node cluster, A/B of two settings or checkouts (BENCH_ARGS)"
	@echo "make bench-versioning  versioned vs unversioned buckets; ListObjectVersions at 1k-100k"
	@echo "make bench-lifecycle   GET 4 KiB while the lifecycle scanner walks a bucket vs idle"
	@echo "make docs-graphs    redraw docs/architecture/*.dot|svg from the code's imports"
	@echo "make deps       system packages + .venv + editable install (done by the targets above)"

deps: $(DEPS_STAMP)

$(DEPS_STAMP): $(DEPS_INPUTS)
	@$(MAKE) --no-print-directory apt
	@if [ ! -x $(PY) ]; then echo "creating $(VENV)"; $(PYTHON) -m venv $(VENV); fi
	$(PY) -m pip install --quiet --upgrade pip "setuptools>=64" wheel "Cython>=3"
	$(PY) -m pip install --quiet -e '.[test]'
	@touch $@

# `apt-get update` runs once, and only when something is missing.
apt:
	@missing=""; \
	for p in $(APT_PACKAGES); do \
		dpkg -s "$$p" >/dev/null 2>&1 || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
		echo "installing:$$missing"; \
		$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get update -q; \
		$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $$missing; \
	fi

serve: deps
	exec $(PY) -m rs3gw

lint: deps
	$(VENV)/bin/ruff check src tests ci benchmarks
	$(VENV)/bin/mypy src/rs3gw

# The whole suite on the default build, then again on the reference core and on the thread I/O
# backend, so neither alternative path rots (each is a supported configuration).
test: lint
	$(PY) -m pytest -q
	@$(MAKE) --no-print-directory matrix

test-fast: lint
	$(PY) -m pytest -q $(PYTEST_FAST)

# Compiled-core micro-benchmarks: each prints its ratio against the baseline measured in the same run.
bench-core: deps
	$(PY) -m pytest -q -s -p no:cacheprovider benchmarks/bench_hashing.py benchmarks/bench_chunked.py \
		benchmarks/bench_batch.py --benchmark-only
	$(PY) benchmarks/bench_directio.py --runs 3

# End-to-end load runs (rs3gw vs nginx, moto and 2-core MD5, all in the same run; about 5 minutes):
# writes benchmarks/results/e2e.json and e2e.png and prints the ratio table. E2E_ARGS passes options.
bench: deps
	ci/bench-setup.sh $(PY)
	$(PY) benchmarks/e2e.py $(E2E_ARGS)

# Versioned against unversioned buckets of one server, and ListObjectVersions page times from 1k
# to 100k versions (writes benchmarks/results/versioning.json; about 10 minutes).
bench-versioning: deps
	$(PY) benchmarks/bench_versioning.py $(BENCH_ARGS)

bench-lifecycle: deps
	$(PY) benchmarks/bench_lifecycle.py $(BENCH_ARGS)

# A 3-node cluster on this machine, settings A against B (e.g. BENCH_ARGS="--a PYTHONPATH=/old/src").
bench-cluster: deps
	$(PY) benchmarks/bench_cluster.py $(BENCH_ARGS)

# The architecture pictures in docs/ARCHITECTURE.md, from the imports (tests/unit/test_layers.py
# fails when the .dot files fall behind the code). Graphviz is only needed to render the SVGs.
docs-graphs:
	@command -v dot >/dev/null || $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
		--no-install-recommends graphviz
	@for g in layers cluster; do \
		$(PYTHON) ci/importgraph.py --dot $$g > docs/architecture/$$g.dot; \
		dot -Tsvg docs/architecture/$$g.dot -o docs/architecture/$$g.svg; \
	done

# Integration servers inherit the environment, so each variable reaches them too. Both passes run
# even if the first fails; the target fails if either did.
test-matrix: lint
	@$(MAKE) --no-print-directory matrix MATRIX_SELECT='$(PYTEST_FAST)'

# The default (what `make test` and CI run): the whole suite except the multi-process cluster tests,
# which exercise node-to-node logic the core variants do not change and already ran once.
MATRIX_SELECT ?= -m "not cluster_procs"
matrix:
	@rc=0; \
	echo "== suite $(MATRIX_SELECT), RS3GW_CORE=reference"; \
	RS3GW_CORE=reference $(PY) -m pytest -q $(MATRIX_SELECT) || rc=1; \
	echo "== suite $(MATRIX_SELECT), RS3GW_IO_BACKEND=threads"; \
	RS3GW_IO_BACKEND=threads $(PY) -m pytest -q $(MATRIX_SELECT) || rc=1; \
	exit $$rc

build: deps
	$(PY) setup.py --quiet build_ext --inplace

clean:
	rm -rf build src/*.egg-info $(DEPS_STAMP)
	find src/rs3gw -name '*.so' -delete
