"""boto3 clients pointed at the session's moto_server (tests/conftest.py), for the stack tests."""

from __future__ import annotations

from typing import Any

import boto3
import pytest

from tests.deploy.cfn import Client
from tests.support import Proc

REGION = "us-east-1"


@pytest.fixture(scope="session")
def aws(moto_server: Proc) -> Client:
    """aws("ecs") -> a boto3 client of moto_server, with dummy credentials."""
    clients: dict[str, Any] = {}

    def client(service: str) -> Any:
        if service not in clients:
            clients[service] = boto3.client(
                service,
                endpoint_url=moto_server.url,
                region_name=REGION,
                aws_access_key_id="testing",
                aws_secret_access_key="testing",
            )
        return clients[service]

    return client
