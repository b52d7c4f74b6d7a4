"""Faults injected by the tests, never configured in a deployment: with ``LISA_TEST_LIFECYCLE_FAULTS`` naming a JSON
file, the workflow runner reads it at each point and

- ``{"crash": "<kind>:<step>:<phase>"}`` ends the whole process at once (``os._exit``: no cleanup, as a kill would)
  when a ``kind`` workflow reaches ``step`` at ``phase``: ``start`` (the step is recorded as started, nothing done
  yet), ``during`` (the deployer reported its first event of the step: its operation is under way) or ``end`` (the
  step is recorded as done, the next not started);
- ``{"stall": "<kind>:<step>"}`` makes that step wait forever (its deadline ends it).

The file is read at each point, so a test changes it between workflows without restarting LISA."""

from __future__ import annotations

import asyncio
import json
import logging
import os
from pathlib import Path
from typing import Any

ENV = "LISA_TEST_LIFECYCLE_FAULTS"
CRASH_EXIT_CODE = 75
log = logging.getLogger("lisa.lifecycle")


def _faults() -> dict[str, Any]:
    path = os.environ.get(ENV)
    if not path:
        return {}
    try:
        loaded = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return {}
    return loaded if isinstance(loaded, dict) else {}


def crash_point(kind: str, step: str, phase: str) -> None:
    if _faults().get("crash") == f"{kind}:{step}:{phase}":
        log.error("test fault: crashing at %s:%s:%s", kind, step, phase)
        os._exit(CRASH_EXIT_CODE)


async def stall_point(kind: str, step: str) -> None:
    if _faults().get("stall") == f"{kind}:{step}":
        log.error("test fault: stalling %s:%s until its deadline", kind, step)
        await asyncio.Event().wait()
