"""What the scheduler (and anything else that starts or stops models on its own) asks of the model lifecycle.

The lifecycle workflows implement it: ``enable`` starts a Stopped model's Starting workflow, ``disable`` an InService
model's Stopping workflow; both return once the workflow is queued (not finished), and refuse (``Conflict``) a model
in any other state. ``reason`` is recorded with the workflow's events and the audit entry (``schedule ...: the
window opened at ...``).
"""

from __future__ import annotations

from typing import Protocol


class LifecycleActions(Protocol):
    async def enable(self, model_id: str, reason: str) -> None: ...

    async def disable(self, model_id: str, reason: str) -> None: ...
