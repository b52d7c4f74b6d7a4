"""The scheduler's decisions as a pure function: schedule + now (in several time zones, across daylight-saving
changes) + the model's status + the last change acted on -> enable, disable or nothing."""

from __future__ import annotations

from datetime import UTC, datetime, tzinfo
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from pydantic import ValidationError

from backend.lifecycle.schedule_windows import (
    Action,
    ScheduleWindow,
    decide,
    is_open,
    last_change,
    next_change,
    windows,
)
from backend.registry.schemas import ModelStatus

BERLIN, NEW_YORK, TOKYO, KOLKATA = (ZoneInfo(z) for z in ("Europe/Berlin", "America/New_York", "Asia/Tokyo",
                                                          "Asia/Kolkata"))  # fmt: skip
STOPPED, IN_SERVICE = ModelStatus.stopped, ModelStatus.in_service


def window(**fields: Any) -> ScheduleWindow:
    base = {"timezone": "Europe/Berlin", "days": ["mon", "tue", "wed", "thu", "fri"], "start": "08:00", "end": "18:00"}
    return ScheduleWindow.model_validate(base | fields)


def at(tz: tzinfo, year: int, month: int, day: int, hour: int, minute: int, second: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=tz)


OFFICE = window()  # weekdays 08:00-18:00 Berlin; 2026-03-02 is a Monday


def test_a_new_schedule_puts_the_model_where_the_window_says_now() -> None:
    monday_9 = at(BERLIN, 2026, 3, 2, 9, 0)
    decision = decide(OFFICE, monday_9, STOPPED, None)
    assert decision.action == Action.enable
    assert decision.settles == at(BERLIN, 2026, 3, 2, 8, 0)
    assert "the window opened at 2026-03-02T08:00+01:00" in decision.reason
    evening = decide(OFFICE, at(BERLIN, 2026, 3, 2, 19, 0), IN_SERVICE, None)
    assert (evening.action, evening.settles) == (Action.disable, at(BERLIN, 2026, 3, 2, 18, 0))
    already = decide(OFFICE, monday_9, IN_SERVICE, None)
    assert (already.action, already.settles) == (None, at(BERLIN, 2026, 3, 2, 8, 0))
    assert already.reason.endswith("the model is InService already")


def test_each_opening_and_closing_is_acted_on_once() -> None:
    opened = at(BERLIN, 2026, 3, 2, 8, 0)
    assert decide(OFFICE, at(BERLIN, 2026, 3, 2, 7, 59), STOPPED, at(BERLIN, 2026, 2, 27, 18, 0)).action is None
    first = decide(OFFICE, at(BERLIN, 2026, 3, 2, 8, 0, 30), STOPPED, at(BERLIN, 2026, 2, 27, 18, 0))
    assert (first.action, first.settles) == (Action.enable, opened)
    again = decide(OFFICE, at(BERLIN, 2026, 3, 2, 8, 1), STOPPED, opened)  # stopped by hand after it was enabled
    assert (again.action, again.settles) == (None, None)
    closing = decide(OFFICE, at(BERLIN, 2026, 3, 2, 18, 2), IN_SERVICE, opened)
    assert (closing.action, closing.settles) == (Action.disable, at(BERLIN, 2026, 3, 2, 18, 0))


def test_a_model_enabled_by_hand_over_the_weekend_stays_until_the_next_change() -> None:
    friday_close = at(BERLIN, 2026, 3, 6, 18, 0)
    saturday = at(BERLIN, 2026, 3, 7, 11, 0)
    assert not is_open(OFFICE, saturday)
    assert decide(OFFICE, saturday, IN_SERVICE, friday_close).action is None
    monday = decide(OFFICE, at(BERLIN, 2026, 3, 9, 8, 5), IN_SERVICE, friday_close)
    assert (monday.action, monday.settles) == (None, at(BERLIN, 2026, 3, 9, 8, 0))


@pytest.mark.parametrize(
    "status",
    [
        ModelStatus.creating,
        ModelStatus.starting,
        ModelStatus.stopping,
        ModelStatus.updating,
        ModelStatus.deleting,
    ],
)
def test_nothing_is_settled_while_a_workflow_changes_the_model(status: ModelStatus) -> None:
    decision = decide(OFFICE, at(BERLIN, 2026, 3, 2, 9, 0), status, at(BERLIN, 2026, 2, 27, 18, 0))
    assert (decision.action, decision.settles) == (None, None)
    assert f"the model is {status.value}: decided again later" in decision.reason


def test_a_failed_model_is_left_alone_and_the_change_settled() -> None:
    decision = decide(OFFICE, at(BERLIN, 2026, 3, 2, 9, 0), ModelStatus.failed, None)
    assert (decision.action, decision.settles) == (None, at(BERLIN, 2026, 3, 2, 8, 0))
    assert "the model is Failed, so it is left as it is" in decision.reason


