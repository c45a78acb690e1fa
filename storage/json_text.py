"""How JSON columns are turned into text: orjson, with the standard library as the fallback.

Every step start and end writes JSON (context, transcript, tool arguments), and a run's
creation writes a few dozen small values, most of them ``None`` or short lists. The standard
library's ``json.dumps`` spends more time setting up than encoding such values; orjson does the
same work about ten times faster, which shows up directly in the engine's per-step overhead.
"""

from __future__ import annotations

import json
from typing import Any

import orjson

_OPTIONS = orjson.OPT_NON_STR_KEYS


def dumps(value: Any) -> str:
    """``value`` as JSON text (what SQLAlchemy stores in a JSON column).

    What orjson refuses (integers beyond 64 bits, unusual types) goes through ``json.dumps``,
    which raises the usual ``TypeError`` for what JSON cannot hold at all.
    """
    if value is None:
        return "null"
    try:
        return orjson.dumps(value, option=_OPTIONS).decode()
    except TypeError:  # orjson.JSONEncodeError is a TypeError
        return json.dumps(value)
