"""The allowed window of automatic failbacks (e.g. weekdays 02:00-05:00 Europe/Berlin).

Pure: the same window and instant give the same answer, so it is unit-tested
without waiting for 02:00.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from failback.config.policy import DAY_NAMES, FailbackWindow


def _minutes(clock: str) -> int:
    hours, minutes = clock.split(":")
    return int(hours) * 60 + int(minutes)


def inside(window: FailbackWindow, now: float) -> bool:
    """True when ``now`` (epoch seconds) falls inside the window, in its time zone.

    A window whose ``from`` is later than its ``to`` spans midnight; its days are the
    days it *starts* on (fri 22:00-02:00 includes Saturday 01:00).
    """
    local = datetime.fromtimestamp(now, ZoneInfo(window.timezone))
    minute = local.hour * 60 + local.minute
    start, end = _minutes(window.start), _minutes(window.end)
    today = DAY_NAMES[local.weekday()]
    yesterday = DAY_NAMES[(local.weekday() - 1) % 7]
    if start < end:
        return today in window.days and start <= minute < end
    if minute >= start:
        return today in window.days
    return minute < end and yesterday in window.days


def next_opening(window: FailbackWindow, now: float) -> float:
    """Epoch seconds of the next moment the window opens (``now`` if it is open)."""
    if inside(window, now):
        return now
    zone = ZoneInfo(window.timezone)
    local = datetime.fromtimestamp(now, zone)
    hours, minutes = (int(x) for x in window.start.split(":"))
    for days_ahead in range(8):
        day = (local + timedelta(days=days_ahead)).date()
        opening = datetime(day.year, day.month, day.day, hours, minutes, tzinfo=zone)
        if opening.timestamp() > now and DAY_NAMES[opening.weekday()] in window.days:
            return opening.timestamp()
    return now  # unreachable: a validated window names at least one day


def describe_wait(window: FailbackWindow, now: float) -> str:
    """``outside the allowed window (weekdays 02:00-05:00 UTC); opens Tue 02:00``."""
    opening = datetime.fromtimestamp(next_opening(window, now), ZoneInfo(window.timezone))
    return f"outside the allowed window ({window.describe()}); opens {opening.strftime('%a %H:%M')}"
