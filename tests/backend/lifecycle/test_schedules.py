"""Model schedules through the running server (/api/models/{id}/schedule), and the scheduler end to end on its
database: a recording LifecycleActions stands in for the workflows and moves the model's status as they would.

The server is these tests' own, with no background worker (``LISA_RAG_WORKER=false``): the only scheduler ticks on
its database are the ones the tests drive, at the times they give. On a server whose worker ticks once a minute,
a real tick could act on a test's schedule at the real time (disabling its model, recording its own last action)
or hold the tick's lock at the moment a test's tick runs (which then does nothing), between two assertions."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from backend.db import tables
from backend.db.engine import create_engine
from backend.lifecycle.schedule_windows import Action
from backend.lifecycle.schedules import Scheduler
from backend.registry.schemas import ModelStatus
from tests.support import LisaServer, start_lisa

BERLIN = ZoneInfo("Europe/Berlin")
OFFICE = {"timezone": "Europe/Berlin", "days": ["fri", "mon", "tue", "wed", "thu"], "start": "08:00", "end": "18:00"}


@pytest.fixture(scope="module")
def lisa(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LisaServer]:
    """This module's own LISA, where no scheduler tick runs unless a test drives it (see above)."""
    server = start_lisa(
        tmp_path_factory.mktemp("schedules") / "data", local_models=False, env={"LISA_RAG_WORKER": "false"}
    )
    yield server
    server.proc.stop()


@pytest.fixture(scope="module")
def admin(lisa: LisaServer) -> Iterator[httpx.Client]:
    with lisa.client() as client:
        yield client


@pytest.fixture
def model_id(admin: httpx.Client) -> Iterator[str]:
    model_id = f"sched/{secrets.token_hex(3)}"
    body = {"id": model_id, "type": "textgen", "hosting": "internal", "base_url": "http://127.0.0.1:9/v1"}
    assert admin.post("/api/models", json=body).status_code == 201
    yield model_id
    admin.delete(f"/api/models/{model_id}")


@pytest.fixture
async def api(lisa: LisaServer) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=lisa.url, headers=lisa.headers, timeout=60) as client:
        yield client


@pytest.fixture
async def engine(lisa: LisaServer) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(lisa.database_url, 2)
    yield engine
    await engine.dispose()


def detail(resp: httpx.Response, status: int) -> str:
    assert resp.status_code == status, resp.text
    return str(resp.json()["detail"])


def test_an_admin_sets_reads_replaces_and_removes_a_schedule(admin: httpx.Client, model_id: str) -> None:
    assert admin.get(f"/api/models/{model_id}/schedule").status_code == 404
    put = admin.put(f"/api/models/{model_id}/schedule", json=OFFICE)
    assert put.status_code == 200, put.text
    body = put.json()
    assert body["model_id"] == model_id
    assert (body["timezone"], body["days"], body["start"], body["end"]) == (
        "Europe/Berlin", ["mon", "tue", "wed", "thu", "fri"], "08:00", "18:00",
    )  # fmt: skip
    assert body["next_change"]["action"] in ("enable", "disable")
    assert body["last_action"] is None and body["last_error"] is None
    assert admin.get(f"/api/models/{model_id}/schedule").json() == body | {"is_open": body["is_open"]}

    replaced = admin.put(f"/api/models/{model_id}/schedule", json={**OFFICE, "days": ["sat"], "end": "02:00"})
    assert replaced.status_code == 200 and replaced.json()["days"] == ["sat"] and replaced.json()["end"] == "02:00"

    audit = admin.get("/api/audit", params={"resource_id": model_id}).json()["data"]
    assert [e["action"] for e in audit if e["action"].startswith("model.schedule")][:2] == ["model.schedule.set"] * 2

    assert admin.delete(f"/api/models/{model_id}/schedule").status_code == 204
    assert admin.get(f"/api/models/{model_id}/schedule").status_code == 404
    assert admin.delete(f"/api/models/{model_id}/schedule").status_code == 404


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"timezone": "Europe/Atlantis"}, "unknown time zone 'Europe/Atlantis'"),
        ({"start": "09:30", "end": "09:30"}, "start and end are both 09:30"),
        ({"days": ["mon", "mon"]}, "must not repeat a day"),
        ({"days": []}, "days"),
        ({"start": "25:00"}, "start"),
        ({"timezone": "Europe/Ber\x00lin"}, "timezone"),
        ({"enabled": False}, "enabled"),
    ],
)
def test_invalid_schedules_are_refused_and_the_stored_one_stays(
    admin: httpx.Client, model_id: str, change: dict[str, Any], message: str
) -> None:
    assert admin.put(f"/api/models/{model_id}/schedule", json=OFFICE).status_code == 200
    assert message in detail(admin.put(f"/api/models/{model_id}/schedule", json={**OFFICE, **change}), 422)
    assert admin.get(f"/api/models/{model_id}/schedule").json()["days"] == ["mon", "tue", "wed", "thu", "fri"]


