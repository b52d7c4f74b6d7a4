"""The Dockerfiles, parsed and checked (no container engine runs here: nothing is built), and their entrypoint
scripts run for real under dash with stand-ins for s5cmd and the servers."""

from __future__ import annotations

import os
import re
import shlex
import tomllib
from collections.abc import Callable
from pathlib import Path

import pytest
from pydantic import ValidationError

from backend.config import Settings
from tests.deploy import dockerfiles
from tests.deploy.cfn import load
from tests.deploy.dockerfiles import Stage, arg_default, parse
from tests.support import ROOT

DOCKER = ROOT / "docker"
BACKEND = DOCKER / "backend.Dockerfile"
MODEL_IMAGES = {
    "vllm": "vllm/vllm-openai",
    "tgi": "ghcr.io/huggingface/text-generation-inference",
    "tei": "ghcr.io/huggingface/text-embeddings-inference",
}
ALL_DOCKERFILES = [BACKEND, *(DOCKER / "models" / f"{engine}.Dockerfile" for engine in MODEL_IMAGES)]


@pytest.mark.parametrize("path", ALL_DOCKERFILES, ids=lambda p: p.name)
@pytest.mark.parametrize("check", dockerfiles.ALL_CHECKS, ids=lambda c: c.__name__)
def test_dockerfile_passes(path: Path, check: Callable[[list[Stage]], list[str]]) -> None:
    assert check(parse(path)) == []


def test_the_model_images_are_the_engines_model_yaml_accepts() -> None:
    engines = load("model.yaml")["Parameters"]["Engine"]["AllowedValues"]
    assert sorted(p.name.removesuffix(".Dockerfile") for p in (DOCKER / "models").glob("*.Dockerfile")) == sorted(
        engines
    )


@pytest.mark.parametrize("engine", sorted(MODEL_IMAGES))
def test_model_image(engine: str) -> None:
    """FROM the engine's official image; the shared entrypoint; the port and health path model.yaml expects."""
    stages = parse(DOCKER / "models" / f"{engine}.Dockerfile")
    final = stages[-1]
    assert final.base.rsplit(":", 1)[0] == MODEL_IMAGES[engine]
    assert "COPY --chmod=0755 entrypoint.sh /usr/local/bin/lisa-model-entrypoint" in [
        f"COPY {v}" for v in final.values("COPY")
    ]
    assert final.values("ENTRYPOINT") == ['["/usr/local/bin/lisa-model-entrypoint"]']
    env = " ".join(final.values("ENV"))
    assert f"LISA_ENGINE={engine}" in env
    parameters = load("model.yaml")["Parameters"]
    assert f"PORT={parameters['ContainerPort']['Default']}" in env
    assert f'{parameters["HealthCheckPath"]["Default"]}"' in final.values("HEALTHCHECK")[0]
    assert any("curl" in run for run in final.values("RUN"))  # the health checks use it
    assert any(v.startswith("--from=s5cmd /s5cmd ") for v in final.values("COPY"))


def install_sh_extras() -> set[str]:
    """The extras scripts/install.sh (what the README's commands run) installs: `pip install ... -e ".[a,b]"`."""
    (extras,) = re.findall(r'install .*-e "\.\[([^\]]+)\]"', (ROOT / "scripts" / "install.sh").read_text())
    return set(extras.split(","))


def test_backend_installs_the_readme_package_set() -> None:
    """The builder installs the project with install.sh's extras less `test` (dev tools, not runtime), the same
    PyTorch CPU index, and copies every package pyproject.toml declares."""
    builder, final = parse(BACKEND)[0], parse(BACKEND)[-1]
    assert install_sh_extras() - {"test"} == {arg_default(builder, "LISA_EXTRAS")}
    (install,) = [r for r in builder.values("RUN") if '".[${LISA_EXTRAS}]"' in r]
    assert '--extra-index-url "${TORCH_INDEX}"' in install
    assert arg_default(builder, "TORCH_INDEX") == "https://download.pytorch.org/whl/cpu"
    assert "download.pytorch.org/whl/cpu" in (ROOT / "scripts" / "install.sh").read_text()
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    packages = {p.rstrip("*") for p in pyproject["tool"]["setuptools"]["packages"]["find"]["include"]}
    copied = {source for v in builder.values("COPY") for source in v.split()[:-1]}  # the last word: destination
    assert packages | {"pyproject.toml", "README.md"} <= copied
    ignore = (DOCKER / "backend.Dockerfile.dockerignore").read_text().splitlines()
    assert {f"!{p}/" for p in packages} <= set(ignore) and ignore[1] == "*"
    assert final.values("COPY")[0] == "--from=builder /opt/lisa /opt/lisa"
    assert final.values("EXPOSE") == ["8080"]
    assert "/health" in final.values("HEALTHCHECK")[0]
    assert final.values("CMD") == ['["lisa", "serve"]']
    # The model stack template the backend instantiates travels in the image, where core.yaml says it is.
    (definition,) = load("core.yaml")["Resources"]["BackendTaskDefinition"]["Properties"]["ContainerDefinitions"]
    template_path = next(e["Value"] for e in definition["Environment"] if e["Name"] == "LISA_AWS_MODEL_TEMPLATE")
    assert f"deploy/cloudformation/model.yaml {template_path}" in final.values("COPY")


