"""Shared fixtures: the scripted LLM and network guard (tests.support.fixtures), databases,
and a runner for the real ``baton`` command."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

pytest_plugins = ["tests.support.fixtures"]

REPO = Path(__file__).resolve().parents[1]
PG_ADMIN_URL = os.environ.get("BATON_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")


@dataclass
class Result:
    """A finished ``baton`` subprocess."""

    code: int
    out: str
    err: str


@pytest.fixture
def baton_env(subprocess_env: dict[str, str], tmp_path: Path) -> dict[str, str]:
    """Environment for ``baton`` subprocesses: scripted LLM, fresh SQLite, test plugin."""
    env = dict(subprocess_env)
    env["BATON_PLUGINS"] = "tests.plugins.ledger"
    env["BATON_TEST_LEDGER"] = str(tmp_path / "ledger.txt")
    env["BATON_RETRY_BASE"] = "0.05"
    env["BATON_RETRY_MAX"] = "0.5"
    env["BATON_MODEL_TIMEOUT"] = "5"
    env["PYTHONPATH"] = os.pathsep.join([env.get("PYTHONPATH", ""), str(REPO)])
    return env


def run_baton(
    args: list[str], env: dict[str, str], *, stdin: str | None = None, timeout: float = 60
) -> Result:
    """Run ``baton ARGS`` as a subprocess (the real console entry point)."""
    p = subprocess.run(
        [sys.executable, "-m", "bot", *args],
        input=stdin if stdin is not None else "",
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        timeout=timeout,
    )
    # A secret planted in the environment must never reach the terminal (tests.support.canary).
    from tests.support.canary import CANARY_VALUE

    assert CANARY_VALUE not in p.stdout + p.stderr, "the canary secret reached baton's output"
    return Result(p.returncode, p.stdout, p.stderr)


def _pg_reachable() -> bool:
    try:
        import psycopg

        with psycopg.connect(PG_ADMIN_URL, connect_timeout=2):
            return True
    except Exception:
        return False


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A fresh PostgreSQL database for one test (dropped afterwards).

    Skips only when the server is unreachable and CI is unset; in CI it must run.
    """
    if not _pg_reachable():
        if os.environ.get("CI"):
            pytest.fail(f"PostgreSQL is unreachable at {PG_ADMIN_URL} and CI is set")
        pytest.skip(f"PostgreSQL unreachable at {PG_ADMIN_URL} (set BATON_TEST_PG_URL)")
    import psycopg

    name = f"baton_test_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base = PG_ADMIN_URL.rsplit("/", 1)[0]
    try:
        yield f"{base}/{name}"
    finally:
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Each database Baton supports, one after the other."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/baton.db"
    return str(request.getfixturevalue("pg_url"))
