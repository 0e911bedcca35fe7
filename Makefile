# The contributor's task runner: one package's tests and checks without the full scripts/test.sh.
# `make help` lists the targets. It only drives the tools that `make setup` (scripts/setup.sh) puts in .venv;
# CI runs `make all`'s script, scripts/test.sh, directly.

SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help

VENV := $(CURDIR)/.venv
PY := $(VENV)/bin/python
PACKAGES := $(sort $(notdir $(wildcard packages/*)))
LINT_PATHS := packages tests scripts benchmarks examples docs
#: one package folder under packages/ (or several, quoted): make test PKG=xl-comm, make check PKG="xl-comm xl-cache"
PKG ?=
#: what test-cross runs: the whole of tests/, or a part: make test-cross TESTS=tests/integration/test_cache.py
TESTS ?= tests
#: passed on to pytest or the benchmark: make test PKG=xl-comm ARGS="-k hub -x", make bench ARGS=--quick
ARGS ?=

# Bad PKG stops make before anything runs, naming the value, the rule and the fix.
need_pkg = $(if $(strip $(PKG)),$(if $(filter-out $(PACKAGES),$(PKG)),$(error PKG='$(PKG)': \
	'$(filter-out $(PACKAGES),$(PKG))' is not a folder of packages/; PKG must name one or more of: $(PACKAGES) \
	(e.g. make $@ PKG=xl-comm))),$(error PKG is not set: make $@ needs the package to work on (one or more \
	of: $(PACKAGES)); e.g. make $@ PKG=xl-comm))
need_venv = if [ ! -x "$(PY)" ]; then echo "make: $(PY) is missing; run make setup first" >&2; exit 2; fi

.PHONY: help setup test test-cross check lint format layers isolation install-check slurm-up slurm-down slurm-status bench all

help:
	@echo "make setup                  create .venv from uv.lock (scripts/setup.sh)"
	@echo "make test PKG=xl-comm       that package's tests (ARGS=... goes to pytest)"
	@echo "make test-cross             the cross-package tests in tests/ (TESTS=tests/crash for a part)"
	@echo "make check PKG=xl-comm      ruff, format check and mypy --strict for that package"
	@echo "make lint                   ruff, format check and mypy --strict for everything test.sh checks"
	@echo "make format                 ruff --fix and ruff format (writes files)"
	@echo "make layers                 import-linter contracts and the workspace consistency check"
	@echo "make isolation              each xl-* wheel alone in a fresh venv, with its own tests"
	@echo "make install-check          pip install executorlib / executorlib[all] from the built wheels, then a workflow"
	@echo "make slurm-up / slurm-down / slurm-status   the single-node SLURM test cluster (root)"
	@echo "make bench                  the benchmark table (ARGS=--quick for a short run)"
	@echo "make all                    everything CI runs: scripts/test.sh"
	@echo "packages: $(PACKAGES)"

setup:
	bash scripts/setup.sh

test:
	$(need_pkg)
	@$(need_venv)
	$(PY) -m pytest -q -p no:randomly $(foreach p,$(PKG),packages/$(p)/tests) $(ARGS)

test-cross:
	@$(need_venv)
	$(PY) -m pytest -q -p no:randomly $(TESTS) $(ARGS)

check:
	$(need_pkg)
	@$(need_venv)
	$(VENV)/bin/ruff check $(foreach p,$(PKG),packages/$(p))
	$(VENV)/bin/ruff format --check $(foreach p,$(PKG),packages/$(p))
	for p in $(PKG); do (cd "packages/$$p" && "$(VENV)/bin/mypy" --strict src); done

lint:
	@$(need_venv)
	$(VENV)/bin/ruff check $(LINT_PATHS)
	$(VENV)/bin/ruff format --check $(LINT_PATHS)
	for p in $(PACKAGES); do (cd "packages/$$p" && "$(VENV)/bin/mypy" --strict src); done

format:
	@$(need_venv)
	$(VENV)/bin/ruff check --fix $(LINT_PATHS)
	$(VENV)/bin/ruff format $(LINT_PATHS)

layers:
	@$(need_venv)
	$(VENV)/bin/lint-imports
	$(PY) scripts/check_workspace.py

isolation:
	bash scripts/isolation.sh

install-check:
	bash scripts/install_check.sh

slurm-up:
	bash scripts/slurm-cluster.sh start

slurm-down:
	bash scripts/slurm-cluster.sh stop

slurm-status:
	bash scripts/slurm-cluster.sh status

bench:
	@$(need_venv)
	$(PY) -m benchmarks $(ARGS)

all:
	bash scripts/test.sh
