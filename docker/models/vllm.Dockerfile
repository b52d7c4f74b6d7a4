# syntax=docker/dockerfile:1.7
# LISA model image: vLLM (OpenAI-compatible text generation), FROM the official image.
# Its entrypoint mirrors the weights from S3 (LISA_WEIGHTS_S3_URI) to /models, then starts the server on $PORT.
# Build with this folder as the context:
#   docker build -f docker/models/vllm.Dockerfile -t lisa-vllm:0.11.0 docker/models
# Bases are pinned by exact tag; pin them by digest too when you build (docker buildx imagetools inspect).
FROM peakcom/s5cmd:v2.3.0 AS s5cmd

FROM vllm/vllm-openai:v0.11.0
USER root
# curl: the health checks (HEALTHCHECK here, the ECS container health check in model.yaml).
RUN apt-get update \
 && apt-get install -y --no-install-recommends curl ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && (getent passwd 1000 >/dev/null || useradd --uid 1000 --user-group --create-home --shell /usr/sbin/nologin lisa) \
 && install -d -o 1000 -g 1000 /models
COPY --from=s5cmd /s5cmd /usr/local/bin/s5cmd
COPY --chmod=0755 entrypoint.sh /usr/local/bin/lisa-model-entrypoint
ENV LISA_ENGINE=vllm \
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
