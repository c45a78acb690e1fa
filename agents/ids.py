"""Short, readable, random ids: ``r-3f9a1c2b7d`` for runs, ``a-…`` approvals, ``h-…`` handoffs."""

from __future__ import annotations

import secrets


def new_id(prefix: str) -> str:
    """A new id with a one-letter prefix and 40 random bits."""
    return f"{prefix}-{secrets.token_hex(5)}"
