"""Admin > Usage: metered /v1 traffic per model or per user over time (``/api/usage``, one report per interval:
the backend aggregates a range, so the series is a report per hour or per day)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import gradio as gr
import pandas as pd

from frontend.backend import Backend, shows_errors
from frontend.client import BackendError
from frontend.client_admin import AdminClient
from frontend.schemas_admin import UsageReport

RANGES = {"Last 24 hours (hourly)": (timedelta(hours=1), 24), "Last 14 days (daily)": (timedelta(days=1), 14)}
COLUMNS = ["time", "series", "total_tokens", "requests", "errors", "avg_latency_ms"]


def edges(now: datetime, step: timedelta, count: int) -> list[datetime]:
    end = now.replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
    return [end - step * (count - i) for i in range(count + 1)]


def frame(reports: list[UsageReport], group_by: str) -> pd.DataFrame:
    """One row per interval and series (a model or a user); intervals with no traffic are left out."""
    rows = []
    for report in reports:
        for row in report.rows:
            series = (row.model if group_by == "model" else row.username) or "(none)"
            rows.append(
                [report.start, series, row.total_tokens, row.requests, row.errors, round(row.avg_latency_ms, 1)]
            )
    return pd.DataFrame(rows, columns=COLUMNS)


def totals(data: pd.DataFrame) -> pd.DataFrame:
    if data.empty:
        return pd.DataFrame({"series": [], "total_tokens": []})
    return data.groupby("series", as_index=False)["total_tokens"].sum()


class UsagePanel:
    def __init__(self, backend: Backend) -> None:
        self.backend = backend

    def build(self) -> None:
        with gr.Tab("Usage", id="admin-usage"):
            with gr.Row():
                self.group_by = gr.Radio([("Per model", "model"), ("Per user", "user")], value="model", label="Group")
                self.range = gr.Radio(list(RANGES), value=next(iter(RANGES)), label="Range")
                self.refresh = gr.Button("Refresh", elem_id="lisa-au-refresh")
            self.summary = gr.Markdown(elem_id="lisa-au-summary")
            empty = pd.DataFrame(columns=COLUMNS)
            with gr.Row():
                self.tokens = gr.LinePlot(empty, x="time", y="total_tokens", color="series", title="Tokens")
                self.requests = gr.LinePlot(empty, x="time", y="requests", color="series", title="Requests")
            with gr.Row():
                self.errors = gr.LinePlot(empty, x="time", y="errors", color="series", title="Errors")
                self.latency = gr.LinePlot(
                    empty, x="time", y="avg_latency_ms", color="series", title="Average latency (ms)"
                )
            self.totals = gr.BarPlot(
                pd.DataFrame({"series": [], "total_tokens": []}), x="series", y="total_tokens", title="Tokens in range"
            )

    def outputs(self) -> list[Any]:
        return [self.summary, self.tokens, self.requests, self.errors, self.latency, self.totals]

    def wire(self, demo: gr.Blocks) -> None:
        for trigger in (self.refresh.click, self.group_by.change, self.range.change):
            trigger(self.load, [self.group_by, self.range], self.outputs())

    @shows_errors
    async def load(self, group_by: str, range_name: str, request: gr.Request) -> tuple[Any, ...]:
        step, count = RANGES.get(range_name, next(iter(RANGES.values())))
        client = AdminClient(self.backend.client(request))
        try:
            reports = await client.usage_series(edges(datetime.now(UTC), step, count), group_by)
        except BackendError as exc:
            if exc.status == 403:
                return tuple(gr.skip() for _ in self.outputs())
            raise
        data = frame(reports, group_by)
        summary = (
            f"{int(data['requests'].sum())} requests, {int(data['errors'].sum())} errors, "
            f"{int(data['total_tokens'].sum())} tokens in range."
            if not data.empty
            else "No metered traffic in this range."
        )
        return summary, data, data, data, data, totals(data)
