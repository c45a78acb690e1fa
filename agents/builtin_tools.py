"""Tools every agent has: hand the step to a person, or to another agent.

They are *control* tools: the runtime intercepts them (parking the step, or switching agent)
instead of calling the function, so they carry no side effect of their own.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from agents.tools import Risk, make_tool

HANDOFF_TO_HUMAN = "handoff_to_human"
HANDOFF_TO_AGENT = "handoff_to_agent"


async def handoff_to_human(
    question: Annotated[str, Field(description="What you need the person to do or decide.")],
    summary: Annotated[
        str, Field(description="What you did so far and what you found, with evidence.")
    ],
) -> str:
    """Hand this step to a person: they read your summary and answer; their answer becomes the
    step's result. Use it when you are blocked, unsure, or a human must decide."""
    raise AssertionError("handled by the runtime")  # pragma: no cover


async def handoff_to_agent(
    agent: Annotated[str, Field(description="Name of the agent to take over this step.")],
    note: Annotated[str, Field(description="What the next agent needs to know to continue.")],
) -> str:
    """Hand this step to another agent better suited to it, with a note of what you did."""
    raise AssertionError("handled by the runtime")  # pragma: no cover


CONTROL_TOOLS = (
    make_tool(handoff_to_human, risk=Risk.READ_ONLY, control=True),
    make_tool(handoff_to_agent, risk=Risk.READ_ONLY, control=True),
)