def test_only_admins_see_or_change_schedules_and_unknown_models_are_404(
    admin: httpx.Client, lisa: LisaServer, model_id: str
) -> None:
    created = admin.post("/api/tokens", json={"name": "sched", "username": "sched-user", "groups": []})
    with lisa.client(created.json()["token"]) as user:
        assert user.get(f"/api/models/{model_id}").status_code == 200  # the model is visible to everyone
        for method in ("GET", "PUT", "DELETE"):
            resp = user.request(method, f"/api/models/{model_id}/schedule", json=OFFICE if method == "PUT" else None)
            assert resp.status_code == 403, (method, resp.text)
    assert "model 'sched/none' not found" in detail(admin.put("/api/models/sched/none/schedule", json=OFFICE), 404)


def test_a_deleted_model_takes_its_schedule_along(admin: httpx.Client, model_id: str) -> None:
    assert admin.put(f"/api/models/{model_id}/schedule", json=OFFICE).status_code == 200
    assert admin.delete(f"/api/models/{model_id}").status_code == 204
    body = {"id": model_id, "type": "textgen", "hosting": "internal", "base_url": "http://127.0.0.1:9/v1"}
    assert admin.post("/api/models", json=body).status_code == 201
    assert admin.get(f"/api/models/{model_id}/schedule").status_code == 404


