"""The paths under test: the upstream stub (direct), LISA (internal and third_party) and the LiteLLM proxy."""

from __future__ import annotations

import importlib.metadata
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path

from bench.loadgen import Target
from bench.processes import BASE_ENV, REPO, Managed, Processes, free_port, http

LITELLM_VENV = Path.home() / ".cache" / "lisa-bench" / "litellm-venv"
LITELLM_MASTER_KEY = "sk-bench-master-key"
MODEL = "bench"  # the stub answers at once
SLOW_MODEL = "bench-slow"  # the stub pauses SLOW_DELAY_MS after a stream's first event (for TTFT)
SLOW_DELAY_MS = 10
# LISA registers the stub's two models twice: as internal models (pass-through) under their own names, and as
# third_party models (LiteLLM Router in-process, provider "openai") under these names.
ROUTER_MODELS = {MODEL: "bench-router", SLOW_MODEL: "bench-slow-router"}


@dataclass(frozen=True)
class Stub:
    port: int
    slow_port: int

    def upstreams(self) -> dict[str, str]:
        """Model name -> OpenAI base URL, as the gateways register them."""
        return {
            MODEL: f"http://127.0.0.1:{self.port}/v1",
            SLOW_MODEL: f"http://127.0.0.1:{self.slow_port}/v1",
        }

    def received(self) -> int:
        """Chat completion requests the stub has received so far, on both ports (its ``GET /_count``)."""
        status, text = http("GET", f"http://127.0.0.1:{self.port}/_count")
        if status != 200:
            raise RuntimeError(f"the stub's GET /_count gave {status}: {text[:200]}")
        return sum(int(n) for n in json.loads(text)["chat_completions"].values())


Targets = tuple[Target, Target]  # (answers at once, pauses after the first event)


def start_stub(procs: Processes, impl: str = "raw") -> tuple[Stub, Targets]:
    stub = Stub(free_port(), free_port())
    cmd = [sys.executable, str(REPO / "bench" / "upstream_stub.py"), "--impl", impl, "--port", str(stub.port)]
    cmd += ["--slow-port", str(stub.slow_port), "--slow-delay-ms", str(SLOW_DELAY_MS)]
    process = procs.start("stub", cmd)
    process.wait_ready(f"http://127.0.0.1:{stub.port}/health", 30)
    process.wait_ready(f"http://127.0.0.1:{stub.slow_port}/health", 5)
    fast = Target("direct", f"http://127.0.0.1:{stub.port}", MODEL)
    return stub, (fast, Target("direct", f"http://127.0.0.1:{stub.slow_port}", SLOW_MODEL))


def ensure_litellm_venv() -> Path:
    """The LiteLLM proxy lives in its own venv (created on first use) so the project venv stays lean."""
    exe = LITELLM_VENV / "bin" / "litellm"
    python = LITELLM_VENV / "bin" / "python"
    if (
        exe.exists()
        and subprocess.run(
            [python, "-c", "import litellm.proxy.proxy_server"],
            env={**os.environ, **BASE_ENV},
            capture_output=True,
        ).returncode
        == 0
    ):
        return exe
    print(f"[bench] creating {LITELLM_VENV} with litellm[proxy] (first run only, ~2 min)", flush=True)
    LITELLM_VENV.parent.mkdir(parents=True, exist_ok=True)
    base = getattr(sys, "_base_executable", sys.executable)
    subprocess.run([base, "-m", "venv", "--clear", str(LITELLM_VENV)], check=True)
    subprocess.run([python, "-m", "pip", "install", "-q", "litellm[proxy]"], check=True)
    return exe


def litellm_version() -> str:
    """The LiteLLM installed in the proxy's venv."""
    python = LITELLM_VENV / "bin" / "python"
    if not python.exists():
        return "?"
    out = subprocess.run(
        [python, "-c", "import importlib.metadata as m; print(m.version('litellm'))"],
        capture_output=True,
        text=True,
    )
    return out.stdout.strip() or "?"


def lisa_litellm_version() -> str:
    """The LiteLLM in LISA's venv (the one running the benchmark and ``lisa serve``): its third_party Router."""
    try:
        return importlib.metadata.version("litellm")
    except importlib.metadata.PackageNotFoundError:
        return "?"


