"""`lisa models deploy/update/enable/disable/delete/events/logs`.

What the running server answers today (register, update, delete) is run as a user runs it, against the session's
`lisa serve`; the lifecycle routes (a deployment, enable, disable, events, logs) are checked for what the CLI sends
and how it shows the answers, against a small recording HTTP server, and the argument handling as functions."""

from __future__ import annotations

import json
import secrets
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
import typer
from typer.testing import CliRunner

from backend.cli.main import app
from backend.cli.model_lifecycle import apply_set, deploy_body, event_line, load_spec, parse_value, update_body
from tests.backend.test_cli import as_admin, output, run_cli
from tests.support import LisaServer


# ---------------------------------------------------------------------------------------------- the running server
def test_deploy_a_running_server_update_it_then_delete_it(
    lisa: LisaServer, admin: httpx.Client, tmp_path: Path
) -> None:
    model_id = f"cli-life/{secrets.token_hex(3)}"
    deployed = run_cli(
        "models", "deploy", model_id, "--base-url", "http://127.0.0.1:9/v1", "--type", "embedding",
        "--context-window", "512", "--group", "team-x", *as_admin(lisa), cwd=tmp_path,
    )  # fmt: skip
    assert deployed.returncode == 0, output(deployed)
    assert f"registered {model_id}: InService" in deployed.stdout
    got = admin.get(f"/api/models/{model_id}").json()
    assert (got["type"], got["base_url"], got["context_window"], got["allowed_groups"], got["streaming"]) == (
        "embedding", "http://127.0.0.1:9/v1", 512, ["team-x"], False,
    )  # fmt: skip

    updated = run_cli("models", "update", model_id, "--name", "Renamed", *as_admin(lisa), cwd=tmp_path)
    assert updated.returncode == 0, output(updated)
    assert f"updating {model_id}: InService" in updated.stdout
    assert admin.get(f"/api/models/{model_id}").json()["name"] == "Renamed"

    deleted = run_cli("models", "delete", model_id, *as_admin(lisa), cwd=tmp_path)
    assert deleted.returncode == 0, output(deleted)
    assert f"deleted {model_id}" in deleted.stdout
    assert admin.get(f"/api/models/{model_id}").status_code == 404

    again = run_cli("models", "delete", model_id, *as_admin(lisa), cwd=tmp_path)
    assert again.returncode == 1 and "404" in output(again) and "not found" in output(again)


