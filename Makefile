# The README's two commands: `make demo` and `make test`. Both set everything up themselves.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
# Python to build the venv with (3.10 or 3.11; the local torch wheel is for 3.11).
PYTHON ?= python3
CONSTRAINTS := constraints.txt
STAMP := $(VENV)/.installed

.PHONY: setup demo test lint types layers pytest bench clean sync-crds

setup: $(STAMP)

# Reinstall only when the dependency set changes: the stamp is newer than both files otherwise.
$(STAMP): pyproject.toml $(CONSTRAINTS)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip setuptools wheel
	# torch first, from its exact pin: an unpinned resolve would fetch a multi-GB CUDA build.
	$(PIP) install -q -c $(CONSTRAINTS) torch
	$(PIP) install -q -c $(CONSTRAINTS) -e '.[dev]'
	touch $(STAMP)

demo: setup
	$(VENV)/bin/sdxl-operator sandbox

lint: setup
	$(VENV)/bin/ruff check operator workloads tests bench

types: setup
	$(VENV)/bin/mypy

layers: setup
	$(VENV)/bin/lint-imports

pytest: setup
	$(VENV)/bin/pytest

test: lint types layers pytest

bench: setup
	$(PY) bench/run_all.py

# The Helm chart ships byte-identical copies of crds/ (a test checks); run after editing a CRD.
sync-crds:
	mkdir -p charts/sdxl-operator/crds
	rm -f charts/sdxl-operator/crds/*.yaml
	cp crds/*.yaml charts/sdxl-operator/crds/

clean:
	rm -rf $(VENV) demo-output .pytest_cache .mypy_cache .ruff_cache