def start_litellm(procs: Processes, stub: Stub, work: Path) -> tuple[Managed, Targets]:
    exe = ensure_litellm_venv()
    port = free_port()
    config = work / "litellm.yaml"
    lines = ["model_list:"]
    for name, url in stub.upstreams().items():
        lines += [f"  - model_name: {name}", "    litellm_params:", f"      model: openai/{name}"]
        lines += [f"      api_base: {url}", "      api_key: sk-stub"]
    # No database: the master key alone authenticates (virtual keys and spend logs would need one).
    lines += ["general_settings:", f"  master_key: {LITELLM_MASTER_KEY}"]
    config.write_text("\n".join(lines) + "\n")
    cmd = [str(exe), "--config", str(config), *f"--host 127.0.0.1 --port {port} --num_workers 1".split()]
    proxy = procs.start("litellm", cmd)
    proxy.wait_ready(f"http://127.0.0.1:{port}/health/readiness", 180)
    fast = Target("litellm", f"http://127.0.0.1:{port}", MODEL, LITELLM_MASTER_KEY)
    return proxy, (fast, replace(fast, model=SLOW_MODEL))


def lisa_exe() -> Path:
    """``lisa`` from the venv running the benchmark (``.venv/bin/python -m bench.gateway``: the repo's)."""
    return Path(sys.executable).parent / "lisa"


def lisa_unavailable() -> str:
    """Why ``lisa serve`` cannot run here, or '' when it can."""
    if not (REPO / "backend" / "main.py").exists():
        return "backend/main.py does not exist yet"
    if not lisa_exe().exists():
        return f"{lisa_exe()} does not exist (run scripts/install.sh)"
    out = subprocess.run(
        [lisa_exe(), "serve", "--help"],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **BASE_ENV},
    )
    if out.returncode != 0:
        return f"`lisa serve --help` failed: {(out.stderr or out.stdout).strip().splitlines()[-1:]}"
    return ""


def start_lisa(procs: Processes, stub: Stub, workers: int, data_dir: Path) -> tuple[Managed, Targets]:
    port = free_port()
    flags = f"--no-local-models --host 127.0.0.1 --port {port} --workers {workers}".split()
    cmd = [str(lisa_exe()), "serve", *flags, "--data-dir", str(data_dir)]
    # No LISA_DATABASE_URL: LISA starts its embedded PostgreSQL under the data dir. SIGINT is Ctrl-C.
    server = procs.start(f"lisa-w{workers}", cmd, unset=("LISA_DATABASE_URL",), stop_signal=signal.SIGINT)
    base = f"http://127.0.0.1:{port}"
    server.wait_ready(f"{base}/health", 300)
    token_file = data_dir / "admin-token"
    deadline = time.monotonic() + 30
    while not token_file.exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    token = token_file.read_text().strip()
    for name, url in stub.upstreams().items():
        internal = {"id": name, "type": "textgen", "hosting": "internal", "base_url": url, "streaming": True}
        third_party = {
            "id": ROUTER_MODELS[name],
            "type": "textgen",
            "hosting": "third_party",
            "provider_model": f"openai/{name}",
            "base_url": url,
            "api_key": "sk-stub",
            "streaming": True,
        }
        for model in (internal, third_party):
            status, text = http("POST", f"{base}/api/models", model, token)
            if status == 409:  # a data dir reused from an earlier start: replace the entry
                http("DELETE", f"{base}/api/models/{model['id']}", token=token)
                status, text = http("POST", f"{base}/api/models", model, token)
            if status != 201:
                raise RuntimeError(f"registering the stub in LISA gave {status}: {text[:500]}")
    fast = Target("lisa", base, MODEL, token)
    return server, (fast, replace(fast, model=SLOW_MODEL))


def router_targets(targets: Targets) -> Targets:
    """The same LISA, through the stub's third_party registrations (path ``lisa-router``)."""
    return (
        replace(targets[0], name="lisa-router", model=ROUTER_MODELS[targets[0].model]),
        replace(targets[1], name="lisa-router", model=ROUTER_MODELS[targets[1].model]),
    )


def lisa_metered(targets: Targets) -> int | None:
    """Requests LISA's ``GET /api/usage`` counts (last day) for the targets' models, or None."""
    models = {t.model for t in targets}
    try:
        status, text = http("GET", f"{targets[0].base_url}/api/usage?group_by=model", token=targets[0].api_key)
        rows = json.loads(text).get("rows", []) if status == 200 else None
    except (OSError, ValueError):
        return None
    if rows is None:
        return None
    return sum(int(r.get("requests", 0)) for r in rows if r.get("model") in models)
