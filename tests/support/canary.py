"""A canary secret planted in every test's environment, and the check that it never leaks.

``BATON_TEST_CANARY_SECRET`` is set for every test (and, through ``subprocess_env``, for every
``baton`` subprocess). Its name marks it as a secret, so Baton's redactor hides it. After each
test, no log record of the test (message or traceback) and no file the test left under its
``tmp_path`` (SQLite databases with their WAL, ledgers, logs) may contain it: "canary secrets
planted in settings never appear in any log, traceback or database row over the whole suite".
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

CANARY_ENV = "BATON_TEST_CANARY_SECRET"
CANARY_VALUE = "canary-5ec2e7-never-leak-0b1d"
#: Files bigger than this are not scanned (no test writes one; a benchmark might).
MAX_SCANNED_BYTES = 50_000_000


class _Keep(logging.Handler):
    """Keeps every record it sees, to be checked at teardown."""

    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def leaks_in_logs(records: list[logging.LogRecord]) -> list[str]:
    """The records whose message or traceback holds the canary."""
    formatter = logging.Formatter()
    found = []
    for record in records:
        try:
            text = formatter.format(record)
        except Exception:  # a malformed record is logging's problem, not a leak
            continue
        if CANARY_VALUE in text:
            found.append(f"log record from {record.name}: {record.getMessage()[:120]!r}")
    return found


def leaks_in_files(root: Path) -> list[str]:
    """The files under ``root`` that hold the canary."""
    needle = CANARY_VALUE.encode()
    found = []
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        try:
            if path.stat().st_size <= MAX_SCANNED_BYTES and needle in path.read_bytes():
                found.append(str(path))
        except OSError:
            continue
    return found


def leaks_in_slack() -> list[str]:
    """Web API calls (messages, blocks, views…) that carried the canary to the Slack stand-in."""
    from tests.support.slack_api import live_fakes

    found = []
    for fake in live_fakes():
        for call in fake.calls:
            if CANARY_VALUE in json.dumps(call.args, default=str):
                found.append(
                    f"Slack {call.method} call: {json.dumps(call.args, default=str)[:120]}"
                )
    return found


@pytest.fixture(autouse=True)
def canary_secret(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Plant the canary; fail the test if it shows up in its logs or its files."""
    monkeypatch.setenv(CANARY_ENV, CANARY_VALUE)
    folder = request.getfixturevalue("tmp_path") if "tmp_path" in request.fixturenames else None
    keep = _Keep()
    root = logging.getLogger()
    root.addHandler(keep)
    try:
        yield CANARY_VALUE
    finally:
        root.removeHandler(keep)
    leaks = leaks_in_logs(keep.records) + leaks_in_slack()
    if isinstance(folder, Path):
        leaks += leaks_in_files(folder)
    if leaks:
        pytest.fail(
            f"the canary secret ${CANARY_ENV} leaked into:\n  " + "\n  ".join(leaks),
            pytrace=False,
        )
