"""Every template passes cfn-lint, fits inline in a CreateStack call, and documents every parameter."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.deploy.cfn import TEMPLATE_BODY_LIMIT, TEMPLATES, load
from tests.support import ROOT

NAMES = sorted(p.name for p in TEMPLATES.glob("*.yaml"))
CFN_LINT = str(Path(sys.executable).parent / "cfn-lint")


def test_the_templates_are_the_two_the_docs_describe() -> None:
    assert NAMES == ["core.yaml", "model.yaml"]


def test_cfn_lint_finds_nothing() -> None:
    """Errors and warnings alike. Warnings that cannot be fixed are ignored in the template itself, on the one
    resource, with the reason next to it (core.yaml: W1030 on the Existing* network parameters)."""
    result = subprocess.run(
        [CFN_LINT, "--format", "json", *(str(TEMPLATES / n) for n in NAMES)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    findings = json.loads(result.stdout or "[]")
    assert findings == [], json.dumps(findings, indent=1)[:4000]
    assert result.returncode == 0, result.stderr


def test_cfn_lint_would_catch_a_broken_template(tmp_path: Path) -> None:
    broken = (TEMPLATES / "model.yaml").read_text().replace("Type: AWS::ECS::Cluster", "Type: AWS::ECS::Clustr", 1)
    (tmp_path / "broken.yaml").write_text(broken)
    result = subprocess.run(
        [CFN_LINT, "--format", "json", str(tmp_path / "broken.yaml")], capture_output=True, text=True
    )
    assert any(f["Level"] == "Error" for f in json.loads(result.stdout)), result.stdout[:2000]


@pytest.mark.parametrize("name", NAMES)
def test_fits_inline(name: str) -> None:
    """The backend sends model.yaml as TemplateBody; core.yaml deploys with `--template-file` without a bucket."""
    assert (TEMPLATES / name).stat().st_size <= TEMPLATE_BODY_LIMIT


@pytest.mark.parametrize("name", NAMES)
def test_every_parameter_is_documented(name: str) -> None:
    template = load(name)
    reference = (TEMPLATES / "README.md").read_text()
    section = reference.split(f"## {name}", 1)[1].split("\n## ", 1)[0]
    first_cells = [line.split("|")[1] for line in section.splitlines() if line.startswith("| `")]
    documented = {name for cell in first_cells for name in re.findall(r"`(\w+)`", cell)}
    assert documented == set(template["Parameters"]), documented ^ set(template["Parameters"])
    for parameter, spec in template["Parameters"].items():
        assert spec.get("Description"), parameter


@pytest.mark.parametrize("name", NAMES)
def test_every_output_is_documented(name: str) -> None:
    template = load(name)
    reference = (TEMPLATES / "README.md").read_text()
    section = reference.split(f"## {name}", 1)[1].split("\n## ", 1)[0]
    for output in template["Outputs"]:
        assert f"`{output}`" in section, output


def test_readme_links_the_parameter_reference() -> None:
    readme = (ROOT / "README.md").read_text()
    deploy = readme.split("## Deploy to AWS", 1)[1]
    assert "deploy/cloudformation/README.md" in deploy
    assert "No container engine runs" in deploy


def test_model_parameters_come_from_core_outputs() -> None:
    """What the backend passes to each model stack from the platform: every one is a core output."""
    core, model = load("core.yaml"), load("model.yaml")
    fed = {
        "VpcId": "VpcId",
        "SubnetIds": "PrivateSubnetIds",
        "GatewaySecurityGroupId": "GatewaySecurityGroupId",
        "WeightsBucket": "ModelWeightsBucketName",
        "RolePath": "ModelRolePath",
        "RoleBoundaryArn": "ModelRoleBoundaryArn",
    }
    assert set(fed) <= set(model["Parameters"])
    assert set(fed.values()) <= set(core["Outputs"])
    assert model["Parameters"]["RolePath"]["Default"] == "/" + core["Parameters"]["ModelStackPrefix"]["Default"] + "/"
