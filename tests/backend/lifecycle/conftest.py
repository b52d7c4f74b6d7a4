"""The lifecycle tests' own LISA (tests/backend/lifecycle/lifecycle_server.py), shared by their modules."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.backend.lifecycle.lifecycle_server import LifecycleLisa
from tests.support import Proc


@pytest.fixture(scope="session")
def lifecycle_lisa(tmp_path_factory: pytest.TempPathFactory, moto_server: Proc) -> Iterator[LifecycleLisa]:
    lisa = LifecycleLisa(tmp_path_factory.mktemp("lifecycle"), moto_server)
    lisa.start()
    yield lisa
    lisa.stop()
