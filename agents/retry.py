"""Exponential backoff with full jitter for transient model errors."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from typing import TypeVar

from agents.errors import ModelError

T = TypeVar("T")

OnRetry = Callable[[int, float, ModelError], Awaitable[None]]


def backoff_delay(attempt: int, *, base: float, cap: float, retry_after: float | None) -> float:
    """Seconds to wait before retry number ``attempt`` (1-based); honours Retry-After."""
    delay = random.uniform(0, min(cap, base * 2 ** (attempt - 1)))
    if retry_after is not None:
        delay = max(delay, min(retry_after, cap))
    return delay


async def with_retries(
    call: Callable[[], Awaitable[T]],
    *,
    retries: int,
    base: float,
    cap: float,
    on_retry: OnRetry | None = None,
) -> T:
    """Run ``call``; on a transient :class:`ModelError`, wait and try again up to ``retries``."""
    attempt = 0
    while True:
        try:
            return await call()
        except ModelError as exc:
            attempt += 1
            if not exc.transient or attempt > retries:
                if exc.transient:
                    raise ModelError(
                        f"{exc} — gave up after {retries} retries", transient=False
                    ) from None
                raise
            delay = backoff_delay(
                attempt, base=base, cap=cap, retry_after=getattr(exc, "retry_after", None)
            )
            if on_retry is not None:
                await on_retry(attempt, delay, exc)
            await asyncio.sleep(delay)
