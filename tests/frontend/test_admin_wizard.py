"""The model wizard's own checks: the body it sends for each kind of model, and what it refuses before sending."""

from __future__ import annotations

import pytest

from frontend.tabs.admin_wizard import Invalid, WizardForm, model_body


def test_an_internal_model_body() -> None:
    body = model_body(WizardForm(kind="internal", id="m1", base_url=" http://127.0.0.1:8000/v1 ", api_key="k"))
    assert body == {"id": "m1", "type": "textgen", "streaming": True, "hosting": "internal",
                    "base_url": "http://127.0.0.1:8000/v1", "api_key": "k"}  # fmt: skip


def test_an_ecs_model_carries_its_container_and_autoscaling() -> None:
    form = WizardForm(kind="ecs", id="big", weights_bucket="my-weights", weights_prefix="llama/8b",
                      min_capacity=0, desired_capacity=1, max_capacity=3, environment="HF_HOME=/data\n\nX_Y=1")  # fmt: skip
    body = model_body(form)
    assert body["hosting"] == "internal" and "base_url" not in body and "api_key" not in body
    spec = body["deployment"]["spec"]
    assert body["deployment"]["deployer"] == "ecs"
    assert spec["autoscaling"] == {"min_capacity": 0, "desired_capacity": 1, "max_capacity": 3,
                                   "metric": "RequestCountPerTarget", "target_value": 60.0}  # fmt: skip
    assert spec["weights"] == {"bucket": "my-weights", "prefix": "llama/8b"} and spec["gpu_count"] == 1
    assert spec["environment"] == {"HF_HOME": "/data", "X_Y": "1"}


def test_a_local_model_body() -> None:
    body = model_body(WizardForm(kind="local", id="tiny", model_path="tiny.gguf", chat_format="gemma"))
    assert body["deployment"] == {
        "deployer": "local",
        "spec": {"kind": "gguf", "model_path": "tiny.gguf", "threads": 2, "chat_format": "gemma"},
    }


@pytest.mark.parametrize(
    ("form", "message"),
    [
        (WizardForm(kind="internal", id=""), "Model id"),
        (WizardForm(kind="internal", id="a/events", base_url="http://x/v1"), "may not end with"),
        (WizardForm(kind="internal", id="a", base_url="ftp://x"), "needs the base URL"),
        (WizardForm(kind="third_party", id="a"), "LiteLLM model string"),
        (WizardForm(kind="internal", id="e", type="embedding", base_url="http://x/v1"), "cannot stream"),
        (WizardForm(kind="local", id="a"), "needs its file"),
        (WizardForm(kind="ecs", id="a", weights_bucket="b!", weights_prefix="p"), "Weights bucket"),
        (WizardForm(kind="ecs", id="a", weights_bucket="bkt", weights_prefix="p/", ), "Weights prefix"),
        (WizardForm(kind="ecs", id="a", weights_bucket="bkt", weights_prefix="pp", min_capacity=3, max_capacity=2),
         "minimum"),
        (WizardForm(kind="ecs", id="a", weights_bucket="bkt", weights_prefix="pp", environment="1X=2"),
         "environment line 1"),
    ],
)  # fmt: skip
def test_the_wizard_refuses_before_sending(form: WizardForm, message: str) -> None:
    with pytest.raises(Invalid, match=message):
        model_body(form)
