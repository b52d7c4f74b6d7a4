"""Deployers behind one factory: a new way to run models is one module here and one branch in :func:`open_deployer`.

``local``: self-hosted models as supervised processes on this machine (the embedded default).
``ecs``: one CloudFormation stack per model (deploy/cloudformation/model.yaml), configured by ``LISA_AWS_*``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from backend.lifecycle.deployers.base import (
    Deployer,
    Deployment,
    DeploymentEvent,
    DeploymentFailed,
    DeploymentState,
    DeploymentTimeout,
    ModelSpec,
    Progress,
)

if TYPE_CHECKING:
    from backend.config import Settings
    from backend.lifecycle.deployers.ecs import EcsDeployer
    from backend.lifecycle.deployers.local import LocalDeployer

__all__ = [
    "Deployer",
    "Deployment",
    "DeploymentEvent",
    "DeploymentFailed",
    "DeploymentState",
    "DeploymentTimeout",
    "ModelSpec",
    "Progress",
    "ecs_deployer",
    "local_deployer",
    "open_deployer",
]

KINDS = ("local", "ecs")


def open_deployer(kind: str, settings: Settings) -> Deployer[Any]:
    if kind == "ecs":
        return ecs_deployer(settings)
    if kind == "local":
        return local_deployer(settings)
    raise ValueError(f"unknown deployer '{kind}' (one of {', '.join(KINDS)})")


def local_deployer(settings: Settings) -> LocalDeployer:
    """Model servers as supervised processes on this machine; model files only from ``LISA_LOCAL_MODEL_DIRS``."""
    from backend.lifecycle.deployers.local import LocalDeployer

    return LocalDeployer.from_settings(settings)


def ecs_deployer(settings: Settings) -> EcsDeployer:
    """The ECS deployer as the settings describe the platform; refuses to start without the network it needs."""
    from backend.lifecycle.deployers.ecs import EcsDeployer
    from backend.lifecycle.deployers.ecs_render import DEFAULT_TEMPLATE, EcsPlatform

    missing = [
        env
        for env, value in (
            ("LISA_AWS_VPC_ID", settings.aws_vpc_id),
            ("LISA_AWS_PRIVATE_SUBNET_IDS", settings.aws_private_subnet_ids),
            ("LISA_AWS_GATEWAY_SECURITY_GROUP_ID", settings.aws_gateway_security_group_id),
        )
        if not value
    ]
    if missing:
        raise ValueError(f"the ECS deployer needs {', '.join(missing)} (the core stack's outputs)")
    images = {
        engine: image
        for engine, image in (
            ("vllm", settings.aws_model_image_vllm),
            ("tgi", settings.aws_model_image_tgi),
            ("tei", settings.aws_model_image_tei),
        )
        if image
    }
    platform = EcsPlatform(
        vpc_id=settings.aws_vpc_id,
        subnet_ids=tuple(settings.aws_private_subnet_ids),
        gateway_security_group_id=settings.aws_gateway_security_group_id,
        stack_prefix=settings.aws_model_stack_prefix,
        role_path=settings.aws_model_role_path,
        role_boundary_arn=settings.aws_model_role_boundary_arn,
        deploy_role_arn=settings.aws_model_stack_role_arn,
        weights_bucket=settings.aws_model_weights_bucket,
        images=images,
        template_path=settings.aws_model_template or DEFAULT_TEMPLATE,
    )
    return EcsDeployer(
        platform,
        region=settings.aws_region,
        endpoint_url=settings.aws_endpoint_url,
        timeout_seconds=settings.aws_model_stack_timeout_seconds,
        poll_seconds=settings.aws_model_stack_poll_seconds,
    )
