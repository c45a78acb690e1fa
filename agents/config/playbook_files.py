"""Playbook files checked the way ``agents.playbook`` loads them, with each problem at its line."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from agents.config.yaml_marks import Document, Problem, kind_of
from agents.errors import PlaybookError
from agents.playbook import Playbook, bind
from agents.registry import Registry

_STEP = re.compile(r"step '([^']+)'", re.IGNORECASE)


@dataclass(frozen=True)
class PlaybookFile:
    """A playbook that passed the shape check, with its document for line numbers."""

    playbook: Playbook
    doc: Document


def parse_playbook_doc(doc: Document) -> PlaybookFile | list[Problem]:
    """The playbook in ``doc`` (the same model ``agents.playbook`` validates with)."""
    data = doc.data
    if not isinstance(data, dict):
        return [
            doc.problem(f"a playbook is a YAML mapping with name and steps, got {kind_of(data)}")
        ]
    inputs = data.get("inputs")
    if inputs is not None and not isinstance(inputs, dict):
        return [doc.problem(f"'inputs' must be a mapping, got {kind_of(inputs)}", "inputs")]
    if inputs:
        # The same friendly shorthands as agents.playbook: `account:` or `account: Company`.
        data = {
            **data,
            "inputs": {
                k: {"description": v or ""} if v is None or isinstance(v, str) else v
                for k, v in inputs.items()
            },
        }
    try:
        return PlaybookFile(Playbook.model_validate(data), doc)
    except ValidationError as exc:
        return [_problem(doc, err) for err in exc.errors()]


def _problem(doc: Document, err: Any) -> Problem:
    loc = tuple(err["loc"])
    where = ".".join(str(p) for p in loc) or "playbook"
    if err["type"] == "extra_forbidden":
        message = f"unknown key {where!r}"
    elif err["type"] == "missing":
        message = f"{where!r} is required"
    else:
        message = f"{where}: {err['msg']}"
    return doc.problem(message, *loc)


def check_playbook(found: PlaybookFile, registry: Registry, *, max_steps: int) -> list[Problem]:
    """Agents and tools the steps name exist; then the full check a run does (references, the
    dependency graph), with placeholder input values."""
    pb, doc = found.playbook, found.doc
    problems: list[Problem] = []
    for i, step in enumerate(pb.steps):
        if step.agent and step.agent not in registry.agents:
            known = ", ".join(sorted(registry.agents))
            problems.append(
                doc.problem(
                    f"step {step.id!r} names unknown agent {step.agent!r} (known: {known})",
                    "steps",
                    i,
                    "agent",
                )
            )
        tool = registry.tools.get(step.tool) if step.tool else None
        if step.tool and (tool is None or tool.control):
            problems.append(
                doc.problem(
                    f"step {step.id!r} names unknown tool {step.tool!r}", "steps", i, "tool"
                )
            )
    if problems:
        return problems
    try:
        # Inputs with a default keep it (it may be a duration, a date); the rest get a sample.
        sample = {name: "example" for name, spec in pb.inputs.items() if spec.default is None}
        bind(pb, sample, registry, max_steps=max_steps)
    except PlaybookError as exc:
        ids = [s.id for s in pb.steps]
        m = _STEP.search(str(exc))
        at: tuple[str | int, ...] = ("steps",)
        if m and m.group(1) in ids:
            at = ("steps", ids.index(m.group(1)))
        problems.append(doc.problem(str(exc), *at))
    return problems
