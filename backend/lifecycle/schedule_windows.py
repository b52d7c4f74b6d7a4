"""Daily windows in which an expensive model runs (weekdays 08:00-18:00 Europe/Berlin), and the scheduler's decision
as a pure function: :func:`decide` (schedule, now, the model's status, the last change already acted on -> enable,
disable or nothing).

A window opens on each of its ``days`` at ``start`` local time and closes at ``end``, the same day, or the next when
``end`` is earlier (22:00-06:00). Local times go through zoneinfo: a start that does not exist (inside a spring-forward
gap) falls after the gap, a time that occurs twice (fall-back) means its first occurrence.

The scheduler acts on changes, not on levels: when a window opens it enables the model, when it closes it disables
it, each once. An admin who disables a model inside its window, or enables it outside, is not overruled until the
next opening or closing. A schedule seen for the first time (just set) puts the model where the window says now.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from enum import StrEnum
from typing import Annotated, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from backend.registry.schemas import ModelStatus
from backend.text import Text

Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
WEEKDAYS: tuple[Weekday, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
TimeOfDay = Annotated[str, Field(pattern=r"^([01][0-9]|2[0-3]):[0-5][0-9]$", examples=["08:00"])]
# A model in one of these is being changed by a workflow: nothing is decided until it settles.
BUSY = {ModelStatus.creating, ModelStatus.starting, ModelStatus.stopping, ModelStatus.updating, ModelStatus.deleting}


def zone(name: str) -> ZoneInfo:
    """The IANA time zone ``name`` (``Europe/Berlin``, ``UTC``), or ValueError."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise ValueError(f"unknown time zone '{name}' (use an IANA name such as 'Europe/Berlin' or 'UTC')") from None


class ScheduleWindow(BaseModel):
    """When a model runs: every listed day from ``start`` to ``end``, local time in ``timezone``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    timezone: Text = Field(min_length=1, max_length=64, examples=["Europe/Berlin"], description="IANA time zone.")
    days: list[Weekday] = Field(min_length=1, max_length=7, description="The days a window opens on.")
    start: TimeOfDay = Field(description="Local time the model is started, HH:MM.")
    end: TimeOfDay = Field(description="Local time it is stopped, HH:MM; earlier than start: the next day.")

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        zone(value)
        return value

    @field_validator("days")
    @classmethod
    def _week_order(cls, value: list[Weekday]) -> list[Weekday]:
        if len(set(value)) != len(value):
            raise ValueError("days must not repeat a day")
        return sorted(value, key=WEEKDAYS.index)

    @model_validator(mode="after")
    def _start_is_not_end(self) -> ScheduleWindow:
        if self.start == self.end:
            raise ValueError(
                f"start and end are both {self.start}: a window needs a length (for always on, no schedule)"
            )
        return self

    def describe(self) -> str:
        return f"{','.join(self.days)} {self.start}-{self.end} {self.timezone}"


@dataclass(frozen=True, slots=True)
class Window:
    opens: datetime  # aware, UTC
    closes: datetime


def _local(day: date, at: str, tz: ZoneInfo) -> datetime:
    hour, minute = (int(part) for part in at.split(":"))
    # fold=0: an ambiguous time is its first occurrence; a time in a gap converts with the offset before it, which
    # puts it just after the gap.
    return datetime.combine(day, time(hour, minute), tzinfo=tz).astimezone(UTC)


def windows(schedule: ScheduleWindow, around: datetime, days: int = 8) -> list[Window]:
    """The windows that open within ``days`` days either side of ``around`` (aware), oldest first."""
    tz = zone(schedule.timezone)
    today = around.astimezone(tz).date()
    found: list[Window] = []
    overnight = schedule.end < schedule.start
    for offset in range(-days, days + 1):
        day = today + timedelta(days=offset)
        if WEEKDAYS[day.weekday()] not in schedule.days:
            continue
        opens = _local(day, schedule.start, tz)
        closes = _local(day + timedelta(days=1) if overnight else day, schedule.end, tz)
        if closes > opens:  # a window swallowed whole by a time change is skipped
            found.append(Window(opens, closes))
    return found


def is_open(schedule: ScheduleWindow, now: datetime) -> bool:
    return any(w.opens <= now < w.closes for w in windows(schedule, now))


def last_change(schedule: ScheduleWindow, now: datetime) -> datetime | None:
    """The latest opening or closing at or before ``now``."""
    past = [t for w in windows(schedule, now) for t in (w.opens, w.closes) if t <= now]
    return max(past, default=None)


def next_change(schedule: ScheduleWindow, now: datetime) -> tuple[Action, datetime] | None:
    """The next opening (enable) or closing (disable) after ``now``."""
    upcoming = [
        (t, a) for w in windows(schedule, now) for t, a in ((w.opens, Action.enable), (w.closes, Action.disable))
    ]
    later = sorted((t, a) for t, a in upcoming if t > now)
    return (later[0][1], later[0][0]) if later else None


class Action(StrEnum):
    enable = "enable"
    disable = "disable"


@dataclass(frozen=True, slots=True)
class Decision:
    action: Action | None
    # The change this decision answers, to store as acted on; None: decide again at the next evaluation.
    settles: datetime | None
    reason: str


def decide(schedule: ScheduleWindow, now: datetime, status: ModelStatus, acted_through: datetime | None) -> Decision:
    """What the scheduler does now. ``acted_through``: the latest opening or closing already acted on (None: none,
    the schedule is new). A change is acted on once: by enabling or disabling, or by finding the model where the
    window says already, or Failed (left alone); while a workflow changes the model, nothing is settled."""
    change = last_change(schedule, now)
    if change is None or (acted_through is not None and change <= acted_through):
        return Decision(None, None, "no window opened or closed since the last decision")
    running = is_open(schedule, now)
    what = "opened" if running else "closed"
    when = change.astimezone(zone(schedule.timezone)).isoformat(timespec="minutes")
    if status in BUSY:
        return Decision(
            None, None, f"the window {what} at {when}, but the model is {status.value}: decided again later"
        )
    reason = f"schedule {schedule.describe()}: the window {what} at {when}"
    if running and status == ModelStatus.stopped:
        return Decision(Action.enable, change, reason)
    if not running and status == ModelStatus.in_service:
        return Decision(Action.disable, change, reason)
    if status == ModelStatus.failed:
        return Decision(None, change, f"{reason}; the model is Failed, so it is left as it is")
    return Decision(None, change, f"{reason}; the model is {status.value} already")
