# syntax=docker/dockerfile:1.7
# LISA backend + UI (the `lisa serve` process). Build from the repository root:
#   docker build -f docker/backend.Dockerfile -t lisa-backend:0.1.0 .
# Package set: scripts/install.sh's runtime set, i.e. `pip install ".[local-models]"` (its `test` extra is left
# out), with PyTorch's CPU wheels, so the same image also runs the local llama.cpp and embedding servers.
# For an AWS-only image without them (the core stack sets LISA_LOCAL_MODELS=false): --build-arg LISA_EXTRAS=
# The base is pinned by exact version; pin it by digest too when you build (docker buildx imagetools inspect).
ARG PYTHON_IMAGE=python:3.11.13-slim-bookworm

FROM ${PYTHON_IMAGE} AS builder
ARG LISA_EXTRAS=local-models
ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    CMAKE_ARGS="-DGGML_NATIVE=OFF"
# Compilers live in this stage only: llama-cpp-python builds from source.
RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential cmake \
 && rm -rf /var/lib/apt/lists/*
RUN python -m venv /opt/lisa && /opt/lisa/bin/pip install --upgrade pip
WORKDIR /src
COPY pyproject.toml README.md ./
COPY backend ./backend
COPY frontend ./frontend
COPY ingestion ./ingestion
RUN /opt/lisa/bin/pip install --extra-index-url "${TORCH_INDEX}" ".[${LISA_EXTRAS}]"

FROM ${PYTHON_IMAGE} AS runtime
# Production mode, listening on every address: it refuses to start without real LISA_SECRET_KEY and
# LISA_ENCRYPTION_KEY (pass them at run time; never bake them in).
# libgomp1: OpenMP runtime of llama.cpp. No compilers, no build tools.
RUN apt-get update \
 && apt-get install -y --no-install-recommends libgomp1 \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 lisa \
 && useradd --system --uid 10001 --gid lisa --home-dir /app --shell /usr/sbin/nologin lisa \
 && install -d -o lisa -g lisa -m 0750 /data
COPY --from=builder /opt/lisa /opt/lisa
# The model stack template the backend instantiates once per self-hosted model (LISA_AWS_MODEL_TEMPLATE).
COPY deploy/cloudformation/model.yaml /app/deploy/cloudformation/model.yaml
COPY --chmod=0755 docker/backend-entrypoint.sh /usr/local/bin/lisa-entrypoint
ENV PATH=/opt/lisa/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    LITELLM_LOCAL_MODEL_COST_MAP=True \
    HF_HUB_OFFLINE=1 \
    XDG_CACHE_HOME=/data/.cache \
    HF_HOME=/data/.cache/huggingface \
    LISA_ENVIRONMENT=production \
    LISA_HOST=0.0.0.0 \
    LISA_PORT=8080 \
    LISA_ALLOW_REMOTE=true \
    LISA_DATA_DIR=/data
WORKDIR /app
USER 10001:10001
EXPOSE 8080
VOLUME ["/data"]
HEALTHCHECK --interval=15s --timeout=5s --start-period=120s --retries=3 \
  CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/health' % os.environ.get('LISA_PORT', '8080'), timeout=4)"]
ENTRYPOINT ["lisa-entrypoint"]
CMD ["lisa", "serve"]