def test_the_window_follows_local_time_across_the_spring_change() -> None:
    """Berlin moves to summer time on Sunday 2026-03-29: 08:00 is 07:00 UTC on the Friday before, 06:00 UTC on the
    Monday after."""
    friday, monday = at(UTC, 2026, 3, 27, 7, 0), at(UTC, 2026, 3, 30, 6, 0)
    assert [w.opens for w in windows(OFFICE, monday) if w.opens.date() in (friday.date(), monday.date())] == [
        friday,
        monday,
    ]
    decision = decide(OFFICE, at(UTC, 2026, 3, 30, 6, 30), STOPPED, at(BERLIN, 2026, 3, 27, 18, 0))
    assert (decision.action, decision.settles) == (Action.enable, monday)
    assert "the window opened at 2026-03-30T08:00+02:00" in decision.reason


def test_a_start_inside_the_spring_gap_opens_just_after_it() -> None:
    """New York skips 02:00-03:00 on 2026-03-08: a 02:30 start that day means 03:30 EDT (07:30 UTC)."""
    nightly = window(timezone="America/New_York", days=["sun"], start="02:30", end="04:00")
    assert windows(nightly, at(UTC, 2026, 3, 8, 12, 0))[1].opens == at(UTC, 2026, 3, 8, 7, 30)
    assert not is_open(nightly, at(UTC, 2026, 3, 8, 7, 29))
    assert is_open(nightly, at(UTC, 2026, 3, 8, 7, 31))
    assert decide(nightly, at(UTC, 2026, 3, 8, 7, 31), STOPPED, at(UTC, 2026, 3, 1, 9, 0)).action == Action.enable
    assert decide(nightly, at(UTC, 2026, 3, 8, 8, 1), IN_SERVICE, at(UTC, 2026, 3, 8, 7, 30)).action == Action.disable


def test_a_window_across_the_autumn_change_is_an_hour_longer() -> None:
    """Berlin's 2026-10-25 has 25 hours: 01:00-05:00 local that night lasts five hours (23:00 to 04:00 UTC)."""
    night = window(days=["sun"], start="01:00", end="05:00")
    sunday = windows(night, at(UTC, 2026, 10, 25, 0, 0))
    assert any(w.opens == at(UTC, 2026, 10, 24, 23, 0) and w.closes == at(UTC, 2026, 10, 25, 4, 0) for w in sunday)
    assert is_open(night, at(UTC, 2026, 10, 25, 3, 59))
    assert not is_open(night, at(UTC, 2026, 10, 25, 4, 0))


def test_an_ambiguous_local_time_means_its_first_occurrence() -> None:
    twice = window(days=["sun"], start="02:30", end="06:00")  # 02:30 happens twice in Berlin on 2026-10-25
    assert last_change(twice, at(UTC, 2026, 10, 25, 1, 0)) == at(UTC, 2026, 10, 25, 0, 30)  # 02:30 CEST


def test_an_overnight_window_closes_the_next_day_even_on_a_day_not_listed() -> None:
    friday_night = window(timezone="Asia/Tokyo", days=["fri"], start="22:00", end="06:00")
    assert is_open(friday_night, at(TOKYO, 2026, 3, 7, 3, 0))  # Saturday 03:00
    closed = decide(friday_night, at(TOKYO, 2026, 3, 7, 6, 30), IN_SERVICE, at(TOKYO, 2026, 3, 6, 22, 0))
    assert (closed.action, closed.settles) == (Action.disable, at(TOKYO, 2026, 3, 7, 6, 0))
    assert not is_open(friday_night, at(TOKYO, 2026, 3, 6, 21, 59))


def test_the_same_instant_decides_differently_in_different_zones() -> None:
    instant = at(UTC, 2026, 3, 2, 3, 0)  # Monday: 03:00 in Berlin... 08:30 in Kolkata, 12:00 in Tokyo
    assert not is_open(OFFICE, instant)
    assert is_open(window(timezone="Asia/Kolkata"), instant)
    assert decide(window(timezone="Asia/Kolkata"), instant, STOPPED, None).settles == at(KOLKATA, 2026, 3, 2, 8, 0)
    assert is_open(window(timezone="Asia/Tokyo"), instant)


def test_next_change() -> None:
    assert next_change(OFFICE, at(BERLIN, 2026, 3, 6, 17, 0)) == (Action.disable, at(BERLIN, 2026, 3, 6, 18, 0))
    assert next_change(OFFICE, at(BERLIN, 2026, 3, 6, 19, 0)) == (Action.enable, at(BERLIN, 2026, 3, 9, 8, 0))


def test_days_are_kept_in_week_order() -> None:
    assert window(days=["fri", "mon", "wed"]).days == ["mon", "wed", "fri"]


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"timezone": "Mars/Olympus"}, "unknown time zone 'Mars/Olympus'"),
        ({"timezone": "../../etc/passwd"}, "unknown time zone"),
        ({"timezone": "/etc/localtime"}, "unknown time zone"),
        ({"start": "18:00", "end": "18:00"}, "start and end are both 18:00"),
        ({"days": []}, "at least 1 item"),
        ({"days": ["mon", "mon"]}, "must not repeat a day"),
        ({"days": ["monday"]}, "Input should be 'mon'"),
        ({"start": "8:00"}, "String should match pattern"),
        ({"end": "24:00"}, "String should match pattern"),
        ({"enabled": True}, "Extra inputs are not permitted"),
    ],
)
def test_invalid_schedules_are_refused(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        window(**fields)
