"""Following a stack as AWS runs it (asynchronously, failing in events), on a scripted CloudFormation: the failing
resource and its reason become the error, deadlines end the wait, a crashed operation is resumed, and a stack of
another model is never touched. The same deployer runs end to end on moto in test_ecs_deployer.py."""

from __future__ import annotations

import pytest

from backend.errors import Conflict
from backend.lifecycle.deployers import DeploymentEvent, DeploymentFailed, DeploymentState, DeploymentTimeout
from backend.lifecycle.deployers.ecs import EcsDeployer
from backend.lifecycle.deployers.ecs_render import EcsPlatform
from backend.lifecycle.deployers.ecs_spec import EcsModelSpec, stack_name
from tests.backend.lifecycle.cloudformation_script import STACK_TYPE, ScriptedCloudFormation, Step

PLATFORM = EcsPlatform(
    vpc_id="vpc-1",
    subnet_ids=("subnet-1", "subnet-2"),
    gateway_security_group_id="sg-1",
    deploy_role_arn="arn:aws:iam::123456789012:role/lisa-model-deploy",
    weights_bucket="lisa-weights",
    images={"vllm": "ecr/vllm:1"},
)
SPEC = EcsModelSpec(model_id="llama-3.1-8b", engine="vllm", weights={"prefix": "models/llama"})
NAME = stack_name(PLATFORM.stack_prefix, SPEC.model_id)

TG, SVC, SG = "AWS::ElasticLoadBalancingV2::TargetGroup", "AWS::ECS::Service", "AWS::EC2::SecurityGroup"
HEALTH_REASON = (
    'Resource handler returned message: "Health check timeout must be smaller than the interval" '
    "(Service: ElasticLoadBalancingV2, Status Code: 400)"
)
CREATED: list[Step] = [
    ("CREATE_IN_PROGRESS", [("TargetGroup", TG, "CREATE_IN_PROGRESS", None)]),
    (
        "CREATE_IN_PROGRESS",
        [("TargetGroup", TG, "CREATE_COMPLETE", None), ("Service", SVC, "CREATE_IN_PROGRESS", None)],
    ),
    ("CREATE_COMPLETE", [("Service", SVC, "CREATE_COMPLETE", None), (NAME, STACK_TYPE, "CREATE_COMPLETE", None)]),
]
FAILED_CREATE: list[Step] = [
    ("CREATE_IN_PROGRESS", [("TargetGroup", TG, "CREATE_IN_PROGRESS", None), ("Cluster", "AWS::ECS::Cluster",
                                                                            "CREATE_IN_PROGRESS", None)]),
    ("ROLLBACK_IN_PROGRESS", [
        ("TargetGroup", TG, "CREATE_FAILED", HEALTH_REASON),
        ("Cluster", "AWS::ECS::Cluster", "CREATE_FAILED", "Resource creation cancelled"),
        (NAME, STACK_TYPE, "ROLLBACK_IN_PROGRESS",
         "The following resource(s) failed to create: [Cluster, TargetGroup]. Rollback requested by user."),
    ]),
    ("ROLLBACK_COMPLETE", [("Cluster", "AWS::ECS::Cluster", "DELETE_COMPLETE", None),
                           (NAME, STACK_TYPE, "ROLLBACK_COMPLETE", None)]),
]  # fmt: skip


def deployer(cf: ScriptedCloudFormation, timeout: float = 30.0) -> EcsDeployer:
    return EcsDeployer(PLATFORM, client=cf, timeout_seconds=timeout, poll_seconds=0.01)


class Recorder:
    def __init__(self) -> None:
        self.events: list[DeploymentEvent] = []

    async def __call__(self, event: DeploymentEvent) -> None:
        self.events.append(event)

    @property
    def seen(self) -> list[tuple[str, str]]:
        return [(e.resource, e.status) for e in self.events]