class RecordingLifecycle:
    """LifecycleActions as a recording: each call noted, and the model's status moved as a workflow would (to
    Starting/Stopping, then, when ``finish`` is called, to InService/Stopped)."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self.calls: list[tuple[str, str, str]] = []
        self.fail_with: Exception | None = None

    async def _status(self, model_id: str, status: ModelStatus) -> None:
        async with self.engine.begin() as conn:
            await conn.execute(tables.models.update().where(tables.models.c.id == model_id).values(status=status))

    async def enable(self, model_id: str, reason: str) -> None:
        if self.fail_with is not None:
            raise self.fail_with
        self.calls.append(("enable", model_id, reason))
        await self._status(model_id, ModelStatus.starting)

    async def disable(self, model_id: str, reason: str) -> None:
        if self.fail_with is not None:
            raise self.fail_with
        self.calls.append(("disable", model_id, reason))
        await self._status(model_id, ModelStatus.stopping)

    async def finish(self, model_id: str) -> None:
        async with self.engine.begin() as conn:
            status = await conn.scalar(sa.select(tables.models.c.status).where(tables.models.c.id == model_id))
        done = {ModelStatus.starting: ModelStatus.in_service, ModelStatus.stopping: ModelStatus.stopped}
        await self._status(model_id, done[ModelStatus(str(status))])


def berlin(year: int, month: int, day: int, hour: int, minute: int) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=BERLIN).astimezone(UTC)


async def test_the_scheduler_enables_and_disables_as_windows_open_and_close(
    api: httpx.AsyncClient, engine: AsyncEngine, model_id: str
) -> None:
    assert (await api.put(f"/api/models/{model_id}/schedule", json=OFFICE)).status_code == 200
    lifecycle = RecordingLifecycle(engine)
    scheduler = Scheduler(engine, lifecycle)

    async def tick(*when: int) -> list[tuple[str, Action]]:
        return [(m, a) for m, a in await scheduler.tick(berlin(*when)) if m == model_id]  # other tests' schedules

    # Set on a Monday before opening time, the model InService: the new schedule stops it.
    assert await tick(2026, 3, 2, 7, 0) == [(model_id, Action.disable)]
    assert lifecycle.calls[-1][2].startswith("schedule mon,tue,wed,thu,fri 08:00-18:00 Europe/Berlin: the window")
    assert await tick(2026, 3, 2, 7, 1) == []  # Stopping: a workflow is at work
    await lifecycle.finish(model_id)
    assert await tick(2026, 3, 2, 7, 30) == []  # Stopped: nothing new

    # 08:00: enabled once, whatever the number of ticks.
    assert await tick(2026, 3, 2, 8, 0) == [(model_id, Action.enable)]
    assert "the window opened at 2026-03-02T08:00+01:00" in lifecycle.calls[-1][2]
    await lifecycle.finish(model_id)
    assert await tick(2026, 3, 2, 8, 1) == []

    # Disabled by hand at noon: not overruled inside the window; the 18:00 closing finds it stopped already.
    async with engine.begin() as conn:
        await conn.execute(
            tables.models.update().where(tables.models.c.id == model_id).values(status=ModelStatus.stopped)
        )
    assert await tick(2026, 3, 2, 12, 0) == []
    assert await tick(2026, 3, 2, 18, 5) == []
    schedule = (await api.get(f"/api/models/{model_id}/schedule")).json()
    assert schedule["last_action"] == "enable"
    assert schedule["last_reason"].endswith("the model is Stopped already")

    # Tuesday 08:00, the lifecycle refusing: the error is kept and the next tick tries again.
    lifecycle.fail_with = RuntimeError("workflow queue unavailable")
    assert await tick(2026, 3, 3, 8, 0) == []
    assert (await api.get(f"/api/models/{model_id}/schedule")).json()["last_error"] == (
        "enable failed: workflow queue unavailable"
    )
    lifecycle.fail_with = None
    assert await tick(2026, 3, 3, 8, 1) == [(model_id, Action.enable)]
    await lifecycle.finish(model_id)
    after = (await api.get(f"/api/models/{model_id}/schedule")).json()
    assert after["last_error"] is None and after["last_action"] == "enable"
    assert datetime.fromisoformat(after["last_action_at"]) == berlin(2026, 3, 3, 8, 1)
    assert [c[0] for c in lifecycle.calls] == ["disable", "enable", "enable"]

    # A schedule replaced meanwhile starts afresh: set at 10:00 for the evening, the model is disabled at once.
    evening = {**OFFICE, "start": "19:00", "end": "23:00"}
    assert (await api.put(f"/api/models/{model_id}/schedule", json=evening)).status_code == 200
    assert await tick(2026, 3, 3, 10, 0) == [(model_id, Action.disable)]


async def test_two_ticks_at_once_act_once(api: httpx.AsyncClient, engine: AsyncEngine, model_id: str) -> None:
    import asyncio

    assert (await api.put(f"/api/models/{model_id}/schedule", json=OFFICE)).status_code == 200
    lifecycle = RecordingLifecycle(engine)
    first, second = Scheduler(engine, lifecycle), Scheduler(engine, lifecycle)
    now = berlin(2026, 3, 2, 7, 0)
    await asyncio.gather(first.tick(now), second.tick(now))
    assert [c[:2] for c in lifecycle.calls if c[1] == model_id] == [("disable", model_id)]
