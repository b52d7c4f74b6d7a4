#!/usr/bin/env bash
# Installs everything LISA needs into ./.venv: system packages (when missing), Python packages, local models.
# Idempotent: a second run with unchanged inputs returns in about a second.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
VENV="$ROOT/.venv"
PY=${LISA_PYTHON:-python3}

log() { printf '\033[1;34m[install]\033[0m %s\n' "$*"; }

need_apt=()
command -v "$PY" >/dev/null 2>&1 || need_apt+=(python3 python3-venv python3-dev)
if command -v "$PY" >/dev/null 2>&1 && ! "$PY" -c 'import venv, ensurepip' >/dev/null 2>&1; then
  need_apt+=(python3-venv)
fi
command -v gcc >/dev/null 2>&1 || need_apt+=(build-essential)
command -v cmake >/dev/null 2>&1 || need_apt+=(cmake)
command -v curl >/dev/null 2>&1 || need_apt+=(curl)
# The browser tests (tests/frontend) drive Debian's chromium through Playwright; never `playwright install`.
[ -x /usr/bin/chromium ] || need_apt+=(chromium)
if [ ${#need_apt[@]} -gt 0 ]; then
  log "apt packages: ${need_apt[*]}"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}"
fi

stamp_src=$(cat pyproject.toml scripts/install.sh | sha256sum | cut -c1-16)
if [ -x "$VENV/bin/python" ] && [ "$(cat "$VENV/.lisa-installed" 2>/dev/null)" = "$stamp_src" ]; then
  exit 0
fi

[ -x "$VENV/bin/python" ] || { log "creating $VENV"; "$PY" -m venv "$VENV"; }
PIP=("$VENV/bin/python" -m pip)
"${PIP[@]}" install -q --upgrade pip

pip_args=()
# A prebuilt llama-cpp-python wheel saves a ~8 minute compile; use it when the workplace provides one.
for d in "$ROOT/../shared/wheels" "${LISA_WHEELS:-}"; do
  [ -n "$d" ] && [ -d "$d" ] && pip_args+=(--find-links "$d")
done
export CMAKE_ARGS=${CMAKE_ARGS:-"-DGGML_NATIVE=OFF"}

# PyTorch: without a GPU take the CPU build (PyPI's default Linux wheel is the multi-GB CUDA one),
# unless a local wheel of the pinned version is already reachable through pip's configuration.
if ! command -v nvidia-smi >/dev/null 2>&1 \
   && ! "${PIP[@]}" download -q --no-deps --no-index -d "$(mktemp -d)" torch==2.13.0 >/dev/null 2>&1; then
  pip_args+=(--extra-index-url "${LISA_TORCH_INDEX:-https://download.pytorch.org/whl/cpu}")
fi

log "pip install (first run: a few minutes)"
"${PIP[@]}" install -q "${pip_args[@]}" -e ".[local-models,test]"
echo "$stamp_src" > "$VENV/.lisa-installed"
log "done: $VENV"