async def test_create_is_followed_to_complete_and_reported() -> None:
    cf = ScriptedCloudFormation(NAME, SPEC.model_id, on_create=CREATED)
    progress = Recorder()
    deployment = await deployer(cf).deploy(SPEC, progress)
    assert deployment.state == DeploymentState.ready and deployment.detail == "CREATE_COMPLETE"
    assert deployment.endpoint_url == f"http://internal-{NAME[:20]}-123.us-east-1.elb.amazonaws.com/v1"
    assert progress.seen == [
        (NAME, "CREATE_IN_PROGRESS"),
        ("TargetGroup", "CREATE_IN_PROGRESS"),
        ("TargetGroup", "CREATE_COMPLETE"),
        ("Service", "CREATE_IN_PROGRESS"),
        ("Service", "CREATE_COMPLETE"),
        (NAME, "CREATE_COMPLETE"),
    ]  # each once, in order, across small pages of events
    (create,) = cf.called("create_stack")
    assert create["StackName"] == NAME and create["RoleARN"] == PLATFORM.deploy_role_arn
    assert create["Capabilities"] == ["CAPABILITY_IAM"] and create["OnFailure"] == "ROLLBACK"
    assert create["TimeoutInMinutes"] == 1  # CloudFormation gives up when the deployer does (30 s -> 1 min)
    assert {"Key": "lisa:model-id", "Value": SPEC.model_id} in create["Tags"]


async def test_a_failed_create_names_the_resource_and_its_reason() -> None:
    cf = ScriptedCloudFormation(NAME, SPEC.model_id, on_create=FAILED_CREATE)
    progress = Recorder()
    with pytest.raises(DeploymentFailed) as caught:
        await deployer(cf).deploy(SPEC, progress)
    failed = caught.value
    assert (failed.step, failed.resource) == ("create", "TargetGroup")  # the cause, not the cancelled Cluster
    assert failed.reason == f"CREATE_FAILED ({TG}): {HEALTH_REASON}"
    assert str(failed) == f"create failed at TargetGroup: {failed.reason}"
    assert ("TargetGroup", "CREATE_FAILED") in progress.seen and progress.seen[-1] == (NAME, "ROLLBACK_COMPLETE")

    status = await deployer(cf).status(SPEC.model_id)
    assert status is not None and status.state == DeploymentState.failed and status.endpoint_url is None
    assert status.reason is not None and HEALTH_REASON in status.reason

    # Deploying again (a retried workflow step) reports the same failure; it does not create a second time.
    with pytest.raises(DeploymentFailed) as again:
        await deployer(cf).deploy(SPEC)
    assert (again.value.resource, again.value.reason) == ("TargetGroup", failed.reason)
    assert len(cf.called("create_stack")) == 1
    # Nor can it be updated: it has to be deleted first.
    with pytest.raises(DeploymentFailed, match="is ROLLBACK_COMPLETE and cannot be updated: delete"):
        await deployer(cf).update(SPEC)
    assert not cf.called("update_stack")


async def test_a_timeout_of_cloudformation_itself_gives_the_stacks_reason() -> None:
    cf = ScriptedCloudFormation(NAME, SPEC.model_id, on_create=[
        ("CREATE_IN_PROGRESS", [("Service", SVC, "CREATE_IN_PROGRESS", None)]),
        ("ROLLBACK_IN_PROGRESS", [
            ("Service", SVC, "CREATE_FAILED", "Resource creation cancelled"),
            (NAME, STACK_TYPE, "ROLLBACK_IN_PROGRESS",
             "Stack creation time exceeded the specified timeout. Rollback requested by user."),
        ]),
        ("ROLLBACK_COMPLETE", [(NAME, STACK_TYPE, "ROLLBACK_COMPLETE", None)]),
    ])  # fmt: skip
    with pytest.raises(DeploymentFailed) as caught:
        await deployer(cf).deploy(SPEC)
    assert caught.value.resource is None
    assert caught.value.reason == (
        f"stack {NAME} ROLLBACK_COMPLETE: Stack creation time exceeded the specified timeout. Rollback requested by user."
    )


