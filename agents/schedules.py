"""Recurring goals: "when" in a person's words or cron, in their time zone → next firings.

Accepted forms (case-insensitive), besides 5-field cron (``0 9 * * 1``):
``hourly``; ``daily 17:30``; ``every day at 9am``; ``weekdays 9:00``; ``every monday 9am``;
``every mon,wed 14:15``; ``every 15 minutes``; ``every 2 hours``.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from agents.errors import ConfigError

EXAMPLES = (
    '"every monday 9am", "daily 17:30", "weekdays 8:45", "every 2 hours", or cron "0 9 * * 1"'
)
_DAYS = {
    "mon": "mon", "monday": "mon", "tue": "tue", "tues": "tue", "tuesday": "tue",
    "wed": "wed", "wednesday": "wed", "thu": "thu", "thur": "thu", "thurs": "thu",
    "thursday": "thu", "fri": "fri", "friday": "fri", "sat": "sat", "saturday": "sat",
    "sun": "sun", "sunday": "sun",
}  # fmt: skip


class ScheduleError(ConfigError):
    """A schedule that cannot be understood; the message carries examples."""


def zone(name: str) -> ZoneInfo:
    """A time zone by IANA name, or a clear error."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ScheduleError(
            f"{name!r} is not a time zone I know. Use an IANA name like Europe/Paris or "
            "America/New_York."
        ) from None


def _time(text: str) -> tuple[int, int]:
    m = re.fullmatch(r"(\d{1,2})(?::(\d{2}))?\s*(am|pm)?", text.strip())
    if not m:
        raise ScheduleError(f"{text!r} is not a time of day. Try 9am, 17:30 or 8:45pm.")
    hour, minute, half = int(m.group(1)), int(m.group(2) or 0), m.group(3)
    if half:
        if not 1 <= hour <= 12:
            raise ScheduleError(f"{text!r}: with am/pm the hour is 1 to 12.")
        hour = hour % 12 + (12 if half == "pm" else 0)
    if hour > 23 or minute > 59:
        raise ScheduleError(f"{text!r} is not a time of day.")
    return hour, minute


def to_cron(spec: str) -> str:
    """A person's words (or cron) → a 5-field cron expression; a clear error otherwise."""
    text = " ".join((spec or "").strip().lower().split())
    if not text:
        raise ScheduleError(f"When should it run? For example {EXAMPLES}.")
    fields = text.split(" ")
    if all(re.fullmatch(r"[\d*/,\-a-z]+", f) for f in fields) and len(fields) in (5, 6, 7):
        if len(fields) != 5:
            raise ScheduleError(
                f"A cron expression has 5 fields (minute hour day month weekday); "
                f"{spec!r} has {len(fields)}."
            )
        text = " ".join([*fields[:4], _named_weekdays(fields[4])])
        _check_cron(text)
        return text
    if text == "hourly" or text == "every hour":
        return "0 * * * *"
    m = re.fullmatch(r"every (\d+) (minute|minutes|min|hour|hours)", text)
    if m:
        n = int(m.group(1))
        if m.group(2).startswith("min"):
            if not 1 <= n <= 59:
                raise ScheduleError("Every N minutes takes N from 1 to 59.")
            return f"*/{n} * * * *"
        if not 1 <= n <= 23:
            raise ScheduleError("Every N hours takes N from 1 to 23.")
        return f"0 */{n} * * *"
    m = re.fullmatch(r"(?:daily|every day|each day)(?: at)? (.+)", text)
    if m:
        hour, minute = _time(m.group(1))
        return f"{minute} {hour} * * *"
    m = re.fullmatch(r"(?:weekdays|every weekday)(?: at)? (.+)", text)
    if m:
        hour, minute = _time(m.group(1))
        return f"{minute} {hour} * * mon-fri"
    m = re.fullmatch(r"(?:every |on )?([a-z,]+?)s?(?: at)? (\d.*)", text)
    if m:
        days = []
        for word in m.group(1).split(","):
            name = _DAYS.get(word.rstrip("s")) or _DAYS.get(word)
            if name is None:
                raise ScheduleError(f"{word!r} is not a day of the week. Try {EXAMPLES}.")
            days.append(name)
        hour, minute = _time(m.group(2))
        return f"{minute} {hour} * * {','.join(days)}"
    raise ScheduleError(f"I don't understand {spec!r}. Try {EXAMPLES}.")


_NUMBERED = ("sun", "mon", "tue", "wed", "thu", "fri", "sat", "sun")


def _named_weekdays(field: str) -> str:
    """Standard cron numbers weekdays from Sunday (0 or 7); APScheduler 3 counts from Monday.
    Names mean the same to both, so numbers become names."""
    if "/" in field:
        return field
    return re.sub(
        r"\d+", lambda m: _NUMBERED[int(m.group())] if int(m.group()) <= 7 else m.group(), field
    )


def _check_cron(expr: str) -> None:
    from apscheduler.triggers.cron import CronTrigger

    try:
        CronTrigger.from_crontab(expr, timezone=UTC)
    except ValueError as exc:
        raise ScheduleError(f"{expr!r} is not a valid cron expression ({exc}).") from None


def next_fire(cron: str, tz: str, after: float) -> float:
    """The first firing strictly after ``after`` (epoch seconds), in zone ``tz``."""
    from apscheduler.triggers.cron import CronTrigger

    trigger = CronTrigger.from_crontab(cron, timezone=zone(tz))
    start = datetime.fromtimestamp(after + 1e-3, zone(tz))
    fire = trigger.get_next_fire_time(None, start)
    if fire is None:
        raise ScheduleError(f"{cron!r} never fires.")
    return float(fire.timestamp())
