"""Fixtures of the egress guard's tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.backend.net.listener import Listener


@pytest.fixture
def listener() -> Iterator[Listener]:
    server = Listener()
    yield server
    server.close()