async def test_the_deadline_names_what_it_was_waiting_on() -> None:
    stuck: list[Step] = [
        ("CREATE_IN_PROGRESS", [("Service", SVC, "CREATE_IN_PROGRESS", None)]),
        ("CREATE_IN_PROGRESS", [("Service", SVC, "CREATE_IN_PROGRESS", "Eventual consistency check initiated")]),
    ]
    cf = ScriptedCloudFormation(NAME, SPEC.model_id, on_create=stuck)
    with pytest.raises(DeploymentTimeout) as caught:
        await deployer(cf, timeout=0.2).deploy(SPEC)
    assert (caught.value.step, caught.value.resource) == ("create", "Service")
    assert caught.value.reason.startswith(f"stack {NAME} still CREATE_IN_PROGRESS after 0.2 s; waiting on ")
    assert caught.value.reason.endswith(f"CREATE_IN_PROGRESS ({SVC}) since 2026-01-01T00:00:15+00:00: Eventual "
                                        "consistency check initiated")  # fmt: skip
    status = await deployer(cf).status(SPEC.model_id)
    assert status is not None and status.state == DeploymentState.in_progress


async def test_a_create_left_running_by_a_crash_is_followed_not_repeated() -> None:
    cf = ScriptedCloudFormation(NAME, SPEC.model_id).exists("CREATE_IN_PROGRESS", then=CREATED)
    progress = Recorder()
    deployment = await deployer(cf).deploy(SPEC, progress)
    assert deployment.state == DeploymentState.ready
    assert not cf.called("create_stack")
    assert progress.seen[0] == (NAME, "CREATE_IN_PROGRESS") and progress.seen[-1] == (NAME, "CREATE_COMPLETE")


async def test_a_stack_being_deleted_is_waited_for_then_created_again() -> None:
    cf = ScriptedCloudFormation(NAME, SPEC.model_id, on_create=CREATED)
    cf.exists("CREATE_COMPLETE")
    cf.delete_stack(StackName=cf.stack_id)  # a delete under way
    cf.pending = [("DELETE_IN_PROGRESS", []), ("DELETE_COMPLETE", [(NAME, STACK_TYPE, "DELETE_COMPLETE", None)])]
    deployment = await deployer(cf).deploy(SPEC)
    assert deployment.state == DeploymentState.ready and len(cf.called("create_stack")) == 1


async def test_an_update_that_rolls_back_fails_and_the_old_version_still_serves() -> None:
    reason = 'Resource handler returned message: "Invalid request provided: No Container Instances were found"'
    cf = ScriptedCloudFormation(NAME, SPEC.model_id, on_update=[
        ("UPDATE_IN_PROGRESS", [("TaskDefinition", "AWS::ECS::TaskDefinition", "UPDATE_IN_PROGRESS", None)]),
        ("UPDATE_ROLLBACK_IN_PROGRESS", [
            ("TaskDefinition", "AWS::ECS::TaskDefinition", "UPDATE_FAILED", reason),
            (NAME, STACK_TYPE, "UPDATE_ROLLBACK_IN_PROGRESS", "The following resource(s) failed to update: [TaskDefinition]."),
        ]),
        ("UPDATE_ROLLBACK_COMPLETE", [(NAME, STACK_TYPE, "UPDATE_ROLLBACK_COMPLETE", None)]),
    ]).exists("CREATE_COMPLETE", history=CREATED)  # fmt: skip
    progress = Recorder()
    with pytest.raises(DeploymentFailed) as caught:
        await deployer(cf).update(SPEC, progress)
    assert (caught.value.step, caught.value.resource) == ("update", "TaskDefinition")
    assert reason in caught.value.reason
    assert ("TargetGroup", "CREATE_COMPLETE") not in progress.seen  # only this operation's events are reported
    assert progress.seen[0] == (NAME, "UPDATE_IN_PROGRESS")

    status = await deployer(cf).status(SPEC.model_id)
    assert status is not None and status.state == DeploymentState.ready and status.endpoint_url
    assert status.reason is not None and status.reason.startswith("the last update was rolled back: ")


async def test_an_update_left_running_that_failed_is_reported_not_retried() -> None:
    cf = ScriptedCloudFormation(NAME, SPEC.model_id).exists("UPDATE_IN_PROGRESS", then=[
        ("UPDATE_ROLLBACK_IN_PROGRESS", [("Service", SVC, "UPDATE_FAILED", "Service did not stabilize")]),
        ("UPDATE_ROLLBACK_COMPLETE", [(NAME, STACK_TYPE, "UPDATE_ROLLBACK_COMPLETE", None)]),
    ])  # fmt: skip
    with pytest.raises(DeploymentFailed, match=r"update failed at Service: UPDATE_FAILED .*did not stabilize"):
        await deployer(cf).update(SPEC)
    assert not cf.called("update_stack")


