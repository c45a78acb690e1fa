"""Agents are data: a name, a role, a model, instructions, allowed tools and caps."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Agent:
    """Configuration of one agent. The runtime (``agents.runtime``) is what runs it."""

    #: Unique name the planner and playbooks refer to.
    name: str
    #: One line: what this agent is for (shown to the planner).
    role: str
    #: Standing instructions (an SOP): rules, steps, boundaries, when to ask a human.
    instructions: str
    #: Any litellm model string (``openai/gpt-4o-mini``, ``ollama/llama3.1``); None → BATON_MODEL.
    model: str | None = None
    #: Names of the tools it may call (handoff tools are always available).
    tools: tuple[str, ...] = ()
    #: Model turns allowed in one step before the step fails.
    max_iterations: int = 10
    #: Models tried in turn when ``model`` still fails after its retries (or is unknown).
    fallbacks: tuple[str, ...] = ()
    #: Spend cap of one step of this agent, in dollars; None → only the run's caps.
    max_cost_usd: float | None = None
    #: JSON schema the final answer must match (asked of the model as structured output).
    output_schema: dict[str, Any] | None = None
    #: Where the agent was defined (``file:line``) when it came from a config file.
    source: str | None = None


_COMMON = (
    "Work only from the goal, your step's instructions and the results of earlier steps. "
    "Never invent facts, names, numbers or quotes: if something is not in the material you "
    "were given, say it is unknown. If you cannot do the step, or a person must decide "
    "something, call handoff_to_human with a clear question."
)

BUILTIN_AGENTS: tuple[Agent, ...] = (
    Agent(
        name="researcher",
        role="Finds and summarises facts about companies, people and topics, with sources.",
        instructions=(
            "You research. Return a concise brief of verified facts as bullet points, each "
            "with its source (a URL or 'given in the goal'). Separate facts from guesses. "
            + _COMMON
        ),
    ),
    Agent(
        name="writer",
        role="Drafts messages, emails, posts and documents from research and instructions.",
        instructions=(
            "You write. Produce the requested text ready to use, in the requested tone and "
            "length, using only facts from the material you were given. Return only the text. "
            + _COMMON
        ),
    ),
    Agent(
        name="reviewer",
        role="Checks drafts for accuracy against the research, tone and mistakes; returns fixes.",
        instructions=(
            "You review. Compare the draft with the research: list every claim that the "
            "research does not support, and every error of tone, grammar or fact; then give "
            "the corrected text. " + _COMMON
        ),
    ),
    Agent(
        name="analyst",
        role="Breaks down data and options, compares them and recommends with reasons.",
        instructions=(
            "You analyse. Structure the problem, compare the options with evidence from the "
            "material given, and end with a recommendation and its reasons. " + _COMMON
        ),
    ),
)
