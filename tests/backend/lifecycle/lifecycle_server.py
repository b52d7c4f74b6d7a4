"""A LISA of the lifecycle tests' own (no local models; its own data dir and database), deploying on ECS against the
session's `moto_server`, with faults the tests inject (backend/lifecycle/faults.py), short stall detection and fast
health checks. Tests crash it, restart it on the same data dir, and read its database and moto's stacks."""

from __future__ import annotations

import asyncio
import json
import signal
import time
from pathlib import Path
from typing import Any

import asyncpg
import boto3
import httpx
import psutil

from backend.db.engine import asyncpg_dsn
from backend.lifecycle.deployers.ecs_spec import stack_name
from backend.lifecycle.faults import CRASH_EXIT_CODE
from tests.support import LisaServer, Proc, start_lisa, wait_for

REGION = "us-east-1"
AWS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": REGION}
PREFIX = "lisa-model"
SPEC = {"engine": "vllm", "instance_type": "g5.xlarge", "weights": {"prefix": "models/llama"}}


def network(moto: Proc) -> dict[str, str]:
    """A VPC with two subnets and the gateway's security group in moto: what the core stack's outputs give."""
    ec2 = boto3.client("ec2", endpoint_url=moto.url, region_name=REGION, **_keys())
    vpc = ec2.create_vpc(CidrBlock="10.20.0.0/16")["Vpc"]["VpcId"]
    subnets = [
        ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.20.{i}.0/24", AvailabilityZone=f"{REGION}{zone}")["Subnet"][
            "SubnetId"
        ]
        for i, zone in ((1, "a"), (2, "b"))
    ]
    group = ec2.create_security_group(GroupName="lisa-gateway", Description="gateway", VpcId=vpc)["GroupId"]
    return {
        "LISA_AWS_VPC_ID": vpc,
        "LISA_AWS_PRIVATE_SUBNET_IDS": ",".join(subnets),
        "LISA_AWS_GATEWAY_SECURITY_GROUP_ID": group,
    }


def _keys() -> dict[str, str]:
    return {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}


class LifecycleLisa:
    def __init__(self, root: Path, moto: Proc) -> None:
        self.root = root
        self.data_dir = root / "data"
        self.faults = root / "faults.json"
        self.faults.write_text("{}")
        self.moto = moto
        self.ingest_root = root / "ingest"  # pipelines (users of a model) read folders under it
        self.ingest_root.mkdir(exist_ok=True)
        self.models_dir = root / "models"  # the local deployer's model folder (LISA_LOCAL_MODEL_DIRS)
        self.models_dir.mkdir(exist_ok=True)
        self.base_env = {
            **AWS,
            **network(moto),
            "LISA_AWS_ENDPOINT_URL": moto.url,
            "LISA_AWS_REGION": REGION,
            "LISA_AWS_MODEL_WEIGHTS_BUCKET": "lisa-weights",
            "LISA_AWS_MODEL_IMAGE_VLLM": "ecr/lisa-vllm:1",
            "LISA_AWS_MODEL_STACK_POLL_SECONDS": "0.2",
            "LISA_TEST_LIFECYCLE_FAULTS": str(self.faults),
            "LISA_RAG_STALLED_SECONDS": "2",
            "LISA_RAG_HEARTBEAT_SECONDS": "0.5",
            "LISA_HEALTH_INTERVAL_SECONDS": "1",
            "LISA_HEALTH_TIMEOUT_SECONDS": "1",
            "LISA_HEALTH_FAILURES": "2",
            "LISA_LIFECYCLE_PROBE_SECONDS": "1",
            "LISA_LIFECYCLE_STEP_SECONDS": "120",
            "LISA_RAG_INGEST_ROOTS": json.dumps([str(self.ingest_root)]),
            "LISA_LOCAL_MODEL_DIRS": json.dumps([str(self.models_dir)]),
        }
        self.server: LisaServer | None = None

    # --- the process ---------------------------------------------------------------------------------------------
    def start(self, **env: str) -> LisaServer:
        self.server = start_lisa(self.data_dir, local_models=False, env={**self.base_env, **env})
        return self.server

    @property
    def running(self) -> LisaServer:
        assert self.server is not None and self.server.proc.popen.poll() is None, "the lifecycle LISA is not running"
        return self.server

    def client(self, token: str | None = None) -> httpx.Client:
        return self.running.client(token, timeout=60)

    def wait_crash(self, timeout: float = 90) -> None:
        """The injected fault ended the process (exit code CRASH_EXIT_CODE); its PostgreSQL follows it down."""
        server = self.running
        code = server.proc.popen.wait(timeout)
        assert code == CRASH_EXIT_CODE, f"exit code {code}, not the injected crash:\n{server.proc.log_tail()}"
        pgdata = str(self.data_dir.resolve() / "pgdata")
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and any(
            p.info["name"] == "postgres" and pgdata in (p.info["cmdline"] or [])
            for p in psutil.process_iter(["name", "cmdline"])
        ):
            time.sleep(0.2)
        self.server = None

    def stop(self) -> None:
        if self.server is not None and self.server.proc.popen.poll() is None:
            self.server.proc.stop(signal.SIGINT, timeout=60)
        self.server = None

    def set_faults(self, **faults: str) -> None:
        self.faults.write_text(json.dumps(faults))

    # --- what it holds -------------------------------------------------------------------------------------------
    def sql(self, statement: str, *args: Any) -> list[dict[str, Any]]:
        async def run() -> list[dict[str, Any]]:
            conn = await asyncpg.connect(asyncpg_dsn(self.running.database_url))
            try:
                return [dict(r) for r in await conn.fetch(statement, *args)]
            finally:
                await conn.close()

        return asyncio.run(run())

    def stacks(self, model_id: str) -> list[dict[str, Any]]:
        """The model's stacks in moto that are not deleted (one at most, whatever crashed)."""
        cf = boto3.client("cloudformation", endpoint_url=self.moto.url, region_name=REGION, **_keys())
        name = stack_name(PREFIX, model_id)
        summaries = cf.list_stacks()["StackSummaries"]
        return [s for s in summaries if s["StackName"] == name and s["StackStatus"] != "DELETE_COMPLETE"]


def wait_status(client: httpx.Client, model_id: str, status: str | None, timeout: float = 90) -> dict[str, Any]:
    """The model once its status is ``status`` (None: once it is gone); fails early on an unexpected Failed."""

    def check() -> Any:
        resp = client.get(f"/api/models/{model_id}")
        if status is None:
            return resp.status_code == 404
        assert resp.status_code == 200, resp.text
        body = resp.json()
        if body["status"] == "Failed" and status != "Failed":
            raise AssertionError(f"{model_id} failed: {body['status_reason']}")
        return body if body["status"] == status else None

    result: Any = wait_for(f"{model_id} {status or 'gone'}", check, timeout)
    return result if isinstance(result, dict) else {}


def events(client: httpx.Client, model_id: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    cursor: str | None = None
    while True:
        resp = client.get(
            f"/api/models/{model_id}/events", params={"limit": 500, **({"cursor": cursor} if cursor else {})}
        )
        assert resp.status_code == 200, resp.text
        found += resp.json()["data"]
        cursor = resp.json()["next_cursor"]
        if not cursor:
            return found