async def test_nothing_to_update_is_success() -> None:
    cf = ScriptedCloudFormation(NAME, SPEC.model_id, no_updates=True).exists("UPDATE_COMPLETE")
    deployment = await deployer(cf).update(SPEC)
    assert deployment.state == DeploymentState.ready and deployment.detail == "UPDATE_COMPLETE"
    assert len(cf.called("update_stack")) == 1


async def test_a_failed_delete_names_the_resource() -> None:
    reason = "resource sg-0abc has a dependent object (Service: Ec2, Status Code: 400)"
    cf = ScriptedCloudFormation(NAME, SPEC.model_id, on_delete=[
        ("DELETE_IN_PROGRESS", [("LoadBalancerSecurityGroup", SG, "DELETE_IN_PROGRESS", None)]),
        ("DELETE_FAILED", [("LoadBalancerSecurityGroup", SG, "DELETE_FAILED", reason),
                           (NAME, STACK_TYPE, "DELETE_FAILED", "The following resource(s) failed to delete: [...]")]),
    ]).exists("CREATE_COMPLETE")  # fmt: skip
    with pytest.raises(DeploymentFailed) as caught:
        await deployer(cf).delete(SPEC.model_id)
    assert (caught.value.step, caught.value.resource) == ("delete", "LoadBalancerSecurityGroup")
    assert caught.value.reason == f"DELETE_FAILED ({SG}): {reason}"
    (delete,) = cf.called("delete_stack")
    assert delete == {"StackName": cf.stack_id, "RoleARN": PLATFORM.deploy_role_arn}


async def test_a_delete_is_followed_to_the_end() -> None:
    cf = ScriptedCloudFormation(NAME, SPEC.model_id, on_delete=[
        ("DELETE_IN_PROGRESS", [("Service", SVC, "DELETE_IN_PROGRESS", None)]),
        ("DELETE_COMPLETE", [("Service", SVC, "DELETE_COMPLETE", None), (NAME, STACK_TYPE, "DELETE_COMPLETE", None)]),
    ]).exists("UPDATE_COMPLETE")  # fmt: skip
    progress = Recorder()
    await deployer(cf).delete(SPEC.model_id, progress)
    assert progress.seen == [
        (NAME, "DELETE_IN_PROGRESS"),
        ("Service", "DELETE_IN_PROGRESS"),
        ("Service", "DELETE_COMPLETE"),
        (NAME, "DELETE_COMPLETE"),
    ]
    assert await deployer(cf).status(SPEC.model_id) is None
    await deployer(cf).delete(SPEC.model_id)  # gone: success, nothing more called
    assert len(cf.called("delete_stack")) == 1


async def test_another_models_stack_is_never_touched() -> None:
    cf = ScriptedCloudFormation(NAME, "someone-else").exists("CREATE_COMPLETE")
    ecs = deployer(cf)
    for operation in (ecs.deploy(SPEC), ecs.update(SPEC), ecs.delete(SPEC.model_id), ecs.status(SPEC.model_id)):
        with pytest.raises(Conflict, match=f"stack {NAME} belongs to model 'someone-else', not 'llama-3.1-8b'"):
            await operation
    assert {name for name, _ in cf.calls} == {"describe_stacks"}


async def test_events_are_listed_oldest_first() -> None:
    cf = ScriptedCloudFormation(NAME, SPEC.model_id).exists("CREATE_COMPLETE", history=CREATED)
    events = await deployer(cf).events(SPEC.model_id, limit=4)
    assert [(e.resource, e.status) for e in events] == [
        ("TargetGroup", "CREATE_COMPLETE"),
        ("Service", "CREATE_IN_PROGRESS"),
        ("Service", "CREATE_COMPLETE"),
        (NAME, "CREATE_COMPLETE"),
    ]
    assert [e.time for e in events] == sorted(e.time for e in events)
    assert len(await deployer(cf).events(SPEC.model_id)) == 6
    assert await deployer(ScriptedCloudFormation(NAME, SPEC.model_id)).events(SPEC.model_id) == []
