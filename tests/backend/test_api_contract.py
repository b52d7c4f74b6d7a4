"""The /api contract: schemathesis drives every operation of /openapi.json (a fixed seed, a bounded number of
cases) with a plain user's token and with an admin's, and every answer must be one the document declares, in the
shape it declares: no 5xx, no schema violation, no undocumented status.

The run really creates, changes and deletes things, so it talks to a server of its own (its own database, no
local models) whose embedding model is the session server's. It is given one of each resource to work on (a
repository, collection, document, job, pipeline, prompt template, assistant, project, a chat session of the admin's
with messages and a share link, and an MCP server that is a real one: tests/servers/mcp_tools.py);
it never revokes the tokens it runs with nor deletes that repository (tests/backend/contract_hooks.py); every secret
it sends or is issued goes to the session's secret watch.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.backend.rag.helpers import ingest
from tests.secret_watch import SecretWatch
from tests.support import ROOT, LisaServer, Proc, start_lisa, start_module

EMBEDDING = "minilm-l6-v2"
SEED = 20240610
MAX_EXAMPLES = 12
CHECKS = "not_a_server_error,status_code_conformance,response_schema_conformance,content_type_conformance"
ST = str(Path(sys.executable).parent / "st")


@pytest.fixture(scope="module")
def contract_mcp_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Proc]:
    """The MCP server (streamable HTTP) every MCP registration of the run points at (tests/backend/contract_hooks.py)."""
    work = tmp_path_factory.mktemp("contract-mcp")
    proc = start_module("tests.servers.mcp_tools", work, "--transport", "http", "--tools", "add,echo,fail,env")
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def contract_server(
    lisa: LisaServer, admin: httpx.Client, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LisaServer]:
    base = tmp_path_factory.mktemp("contract")
    (base / "ingest").mkdir()
    (base / "ingest" / "a.txt").write_text("A folder the pipelines of the contract run may read.")
    server = start_lisa(
        base / "data", local_models=False, env={"LISA_RAG_INGEST_ROOTS": json.dumps([str(base / "ingest")])}
    )
    embedding = admin.get(f"/api/models/{EMBEDDING}").json()  # the session server's, shared
    with server.client() as api:
        body = {"id": EMBEDDING, "type": "embedding", "hosting": "internal", "base_url": embedding["base_url"]}
        assert api.post("/api/models", json={**body, "streaming": False}).status_code == 201
    yield server
    server.proc.stop()


def seed(api: httpx.Client, ingest_root: Path, mcp_url: str) -> dict[str, str]:
    """One of everything the path parameters name, so that the run reaches past 404 into each route."""
    assert api.post("/api/repositories", json={"id": "contract"}).status_code == 201
    job = ingest(api, "contract", {"notes.txt": b"Contract testing reaches the document routes."})
    assert job["status"] == "completed", job
    document = api.get("/api/repositories/contract/documents").json()["data"][0]
    pipeline = api.post(
        "/api/repositories/contract/pipelines",
        json={"name": "folder", "source": {"type": "folder", "path": str(ingest_root)}, "trigger": {"type": "event"}},
    )
    assert pipeline.status_code == 201, pipeline.text
    template = api.post(
        "/api/prompt-templates",
        json={"title": "contract", "body": "Hello {{name}}", "kind": "persona", "sharing": "public"},
    )
    assert template.status_code == 201, template.text
    chat = {"id": "contract-chat", "type": "textgen", "hosting": "internal", "base_url": "http://127.0.0.5:8000/v1"}
    assert api.post("/api/models", json=chat).status_code == 201
    assistant = api.post("/api/assistants", json={"name": "contract", "model_id": "contract-chat"})
    assert assistant.status_code == 201, assistant.text
    body = {"name": "contract", "scope": "global", "transport": "streamable_http", "url": mcp_url}
    mcp = api.post("/api/mcp/servers", json=body)
    assert mcp.status_code == 201, mcp.text
    project = api.post("/api/projects", json={"name": "contract"})
    assert project.status_code == 201, project.text
    # A chat session of the admin (the admin's run reaches its routes; the user's gets their 404) with a question
    # and an answer (imported: the run's server has no model that answers) and a share link.
    export = {"format": "lisa.chat.session", "version": 2, "exported_at": "2026-01-01T00:00:00Z",
              "session": {"title": "contract", "model": "contract-chat", "active_leaf_id": "a",
                          "created_at": "2026-01-01T00:00:00Z", "updated_at": "2026-01-01T00:00:00Z"},
              "messages": [{"id": "q", "parent_id": None, "role": "user", "content": "Hello?",
                            "created_at": "2026-01-01T00:00:00Z"},
                           {"id": "a", "parent_id": "q", "role": "assistant", "content": "Hello.",
                            "metadata": {"model": "contract-chat"}, "created_at": "2026-01-01T00:00:01Z"}]}  # fmt: skip
    session = api.post("/api/sessions/import", params={"project_id": project.json()["id"]}, json=export)
    assert session.status_code == 201, session.text
    share = api.post(f"/api/sessions/{session.json()['id']}/share")
    assert share.status_code == 201, share.text
    return {
        "session_id": session.json()["id"],
        "token": share.json()["token"],
        "call_id": "call_contract",  # no call waits: the decision route answers its 404 past the session
        "image_id": "img_contract",  # no image (the run's server has no image model): its 404 past the session
        "project_id": project.json()["id"],
        "server_id": mcp.json()["id"],
        "repository_id": "contract",
        "collection_id": "default",
        "document_id": document["id"],
        "job_id": job["id"],
        "pipeline_id": pipeline.json()["id"],
        "template_id": template.json()["id"],
        "revision": "1",
        "assistant_id": assistant.json()["id"],
    }


def run_schemathesis(
    server: LisaServer,
    token: str,
    parameters: dict[str, str],
    protected: dict[str, list[str]],
    work: Path,
    mcp_url: str,
) -> tuple[int, str]:
    """`st run` against the server; the exit code and the output (failures come with the curl that reproduces them,
    the Authorization header masked)."""
    work.mkdir()
    config = work / "schemathesis.toml"
    fixed = "".join(f'{name} = "{value}"\n' for name, value in parameters.items())
    config.write_text(f"[cache]\nenabled = false\n\n[parameters]\n{fixed}")
    argv = [
        ST, "--config-file", str(config), "run", f"{server.url}/openapi.json",
        "-H", f"Authorization: Bearer {token}",
        "--checks", CHECKS, "--max-examples", str(MAX_EXAMPLES), "--seed", str(SEED),
        "--workers", "1", "--request-timeout", "60", "--generation-database", "none", "--no-color",
    ]  # fmt: skip
    # One worker: CPython 3.11's AST constructor keeps its recursion depth in state that threads share, and
    # schemathesis's case generation parses source in each worker thread; two workers crashed the tool in about
    # a third of runs ("SystemError: AST constructor recursion depth mismatch", python/cpython#106905).
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
        "SCHEMATHESIS_HOOKS": "tests.backend.contract_hooks",
        "HYPOTHESIS_STORAGE_DIRECTORY": str(work / "hypothesis"),
        "LISA_CONTRACT_PROTECTED_TOKENS": ",".join(protected["tokens"]),
        "LISA_CONTRACT_PROTECTED_USERS": ",".join(protected["users"]),
        "LISA_CONTRACT_PROTECTED_REPOSITORY": parameters["repository_id"],
        "LISA_CONTRACT_SECRETS": str(work / "secrets.txt"),
        "LISA_CONTRACT_MCP_URL": mcp_url,
    }
    done = subprocess.run(argv, cwd=work, env=env, capture_output=True, text=True, timeout=600)
    return done.returncode, done.stdout + done.stderr


def learn_secrets(watch: SecretWatch, work: Path) -> None:
    sent = work / "secrets.txt"
    if sent.exists():
        for line in sent.read_text(encoding="utf-8", errors="surrogatepass").splitlines():
            watch.learn(line, "a request or response of the schemathesis run")


def test_every_answer_is_declared_in_the_document(
    contract_server: LisaServer, contract_mcp_server: Proc, secret_watch: SecretWatch, tmp_path: Path
) -> None:
    server = contract_server
    with server.client() as api:
        parameters = seed(api, server.data_dir.parent / "ingest", contract_mcp_server.url + "/mcp")
        me = api.get("/api/users/me").json()
        user = api.post("/api/tokens", json={"name": "contract", "username": "contract-user"}).json()
    protected = {"tokens": [me["token_id"], user["id"]], "users": [me["username"], user["username"]]}
    outcomes = []
    for who, token in (("user", user["token"]), ("admin", server.token)):  # the admin's run may delete anything
        code, output = run_schemathesis(
            server, token, parameters, protected, tmp_path / who, contract_mcp_server.url + "/mcp"
        )
        learn_secrets(secret_watch, tmp_path / who)
        outcomes.append((who, code, output))
    for who, code, output in outcomes:
        assert code == 0, f"the {who} run found failures:\n{output[-20000:]}"
