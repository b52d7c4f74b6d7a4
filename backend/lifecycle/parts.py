"""The lifecycle's parts for one backend process, built with the service graph (backend/services.py): the deployers,
the workflow runner and its worker (on the RAG worker's procrastinate app), the health checks and the service the
routes call."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from typing import Any

from procrastinate import App
from sqlalchemy.ext.asyncio import AsyncEngine

from backend.config import Settings
from backend.lifecycle.deployers import Deployer, open_deployer
from backend.lifecycle.deployments import Deployers, Opener
from backend.lifecycle.finish import Finisher
from backend.lifecycle.health import HealthMonitor
from backend.lifecycle.probe import Probe
from backend.lifecycle.runner import Deadlines, WorkflowRunner
from backend.lifecycle.service import AutomaticActions, LifecycleService
from backend.lifecycle.worker import LifecycleWorker
from backend.net.egress import EgressGuard
from backend.registry.service import ModelRegistry


@dataclass
class LifecycleServices:
    service: LifecycleService
    actions: AutomaticActions  # enable/disable for what acts on its own (schedules: LifecycleActions)
    worker: LifecycleWorker
    health: HealthMonitor
    probe: Probe
    deployers: Deployers
    _running: AsyncExitStack = field(default_factory=AsyncExitStack, init=False, repr=False)

    @classmethod
    def build(
        cls,
        settings: Settings,
        engine: AsyncEngine,
        registry: ModelRegistry,
        egress: EgressGuard,
        app: App,
        on_tick: list[Callable[[], Awaitable[None]]],
        opener: Opener = open_deployer,
        opened: Mapping[str, Deployer[Any]] | None = None,
    ) -> LifecycleServices:
        """``app`` is the RAG worker's procrastinate app (opened by it); ``on_tick`` its once-a-minute hooks;
        ``opened`` the deployers the service graph runs itself (the local deployer), by kind."""
        deployers = Deployers(settings, opener, opened)
        probe = Probe(egress, settings.health_timeout_seconds)
        deadlines = Deadlines(
            deployer=settings.lifecycle_step_seconds,
            # waiting for an answer, then two questions of the context window
            probe=settings.lifecycle_probe_seconds + 3 * settings.health_timeout_seconds + 30,
        )
        finisher = Finisher(engine, registry, settings.health_failures)
        runner = WorkflowRunner(
            engine, finisher, deployers, probe, deadlines=deadlines, probe_seconds=settings.lifecycle_probe_seconds
        )
        worker = LifecycleWorker(
            app,
            engine,
            runner,
            run_worker=settings.lifecycle_worker,
            concurrency=settings.lifecycle_workflows,
            heartbeat_seconds=settings.rag_heartbeat_seconds,
            stalled_seconds=settings.rag_stalled_seconds,
        )
        on_tick.append(worker.resume)
        health = HealthMonitor(
            engine, registry, probe, interval=settings.health_interval_seconds, failures=settings.health_failures
        )
        service = LifecycleService(engine, registry, deployers, probe, worker, settings.health_failures)
        return cls(service, AutomaticActions(service), worker, health, probe, deployers)

    async def start(self) -> None:
        """After the procrastinate app is open; a failure stops what had started, then propagates."""
        async with AsyncExitStack() as stack:
            stack.push_async_callback(self.deployers.aclose)
            stack.push_async_callback(self.probe.aclose)
            stack.push_async_callback(self.worker.stop)
            await self.worker.start()
            stack.push_async_callback(self.health.stop)
            await self.health.start()
            self._running = stack.pop_all()

    async def stop(self) -> None:
        await self._running.aclose()
