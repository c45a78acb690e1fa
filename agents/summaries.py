"""The context summary a person gets when a step is handed to them."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from storage.models import Step, ToolCall


def handoff_summary(
    *,
    goal: str,
    step: Step,
    calls: Sequence[ToolCall],
    agent_summary: str = "",
    pending_action: dict[str, Any] | None = None,
) -> str:
    """Goal, the step, the agent's own summary, evidence from earlier steps, what was done,
    and what is waiting: everything a person needs to finish the step."""
    context = step.context or {}
    lines = [f"Goal: {goal}", f"Step: {step.title}"]
    if agent_summary:
        lines.append(f"Agent's summary: {agent_summary}")
    for dep_id, dep in (context.get("dependencies") or {}).items():
        lines.append(f"Evidence from '{dep.get('title', dep_id)}': {str(dep.get('output'))[:1500]}")
    for c in calls:
        args = json.dumps(c.arguments, ensure_ascii=False)[:300]
        lines.append(f"Done: {c.tool}({args}) → {c.status}: {(c.result or '')[:300]}")
    if pending_action is not None:
        if "draft" in pending_action:
            lines.append(f"Waiting draft: {str(pending_action['draft'])[:1500]}")
        else:
            args = json.dumps(pending_action.get("arguments"), ensure_ascii=False)[:1000]
            lines.append(f"Waiting action: {pending_action.get('tool')}({args})")
    return "\n".join(lines)
