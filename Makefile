# The README's two commands: `make demo` and `make test`. Both set everything up themselves.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
# Python to build the venv with (3.10 or 3.11; the local torch wheel is for 3.11).
PYTHON ?= python3
CONSTRAINTS := constraints.txt
STAMP := $(VENV)/.installed

.PHONY: setup demo demo-real test lint types layers pytest bench clean setup-compat test-compat sync-crds control-plane gpu-check mutation world-model

setup: $(STAMP)

# Reinstall only when the dependency set changes: the stamp is newer than both files otherwise.
$(STAMP): pyproject.toml $(CONSTRAINTS)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip setuptools wheel
	# torch first, from its exact pin: an unpinned resolve would fetch a multi-GB CUDA build.
	$(PIP) install -q -c $(CONSTRAINTS) torch
	$(PIP) install -q -c $(CONSTRAINTS) -e '.[dev]'
	# Read (never imported) by the Neuron API contract test; its deps need torch-neuronx, hence --no-deps.
	$(PIP) install -q --no-deps -c $(CONSTRAINTS) optimum-neuron
	touch $(STAMP)

demo: setup
	$(VENV)/bin/sdxl-operator sandbox

# The same demo on the real control plane (built on first use; see control-plane below).
demo-real: setup control-plane
	$(VENV)/bin/sdxl-operator sandbox --control-plane real

# kube-apiserver, kube-controller-manager, kube-scheduler, kubectl and etcd, built from their Go modules
# (pins in tools/control-plane/go.mod) into ~/.cache/sdxl-operator/control-plane/<versions>/, once.
control-plane:
	bash tools/control-plane/build.sh

lint: setup
	$(VENV)/bin/ruff check contract operator workloads sandbox tests bench

types: setup
	$(VENV)/bin/mypy

layers: setup
	$(VENV)/bin/lint-imports

pytest: setup control-plane
	$(VENV)/bin/pytest

test: lint types layers pytest test-compat

# A second environment with the Neuron image's library versions (diffusers 0.35, transformers 4.57,
# peft 0.17): the workload code that also runs there is tested against them (tests marked compat).
COMPAT_VENV := .venv-compat
COMPAT_CONSTRAINTS := constraints-compat.txt
COMPAT_STAMP := $(COMPAT_VENV)/.installed
COMPAT_TESTS ?= tests/sdxl_workloads tests/sdxl_contract

setup-compat: $(COMPAT_STAMP)

$(COMPAT_STAMP): pyproject.toml $(COMPAT_CONSTRAINTS)
	test -x $(COMPAT_VENV)/bin/python || $(PYTHON) -m venv $(COMPAT_VENV)
	$(COMPAT_VENV)/bin/pip install -q --upgrade pip setuptools wheel
	$(COMPAT_VENV)/bin/pip install -q -c $(COMPAT_CONSTRAINTS) torch
	$(COMPAT_VENV)/bin/pip install -q -c $(COMPAT_CONSTRAINTS) -e '.[train,serve]' \
		pytest pytest-timeout pytest-asyncio hypothesis httpx schemathesis 'moto[server]'
	touch $(COMPAT_STAMP)

# Its own model cache: the embedded model built under other library versions differs byte for byte.
test-compat: setup-compat
	SDXL_CACHE_DIR=$(CURDIR)/$(COMPAT_VENV)/sdxl-cache $(COMPAT_VENV)/bin/pytest -m compat $(COMPAT_TESTS)

bench: setup
	$(PY) bench/run_all.py

# On a machine with an NVIDIA GPU: full-size SDXL (random weights, no hub) trained at 1024 px in bf16,
# prepared and served; s/step, peak GPU memory against 24 GB, images/s at batch 1 and 4. Exits 2,
# saying why, where CUDA is absent. SDXL_REFERENCE_SCRIPT / SDXL_REFERENCE_PYTHON add diffusers'
# reference trainer side by side (bench/README.md).
gpu-check: setup
	$(PY) bench/gpu_check.py $(GPU_CHECK_ARGS)

# Mutation testing with cosmic-ray over the training loop, storage writes, status functions and
# server core, in a copy of the tree (slow; not part of `make test`). MUTATION_ARGS="--sample 40"
# tests a random subset per target.
mutation: setup
	$(PY) bench/mutation.py $(MUTATION_ARGS)

# Re-pretrain builtin:world (the shipped model under workloads/sdxl_workloads/builtin/world_model/) on one
# CPU thread, about 40 minutes; WORLD_MODEL_OUT elsewhere to keep the shipped copy.
WORLD_MODEL_OUT ?= workloads/sdxl_workloads/builtin/world_model
world-model: setup
	rm -rf $(WORLD_MODEL_OUT)
	$(PY) -m sdxl_workloads.builtin.world_pretraining --out $(WORLD_MODEL_OUT)

# The Helm chart ships byte-identical copies of crds/ (a test checks); run after editing a CRD.
sync-crds:
	mkdir -p charts/sdxl-operator/crds
	rm -f charts/sdxl-operator/crds/*.yaml
	cp crds/*.yaml charts/sdxl-operator/crds/
	# The contract package ships the same CRDs: both sides validate and default against them.
	mkdir -p contract/sdxl_contract/crds
	rm -f contract/sdxl_contract/crds/*.yaml
	cp crds/*.yaml contract/sdxl_contract/crds/

clean:
	rm -rf $(VENV) $(COMPAT_VENV) .sandbox demo-output .pytest_cache .mypy_cache .ruff_cache
