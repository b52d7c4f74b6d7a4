# syntax=docker/dockerfile:1.7
# LISA model image: Text Embeddings Inference (TEI), Ampere 8.6 build (g5: A10G), FROM the official image.
# Its entrypoint mirrors the weights from S3 (LISA_WEIGHTS_S3_URI) to /models, then starts the server on $PORT.
# Build with this folder as the context:
#   docker build -f docker/models/tei.Dockerfile -t lisa-tei:1.8 docker/models
# Bases are pinned by tag; pin them by digest too when you build (docker buildx imagetools inspect). TEI tags its
# per-GPU builds by minor version: 86-1.8 is for Ampere 8.6 (A10G, g5); use 89-1.8 for L4 (g6), hopper-1.8 for
# H100 (p5), 1.8 for A100 (p4d), cpu-1.8 without a GPU.
FROM peakcom/s5cmd:v2.3.0 AS s5cmd

FROM ghcr.io/huggingface/text-embeddings-inference:86-1.8
USER root
# curl: the health checks (HEALTHCHECK here, the ECS container health check in model.yaml).
RUN apt-get update \
 && apt-get install -y --no-install-recommends curl ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && (getent passwd 1000 >/dev/null || useradd --uid 1000 --user-group --create-home --shell /usr/sbin/nologin lisa) \
 && install -d -o 1000 -g 1000 /models
COPY --from=s5cmd /s5cmd /usr/local/bin/s5cmd
COPY --chmod=0755 entrypoint.sh /usr/local/bin/lisa-model-entrypoint
ENV LISA_ENGINE=tei \
    PORT=8080 \
    HOME=/models/.home \
    HF_HOME=/models/.cache/huggingface \
    HF_HUB_OFFLINE=1
USER 1000:1000
EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=10s --start-period=900s --retries=5 \
  CMD curl -fsS -o /dev/null "http://127.0.0.1:${PORT}/health" || exit 1
ENTRYPOINT ["/usr/local/bin/lisa-model-entrypoint"]
CMD []
