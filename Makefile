# Set-up, the main job and the tests. `make help` lists the targets.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: help setup python-env test-servers demo test lint unit integration bench clean image

help:
	@echo "make setup   install kubejobs with its dev tools in .venv, and build the test servers"
	@echo "make demo    bring up a local cluster with a real node, Colonies and the executor; run"
	@echo "             examples/hello-world.json through them; Ctrl-C takes it all down (root)"
	@echo "make test    set up, then lint, type-check and run every test (unit and integration)"
	@echo "make bench   run the render benchmark"
	@echo "make image   build the kubejobs image without Docker (OCI archive in .testenv/images/kubejobs.tar)"

setup: python-env test-servers

# Reinstall only when the package metadata changes.
python-env: $(STAMP)
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

# Real servers for the integration tests, built from pinned Go modules into .testenv/.
# The image build's pip is $(PYTHON)'s, not .venv's: `make -j2` runs this beside
# python-env, which may be upgrading .venv's pip at the time.
test-servers:
	PYTHON=$(PYTHON) testenv/install.sh

# The whole path on this machine (testenv/demo.py): control plane, the real node, the real
# Colonies server and the executor; submits examples/hello-world.json with the real colonies
# CLI and follows its log. It stays up until Ctrl-C, which takes everything down.
demo: setup
	$(BIN)/python -m testenv.demo

lint: python-env
	$(BIN)/ruff check kubejobs tests testenv benchmarks
	$(BIN)/ruff format --check kubejobs tests testenv benchmarks
	$(BIN)/mypy
	$(BIN)/lint-imports

unit: python-env
	$(BIN)/pytest tests/unit

# Tests run on TEST_WORKERS pytest-xdist workers, a test file per worker at a time;
# each worker starts servers of its own (tests/integration/conftest.py). Most of a
# test's time is waiting (deadlines, grace periods, outages), so 4 workers keep 2
# cores busy. Ends with the ten slowest tests and the wall time of the whole target
# (set-up included), so everyone sees what a change costs. The Python environment
# and the servers' build run side by side (-j2), and lint beside the servers' build:
# on a fresh clone that saves about a minute of set-up; a lint failure still stops
# the target before any test runs.
TEST_WORKERS ?= 4
test:
	@start=$$(date +%s); rc=0; \
	$(MAKE) --no-print-directory -j2 setup lint && \
	$(BIN)/pytest -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder --durations=10 || rc=$$?; \
	echo "make test: $$(( $$(date +%s) - start )) s wall (set-up, lint and pytest), exit $$rc"; \
	exit $$rc

# Same contents as the Dockerfile (both run images/kubejobs/rootfs.sh); needs root.
image: python-env
	images/build.sh kubejobs

bench: python-env
	$(BIN)/python benchmarks/render/bench_render.py

clean:
	rm -rf $(VENV) .testenv .mypy_cache .ruff_cache .pytest_cache .hypothesis
