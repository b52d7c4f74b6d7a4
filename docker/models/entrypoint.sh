#!/bin/sh
# Entrypoint of LISA's model images: mirror the model's weights from S3 to local disk (s5cmd sync: files that
# are already there and unchanged are skipped, so a restart on the same instance is quick), then replace this
# shell with the inference server named by LISA_ENGINE, listening on 0.0.0.0:$PORT.
#
#   LISA_ENGINE             vllm | tgi | tei (set by each image)
#   LISA_WEIGHTS_S3_URI     s3://bucket/prefix/ holding the model files (config.json, *.safetensors, tokenizer...)
#   LISA_MODEL_DIR          local copy (default /models/$LISA_MODEL_ID)
#   LISA_SERVED_MODEL_NAME  name clients send as "model" (vLLM; default $LISA_MODEL_ID)
#   LISA_GPU_COUNT          GPUs given to the task; vLLM shards over them (tensor parallel) unless told otherwise
#   LISA_SERVER_ARGS        extra server arguments, split on spaces; arguments given to the container follow them
#   LISA_SYNC_WORKERS       parallel S3 transfers (default 64)
#   PORT                    listening port (default 8080)
set -eu

log() { printf '%s lisa-model: %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$*" >&2; }
fail() { log "$2"; exit "$1"; }

engine=${LISA_ENGINE:-}
src=${LISA_WEIGHTS_S3_URI:-}
case "$engine" in
  vllm | tgi | tei) ;;
  *) fail 64 "LISA_ENGINE must be vllm, tgi or tei, not '${engine}'" ;;
esac
case "$src" in
  s3://?*) ;;
  *) fail 64 "LISA_WEIGHTS_S3_URI must be an s3:// URI, not '${src}'" ;;
esac
model_id=${LISA_MODEL_ID:-model}
model_dir=${LISA_MODEL_DIR:-/models/${model_id}}
served=${LISA_SERVED_MODEL_NAME:-$model_id}
port=${PORT:-8080}
gpus=${LISA_GPU_COUNT:-1}
src=${src%/}/

mkdir -p "$model_dir"
if [ -n "${HOME:-}" ]; then mkdir -p "$HOME"; fi
log "syncing ${src} to ${model_dir}"
s5cmd --numworkers "${LISA_SYNC_WORKERS:-64}" sync --delete "${src}*" "${model_dir}/" || fail 69 "weights sync from ${src} failed"
[ -f "${model_dir}/config.json" ] || fail 66 "no config.json under ${src}: not a model directory"
log "weights ready; starting ${engine} on port ${port}"

# LISA_SERVER_ARGS is split on whitespace on purpose, and never glob-expanded.
set -f
# shellcheck disable=SC2086
set -- ${LISA_SERVER_ARGS:-} "$@"
set +f
case "$engine" in
  vllm)
    case " $* " in
      *" --tensor-parallel-size"* | *" -tp "*) ;;
      *) if [ "$gpus" -gt 1 ]; then set -- --tensor-parallel-size "$gpus" "$@"; fi ;;
    esac
    exec vllm serve "$model_dir" --host 0.0.0.0 --port "$port" --served-model-name "$served" "$@"
    ;;
  tgi) exec text-generation-launcher --model-id "$model_dir" --hostname 0.0.0.0 --port "$port" "$@" ;;
  tei) exec text-embeddings-router --model-id "$model_dir" --hostname 0.0.0.0 --port "$port" "$@" ;;
esac
