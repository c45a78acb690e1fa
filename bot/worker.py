"""Keeping the engine moving in a long-lived process (``baton serve``).

On start, and then every few seconds, it drives every run that should be moving and that no
live process holds: runs interrupted by a crash, and runs a person un-parked from another
process (``baton approve`` with ``--no-continue``, or a replica that died).
"""

from __future__ import annotations

import asyncio
import logging

from agents.engine import Engine
from storage.database import DatabaseUnavailable

log = logging.getLogger(__name__)

SWEEP_S = 5.0


async def serve_engine(engine: Engine, *, once: bool = False, sweep_s: float = SWEEP_S) -> None:
    """Resume unfinished runs now and keep doing so until cancelled (or once)."""
    while True:
        started: list[str] = []
        try:
            started = await engine.resume_all()
            if started:
                log.info("resumed runs: %s", ", ".join(started))
        except DatabaseUnavailable as exc:
            log.warning("database unavailable, will retry: %s", exc)
        if once:
            for run_id in started:
                await engine.wait(run_id)
            return
        await asyncio.sleep(sweep_s)
