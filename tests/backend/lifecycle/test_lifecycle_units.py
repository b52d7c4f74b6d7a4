"""The lifecycle's pure parts: the state rules, the deployers' spec types and the validation of a deployment spec."""

from __future__ import annotations

import asyncio
from typing import Any, get_args

import httpx
import pytest

from backend.config import Settings
from backend.errors import BadRequest, Conflict
from backend.lifecycle.deployers import KINDS, Deployer
from backend.lifecycle.deployers.ecs import EcsDeployer
from backend.lifecycle.deployers.ecs_render import EcsPlatform
from backend.lifecycle.deployers.ecs_spec import EcsModelSpec
from backend.lifecycle.deployments import Deployers, spec_type
from backend.lifecycle.probe import Probe, origin
from backend.lifecycle.rules import ALLOWED_FROM, DURING, require
from backend.lifecycle.schemas import WorkflowKind
from backend.net.egress import EgressGuard
from backend.registry.schemas import DeployerKind, ModelStatus

PLATFORM = EcsPlatform(vpc_id="vpc-1", subnet_ids=("subnet-1",), gateway_security_group_id="sg-1")
SPEC = {"engine": "vllm", "weights": {"bucket": "weights", "prefix": "m/llama"}}


def ecs_only(kind: str, _settings: Settings) -> Deployer[Any]:
    if kind != "ecs":
        raise NotImplementedError("the local deployer is not built yet")
    return EcsDeployer(PLATFORM)


def test_the_rules_are_the_issues() -> None:
    S = ModelStatus
    assert {
        WorkflowKind.update: (S.in_service, S.stopped),
        WorkflowKind.enable: (S.stopped,),
        WorkflowKind.disable: (S.in_service,),
        WorkflowKind.delete: (S.in_service, S.stopped, S.failed),
    } == ALLOWED_FROM
    assert {k: v.value for k, v in DURING.items()} == {
        "create": "Creating", "update": "Updating", "enable": "Starting", "disable": "Stopping", "delete": "Deleting"
    }  # fmt: skip
    assert require(WorkflowKind.update, "m", "Stopped") == S.stopped


@pytest.mark.parametrize(
    ("kind", "status", "message"),
    [
        ("enable", "InService", "model 'm' is InService: enable needs it Stopped"),
        ("disable", "Stopped", "model 'm' is Stopped: disable needs it InService"),
        ("update", "Creating", "model 'm' is Creating: update needs it InService or Stopped (a workflow is running; "
                               "its progress: /api/models/m/events)"),
        ("delete", "Deleting", "model 'm' is Deleting: delete needs it InService or Stopped or Failed (a workflow"),
        ("update", "Failed", "(a failed model can be deleted, then created again)"),
    ],
)  # fmt: skip
def test_a_refusal_names_the_state_and_what_the_action_needs(kind: str, status: str, message: str) -> None:
    with pytest.raises(Conflict) as refused:
        require(WorkflowKind(kind), "m", status)
    assert message in refused.value.message


def test_the_deployer_kinds_of_the_api_are_the_factorys() -> None:
    assert set(get_args(DeployerKind)) == set(KINDS)


def test_a_deployers_spec_type_is_read_from_its_class() -> None:
    assert spec_type(EcsDeployer(PLATFORM)) is EcsModelSpec


def test_a_spec_is_validated_as_the_deployers_own_and_is_the_models() -> None:
    deployers = Deployers(Settings(), ecs_only)
    spec = deployers.spec("ecs", "llama", SPEC)
    assert isinstance(spec, EcsModelSpec) and spec.model_id == "llama" and spec.engine == "vllm"
    with pytest.raises(BadRequest, match=r"deployment.spec.model_id: the spec is the model's own \('llama'\)"):
        deployers.spec("ecs", "llama", {**SPEC, "model_id": "other"})
    with pytest.raises(BadRequest) as refused:
        deployers.spec("ecs", "llama", {**SPEC, "engine": "triton", "gpus": 1})
    assert "deployment.spec.engine:" in refused.value.message and "deployment.spec.gpus:" in refused.value.message
    with pytest.raises(BadRequest, match="the 'local' deployer is not available on this server: the local deployer"):
        deployers.spec("local", "llama", {})


def test_the_ecs_deployer_without_its_network_is_unavailable() -> None:
    with pytest.raises(BadRequest, match="LISA_AWS_VPC_ID"):
        Deployers(Settings()).get("ecs")


def test_llama_cpp_props_live_at_the_servers_root() -> None:
    assert origin("http://host:8000/v1") == "http://host:8000"
    assert origin("http://host:8000/v1/") == "http://host:8000"
    assert origin("http://host/api") == "http://host/api"


def probe_of(routes: dict[str, Any], calls: list[str]) -> Probe:
    """A Probe whose HTTP answers are ``routes`` (path -> JSON, or an exception to raise): the parsing alone."""

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request.url.path)
        answer = routes.get(request.url.path)
        if isinstance(answer, Exception):
            raise answer
        return httpx.Response(404) if answer is None else httpx.Response(200, json=answer)

    probe = Probe(EgressGuard.default(), timeout=1)
    probe._http = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    return probe


@pytest.mark.parametrize(
    ("routes", "served", "found"),
    [
        ({"/props": {"n_ctx": 8192}}, None, 8192),
        ({"/props": {"default_generation_settings": {"n_ctx": 2048}}}, None, 2048),
        ({"/v1/models": {"data": [{"id": "a", "max_model_len": 1024}, {"id": "b", "max_model_len": 4096}]}}, "b", 4096),
        ({"/v1/models": {"data": [{"id": "a", "meta": {"n_ctx_train": 131072}}]}}, "other", 131072),
        ({"/props": {"n_ctx": True}, "/v1/models": {"data": [{"id": "a", "max_model_len": -5}]}}, "a", None),
        ({"/v1/models": {"data": "nonsense"}}, None, None),
    ],
)
def test_the_context_window_is_read_as_llama_cpp_and_vllm_say_it(
    routes: dict[str, Any], served: str | None, found: int | None
) -> None:
    calls: list[str] = []
    assert asyncio.run(probe_of(routes, calls).context_window("http://model:8000/v1", served)) == found


def test_a_server_that_does_not_answer_is_asked_once() -> None:
    calls: list[str] = []
    probe = probe_of({"/props": httpx.ConnectError("refused")}, calls)
    assert asyncio.run(probe.context_window("http://model:8000/v1", None)) is None
    assert calls == ["/props"]