# ---------------------------------------------------------------- each check fails on what it guards against

CASES = [
    (dockerfiles.check_pinned_bases, "FROM python\nUSER 1\n", "FROM python:3.11.13-slim\nUSER 1\n"),
    (dockerfiles.check_pinned_bases, "FROM python:latest\n", "FROM python@sha256:" + "a" * 64 + "\n"),
    (dockerfiles.check_pinned_bases, "ARG B=ubuntu\nFROM ${B}\n", "ARG B=ubuntu:24.04\nFROM ${B}\n"),
    (dockerfiles.check_pinned_bases, "FROM a:1 AS x\nFROM y\n", "FROM a:1 AS x\nFROM x\n"),
    (dockerfiles.check_non_root, "FROM a:1\nRUN true\n", "FROM a:1\nUSER 10001:10001\n"),
    (dockerfiles.check_non_root, "FROM a:1\nUSER app\nUSER root\n", "FROM a:1\nUSER root\nUSER app\n"),
    (dockerfiles.check_non_root, "FROM a:1\nUSER 1\nFROM b:1\n", "FROM a:1\nFROM b:1\nUSER 1\n"),
    (dockerfiles.check_healthcheck, "FROM a:1\nHEALTHCHECK NONE\n", "FROM a:1\nHEALTHCHECK CMD true\n"),
    (dockerfiles.check_healthcheck, "FROM a:1\nHEALTHCHECK CMD true\nFROM b:1\n", "FROM b:1\nHEALTHCHECK CMD true\n"),
    (
        dockerfiles.check_no_build_tools_in_final,
        "FROM a:1\nRUN apt-get update && apt-get install -y --no-install-recommends gcc libgomp1\n",
        "FROM a:1 AS b\nRUN apt-get install -y gcc\nFROM a:1\nRUN apt-get install -y libgomp1\n",
    ),
    (
        dockerfiles.check_no_build_tools_in_final,
        "FROM a:1 AS b\nRUN apk add build-base cmake\nFROM b\n",
        "FROM a:1 AS b\nRUN apk add cmake\nFROM a:1\nCOPY --from=b /opt /opt\n",
    ),
]


@pytest.mark.parametrize(("check", "bad", "good"), CASES, ids=[f"{i}-{c[0].__name__}" for i, c in enumerate(CASES)])
def test_each_check_catches_its_violation(check: Callable[[list[Stage]], list[str]], bad: str, good: str) -> None:
    assert check(parse(bad)), "the check let a violation through"
    assert check(parse(good)) == [], "the check rejects a compliant variant"


def image_environment() -> dict[str, str]:
    """The backend image's ENV, as `lisa serve` sees it in the container."""
    env: dict[str, str] = {}
    for value in parse(BACKEND)[-1].values("ENV"):
        for word in shlex.split(value.replace("\\\n", " ")):
            key, _, setting = word.partition("=")
            env[key] = setting
    return env


def test_the_backend_image_runs_in_production_and_needs_real_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    """It listens on every address: without LISA_SECRET_KEY and LISA_ENCRYPTION_KEY it refuses to start."""
    env = image_environment()
    assert env["LISA_ENVIRONMENT"] == "production" and env["LISA_HOST"] == "0.0.0.0"
    assert not {"LISA_SECRET_KEY", "LISA_ENCRYPTION_KEY"} & env.keys()  # never baked in
    for key in [k for k in os.environ if k.startswith("LISA_")]:
        monkeypatch.delenv(key)
    for key, value in env.items():
        if key.startswith("LISA_"):
            monkeypatch.setenv(key, value)
    with pytest.raises(ValidationError, match="LISA_SECRET_KEY must be set to a real secret"):
        Settings()
    monkeypatch.setenv("LISA_SECRET_KEY", "k" * 40)
    with pytest.raises(ValidationError, match="LISA_ENCRYPTION_KEY must be set to a real secret"):
        Settings()
    monkeypatch.setenv("LISA_ENCRYPTION_KEY", "e" * 40)
    assert Settings().environment == "production"
