"""Durations ("3d", "2h30m"), instants ("2026-12-01T09:00+01:00") and step conditions."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from agents.errors import PlanError

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_PART = re.compile(r"(\d+(?:\.\d+)?)\s*(w|d|h|m|s)")


def parse_duration(text: str) -> float:
    """``"3d"``, ``"2h30m"``, ``"45s"``, ``"1w"`` → seconds; a clear error otherwise."""
    cleaned = (text or "").strip().lower().replace(" ", "")
    if not cleaned or not re.fullmatch(r"(\d+(?:\.\d+)?(w|d|h|m|s))+", cleaned):
        raise PlanError(
            f"{text!r} is not a duration. Use a number and a unit: 30s, 15m, 2h, 3d, 1w (or 2h30m)."
        )
    return sum(float(n) * _UNITS[u] for n, u in _PART.findall(cleaned))


def parse_instant(text: str) -> float:
    """An ISO 8601 date-time with a time zone → epoch seconds."""
    try:
        moment = datetime.fromisoformat(str(text).strip())
    except ValueError:
        raise PlanError(
            f"{text!r} is not a date-time. Use ISO 8601 with a zone: 2026-12-01T09:00+01:00."
        ) from None
    if moment.tzinfo is None:
        raise PlanError(f"{text!r} has no time zone; add one, e.g. +00:00 or Z.")
    return moment.timestamp()


def condition_problems(only_if: dict[str, Any] | None, step_ids: set[str]) -> list[str]:
    """What is wrong with a step's ``only_if`` (empty when fine)."""
    if only_if is None:
        return []
    keys = set(only_if) - {"step"}
    problems = []
    if only_if.get("step") not in step_ids:
        problems.append(f"only_if refers to step {only_if.get('step')!r}, which is not in the plan")
    if len(keys) != 1 or not keys <= {"contains", "not_contains", "equals", "not_equals"}:
        problems.append(
            "only_if takes one test: contains, not_contains, equals or not_equals "
            "(e.g. {step: check_reply, contains: 'no reply'})"
        )
    return problems


def condition_holds(only_if: dict[str, Any], output: str) -> bool:
    """Evaluate ``only_if`` against the referenced step's output (case-insensitive)."""
    text = (output or "").strip().lower()
    for test, value in only_if.items():
        if test == "step":
            continue
        expected = str(value).strip().lower()
        if test == "contains":
            return expected in text
        if test == "not_contains":
            return expected not in text
        if test == "equals":
            return text == expected
        if test == "not_equals":
            return text != expected
    return True
