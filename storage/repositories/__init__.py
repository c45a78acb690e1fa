"""Repositories: keyword-only async functions over an explicit ``Session``.

Import the module, not the functions: ``from storage.repositories import runs``, then
``await runs.get_run(session, run_id=...)``. They hold no business rules; compare-and-set
helpers exist because "only if still pending" is a storage guarantee, not a policy.
"""

from storage.repositories import (
    approvals,
    audit,
    due,
    handoffs,
    runs,
    schedules,
    slack,
    steps,
    tool_calls,
)

__all__ = [
    "approvals",
    "audit",
    "due",
    "handoffs",
    "runs",
    "schedules",
    "slack",
    "steps",
    "tool_calls",
]
