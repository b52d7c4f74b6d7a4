"""moto_server as a real process for the stack tests, and boto3 clients pointed at it."""

from __future__ import annotations

import signal
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from tests.deploy.cfn import Client
from tests.support import Proc, free_port, start_process

REGION = "us-east-1"


@pytest.fixture(scope="session")
def moto_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Proc]:
    port = free_port()
    argv = [str(Path(sys.executable).parent / "moto_server"), "-H", "127.0.0.1", "-p", str(port)]
    log = tmp_path_factory.mktemp("moto") / "moto_server.log"
    proc = start_process(argv, port=port, log=log, health="/moto-api/", deadline=60)
    yield proc
    proc.stop(signal.SIGTERM)


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