def test_a_refused_deploy_says_why(lisa: LisaServer, tmp_path: Path) -> None:
    result = run_cli(
        "models", "deploy", f"cli-bad-{secrets.token_hex(3)}", "--base-url", "http://127.0.0.1:9/v1",
        "--type", "embedding", "--streaming", *as_admin(lisa), cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 1
    assert "422" in output(result) and "embedding models cannot stream" in output(result)


# ---------------------------------------------------------------------------------------------- arguments
def test_set_values_are_json_where_they_parse_and_dotted_keys_nest() -> None:
    assert [parse_value(v) for v in ("4", "0.5", "true", "null", '["a"]', "gemma", "08:00")] == [
        4, 0.5, True, None, ["a"], "gemma", "08:00",
    ]  # fmt: skip
    spec: dict[str, Any] = {"autoscaling": {"min_capacity": 1}}
    apply_set(spec, "autoscaling.max_capacity=4")
    apply_set(spec, "weights.prefix=models/llama")
    apply_set(spec, "chat_format=gemma")
    assert spec == {"autoscaling": {"min_capacity": 1, "max_capacity": 4}, "weights": {"prefix": "models/llama"},
                    "chat_format": "gemma"}  # fmt: skip
    for bad in ("novalue", "=3", "a..b=1"):
        with pytest.raises(typer.BadParameter, match="KEY=VALUE"):
            apply_set({}, bad)
    with pytest.raises(typer.BadParameter, match="'chat_format' is not an object"):
        apply_set(spec, "chat_format.x=1")


def test_a_spec_file_in_yaml_or_json_under_the_sets(tmp_path: Path) -> None:
    (tmp_path / "spec.yaml").write_text("kind: gguf\nmodel_path: gemma.gguf\nthreads: 2\n")
    (tmp_path / "spec.json").write_text(json.dumps({"engine": "vllm", "autoscaling": {"max_capacity": 2}}))
    assert load_spec(tmp_path / "spec.yaml", ["threads=4", "context_size=1024"]) == {
        "kind": "gguf", "model_path": "gemma.gguf", "threads": 4, "context_size": 1024,
    }  # fmt: skip
    assert load_spec(tmp_path / "spec.json", ["autoscaling.max_capacity=8"]) == {
        "engine": "vllm", "autoscaling": {"max_capacity": 8},
    }  # fmt: skip
    assert load_spec(None, None) == {}
    (tmp_path / "list.yaml").write_text("- a\n")
    with pytest.raises(typer.BadParameter, match="must be a mapping"):
        load_spec(tmp_path / "list.yaml", None)
    with pytest.raises(typer.BadParameter, match=r"missing\.json"):
        load_spec(tmp_path / "missing.json", None)


def test_deploy_and_update_bodies() -> None:
    spec = {"kind": "gguf", "model_path": "gemma.gguf"}
    assert deploy_body("m", "textgen", "local", spec, None, name=None, allowed_groups=["a"]) == {
        "id": "m", "type": "textgen", "hosting": "internal", "allowed_groups": ["a"],
        "deployment": {"deployer": "local", "spec": spec},
    }  # fmt: skip
    assert deploy_body("m", "embedding", None, {}, "http://h:1/v1") == {
        "id": "m", "type": "embedding", "hosting": "internal", "base_url": "http://h:1/v1",
    }  # fmt: skip
    with pytest.raises(typer.BadParameter, match="either --deployer"):
        deploy_body("m", "textgen", None, {}, None)
    with pytest.raises(typer.BadParameter, match="either --deployer"):
        deploy_body("m", "textgen", "local", spec, "http://h:1/v1")
    with pytest.raises(typer.BadParameter, match="use them with --deployer"):
        deploy_body("m", "textgen", None, spec, "http://h:1/v1")
    assert update_body({"threads": 4}, name=None) == {"deployment": {"spec": {"threads": 4}}}
    assert update_body({}, name="N") == {"name": "N"}
    with pytest.raises(typer.BadParameter, match="nothing to change"):
        update_body({}, name=None)


def test_an_event_line() -> None:
    event = {"at": "2026-03-02T08:00:00Z", "kind": "step", "status": "Starting", "step": "start", "message": "ok"}
    assert event_line(event) == "2026-03-02T08:00:00Z step [Starting] start: ok"
    assert event_line({"at": "t", "kind": "health", "message": "answers again"}) == "t health answers again"


# ---------------------------------------------------------------------------------------------- the lifecycle routes
class Recorder(ThreadingHTTPServer):
    """Answers each request from ``answers`` (method and path -> list of (status, body), the last one repeated)
    and records what it was sent."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), RecorderHandler)
        self.answers: dict[tuple[str, str], list[tuple[int, Any]]] = {}
        self.seen: list[tuple[str, str, dict[str, list[str]], Any]] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class RecorderHandler(BaseHTTPRequestHandler):
    server: Recorder

    def _answer(self) -> None:
        parts = urlsplit(self.path)
        length = int(self.headers.get("content-length") or 0)
        body = json.loads(self.rfile.read(length)) if length else None
        self.server.seen.append((self.command, parts.path, parse_qs(parts.query), body))
        queue = self.server.answers.get((self.command, parts.path), [(404, {"detail": "not found"})])
        status, payload = queue.pop(0) if len(queue) > 1 else queue[0]
        data = payload.encode() if isinstance(payload, str) else json.dumps(payload).encode() if payload else b""
        self.send_response(status)
        self.send_header("content-type", "text/plain" if isinstance(payload, str) else "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_PATCH = do_DELETE = _answer

    def log_message(self, *_args: Any) -> None:
        pass


@pytest.fixture
def recorder() -> Iterator[Recorder]:
    server = Recorder()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def cli(recorder: Recorder, *args: str) -> Any:
    result = CliRunner().invoke(app, ["models", *args, "--url", recorder.url, "--token", "tok"], env={"COLUMNS": "300"})
    return result


MODEL = "team/llama@1"
WORKFLOW = {"model": {"id": MODEL, "status": "Starting"}, "workflow": {"id": "wf_1", "kind": "enable"},
            "events_url": f"/api/models/{MODEL}/events"}  # fmt: skip


def event(n: int, status: str | None = None) -> dict[str, Any]:
    return {"id": f"e{n}", "at": f"2026-03-02T08:00:0{n}Z", "kind": "status", "status": status, "step": None,
            "message": f"event {n}"}  # fmt: skip


def test_deploy_with_a_deployment_sends_its_spec_and_waits_until_in_service(recorder: Recorder) -> None:
    recorder.answers[("POST", "/api/models")] = [(202, WORKFLOW | {"workflow": {"id": "wf_1", "kind": "create"}})]
    recorder.answers[("GET", f"/api/models/{MODEL}/events")] = [
        (200, {"data": [event(1, "Creating")], "next_cursor": "c1"}),
        (200, {"data": [event(2, "InService")], "next_cursor": None}),
    ]
    recorder.answers[("GET", f"/api/models/{MODEL}")] = [(200, {"id": MODEL, "status": "InService"})]
    result = cli(recorder, "deploy", MODEL, "--deployer", "local", "--set", "kind=gguf", "--set",
                 "model_path=gemma.gguf", "--set", "context_size=1024", "--wait")  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "deploying team/llama@1: workflow wf_1 (create) started" in result.output
    assert "event 1" in result.output and "event 2" in result.output
    assert f"{MODEL} is InService" in result.output
    method, path, _, body = recorder.seen[0]
    assert (method, path) == ("POST", "/api/models")
    assert body == {"id": MODEL, "type": "textgen", "hosting": "internal", "deployment": {"deployer": "local",
                    "spec": {"kind": "gguf", "model_path": "gemma.gguf", "context_size": 1024}}}  # fmt: skip
    cursors = [q.get("cursor") for m, p, q, _ in recorder.seen if p.endswith("/events")]
    assert cursors[:2] == [None, ["c1"]]


def test_update_sends_the_spec_fields_to_change(recorder: Recorder, tmp_path: Path) -> None:
    (tmp_path / "spec.yaml").write_text("threads: 4\n")
    recorder.answers[("PATCH", f"/api/models/{MODEL}")] = [
        (202, WORKFLOW | {"workflow": {"id": "wf_2", "kind": "update"}})
    ]
    result = cli(recorder, "update", MODEL, "--spec", str(tmp_path / "spec.yaml"), "--set", "chat_format=gemma")
    assert result.exit_code == 0, result.output
    assert "workflow wf_2 (update) started" in result.output
    assert recorder.seen[0][3] == {"deployment": {"spec": {"threads": 4, "chat_format": "gemma"}}}


@pytest.mark.parametrize("verb", ["enable", "disable"])
def test_enable_and_disable_post_to_the_models_route(recorder: Recorder, verb: str) -> None:
    recorder.answers[("POST", f"/api/models/{MODEL}/{verb}")] = [
        (202, WORKFLOW | {"workflow": {"id": "wf_3", "kind": verb}})
    ]
    result = cli(recorder, verb, MODEL)
    assert result.exit_code == 0, result.output
    assert f"{verb[:-1]}ing {MODEL}: workflow wf_3 ({verb}) started" in result.output
    assert [(m, p) for m, p, _, _ in recorder.seen] == [("POST", f"/api/models/{MODEL}/{verb}")]


def test_enable_refused_shows_the_servers_reason(recorder: Recorder) -> None:
    recorder.answers[("POST", f"/api/models/{MODEL}/enable")] = [(409, {"detail": "enable only from Stopped"})]
    result = cli(recorder, "enable", MODEL)
    assert result.exit_code == 1
    assert "409: enable only from Stopped" in result.output


def test_a_wait_that_ends_failed_exits_1_with_the_reason(recorder: Recorder) -> None:
    recorder.answers[("POST", f"/api/models/{MODEL}/enable")] = [(202, WORKFLOW)]
    recorder.answers[("GET", f"/api/models/{MODEL}/events")] = [(200, {"data": [], "next_cursor": None})]
    recorder.answers[("GET", f"/api/models/{MODEL}")] = [
        (200, {"id": MODEL, "status": "Failed", "status_reason": "enable failed at start: the server exited"})
    ]
    result = cli(recorder, "enable", MODEL, "--wait")
    assert result.exit_code == 1
    assert "failed: enable failed at start: the server exited" in result.output


def test_events_pages_through_and_shows_the_latest(recorder: Recorder) -> None:
    recorder.answers[("GET", f"/api/models/{MODEL}/events")] = [
        (200, {"data": [event(1), event(2)], "next_cursor": "c1"}),
        (200, {"data": [event(3)], "next_cursor": None}),
    ]
    result = cli(recorder, "events", MODEL, "--limit", "2")
    assert result.exit_code == 0, result.output
    assert "event 1" not in result.output and "event 2" in result.output and "event 3" in result.output
    params = [q for _, p, q, _ in recorder.seen]
    assert params == [{"limit": ["500"]}, {"limit": ["500"], "cursor": ["c1"]}]
    assert cli(recorder, "events", MODEL, "--limit", "0").exit_code == 2  # out of range


def test_events_as_json_lines(recorder: Recorder) -> None:
    recorder.answers[("GET", f"/api/models/{MODEL}/events")] = [(200, {"data": [event(1)], "next_cursor": None})]
    result = cli(recorder, "events", MODEL, "--json")
    assert [json.loads(line)["id"] for line in result.output.splitlines()] == ["e1"]


def test_logs_prints_the_servers_text_and_asks_for_the_lines(recorder: Recorder) -> None:
    recorder.answers[("GET", f"/api/models/{MODEL}/logs")] = [(200, "INFO: started\nINFO: ready\n")]
    result = cli(recorder, "logs", MODEL, "--lines", "2")
    assert result.exit_code == 0, result.output
    assert result.output == "INFO: started\nINFO: ready\n"
    assert recorder.seen[0][2] == {"lines": ["2"]}
    assert cli(recorder, "logs", MODEL, "--lines", "0").exit_code == 2
    assert cli(recorder, "logs", MODEL, "--lines", "10001").exit_code == 2
    recorder.answers[("GET", "/api/models/gone/logs")] = [(404, {"detail": "model 'gone' not found"})]
    missing = cli(recorder, "logs", "gone")
    assert missing.exit_code == 1 and "404: model 'gone' not found" in missing.output


def test_delete_that_starts_a_workflow_waits_until_the_model_is_gone(recorder: Recorder) -> None:
    recorder.answers[("DELETE", f"/api/models/{MODEL}")] = [
        (202, WORKFLOW | {"workflow": {"id": "wf_4", "kind": "delete"}})
    ]
    recorder.answers[("GET", f"/api/models/{MODEL}/events")] = [
        (200, {"data": [event(1, "Deleting")], "next_cursor": None})
    ]
    recorder.answers[("GET", f"/api/models/{MODEL}")] = [
        (200, {"id": MODEL, "status": "Deleting"}), (404, {"detail": "not found"}),
    ]  # fmt: skip
    result = cli(recorder, "delete", MODEL, "--wait", "--timeout", "30")
    assert result.exit_code == 0, result.output
    assert "deleting team/llama@1: workflow wf_4 (delete) started" in result.output
    assert f"deleted {MODEL}" in result.output
