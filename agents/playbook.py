"""Playbooks: a plan written by a person in YAML, with named inputs. An SOP without a planner.

    name: account-brief
    description: Research an account and draft a first email.
    inputs:
      account: {description: Company name}
      tone: {default: friendly}
    goal: Research {inputs.account} and draft outreach
    steps:
      - id: research
        agent: researcher
        instructions: Find recent news about {inputs.account}.
      - id: draft
        agent: writer
        instructions: Draft a {inputs.tone} email using {steps.research.output}
        needs_approval: true

``{inputs.NAME}`` is replaced when the run starts; ``{steps.ID.output}`` when step ID has
finished (a reference implies the dependency). ``{goal}`` is the run's goal.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from agents.errors import PlanError, PlaybookError
from agents.plan import Plan, PlanStep, validate
from agents.registry import Registry

REFERENCE = re.compile(r"\{(inputs|steps)\.([A-Za-z0-9_-]+)(\.output)?\}|\{goal\}")
MAX_PLAYBOOK_BYTES = 256_000
#: The most messages a playbook step may allow one recipient (``max_per_recipient``).
MAX_PER_RECIPIENT = 5


class PlaybookInput(BaseModel):
    """A named input of a playbook."""

    model_config = ConfigDict(extra="forbid")

    description: str = ""
    default: str | None = None
    required: bool = True


class PlaybookStep(PlanStep):
    """A step as a person writes it: a plan step, plus what only a person may allow.

    ``max_per_recipient`` is not a plan field, so a planner model cannot raise it: without it
    a step sends at most one message to each recipient (``agents.recipients``).
    """

    max_per_recipient: int | None = Field(
        default=None,
        ge=1,
        le=MAX_PER_RECIPIENT,
        description="Messages this step may send to one recipient (default 1).",
    )


class Playbook(BaseModel):
    """A playbook file, validated."""

    model_config = ConfigDict(extra="forbid")

    name: str
    description: str = ""
    goal: str = ""
    inputs: dict[str, PlaybookInput] = Field(default_factory=dict)
    steps: list[PlaybookStep]


def load_playbook(path: str | Path) -> Playbook:
    """Read and shape-check a playbook file."""
    p = Path(path)
    try:
        raw = p.read_bytes()
    except OSError as exc:
        raise PlaybookError(f"Cannot read playbook {p}: {exc.strerror or exc}") from None
    if len(raw) > MAX_PLAYBOOK_BYTES:
        raise PlaybookError(f"Playbook {p} is larger than {MAX_PLAYBOOK_BYTES} bytes.")
    return parse_playbook(raw.decode("utf-8", errors="replace"), source=str(p))


def find_playbook(name: str, directory: str | Path) -> Path:
    """The file of the playbook called ``name`` in ``directory`` (``NAME.yaml`` or ``.yml``)."""
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}", name) or ".." in name:
        raise PlaybookError(f"{name!r} is not a playbook name (letters, digits, - _ .).")
    folder = Path(directory)
    for suffix in (".yaml", ".yml"):
        path = folder / f"{name}{suffix}"
        if path.is_file():
            return path
    known = sorted(p.stem for p in folder.glob("*.y*ml")) if folder.is_dir() else []
    listing = ", ".join(known) if known else "none"
    raise PlaybookError(f"There is no playbook {name!r}. Playbooks: {listing}.")


def parse_playbook(text: str, *, source: str = "playbook") -> Playbook:
    """Parse YAML text into a :class:`Playbook` with errors that name file and line."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{source}:{mark.line + 1}" if mark is not None else source
        problem = getattr(exc, "problem", None) or str(exc)
        raise PlaybookError(f"{where}: not valid YAML ({problem}).") from None
    if not isinstance(data, dict):
        raise PlaybookError(f"{source}: a playbook is a YAML mapping with name, inputs and steps.")
    for key, value in list((data.get("inputs") or {}).items()):
        if value is None or isinstance(value, str):
            # `account:` or `account: Company name` are friendly shorthands.
            data["inputs"][key] = {"description": value or ""}
    try:
        return Playbook.model_validate(data)
    except ValidationError as exc:
        lines = [f"  {'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()]
        raise PlaybookError(f"{source}: the playbook is invalid:\n" + "\n".join(lines)) from None


def bind(
    playbook: Playbook, inputs: dict[str, str], registry: Registry, *, max_steps: int
) -> tuple[str, Plan]:
    """Fill in the inputs and return ``(goal, plan)``; every problem is reported at once."""
    problems: list[str] = []
    values: dict[str, str] = {}
    for name, spec in playbook.inputs.items():
        if name in inputs:
            values[name] = inputs[name]
        elif spec.default is not None:
            values[name] = spec.default
        elif spec.required:
            hint = f" ({spec.description})" if spec.description else ""
            problems.append(f"Missing input {name!r}{hint}: give {name}=VALUE.")
        else:
            values[name] = ""
    for name in inputs:
        if name not in playbook.inputs:
            known = ", ".join(playbook.inputs) or "none"
            problems.append(f"Unknown input {name!r}; this playbook takes: {known}.")
    ids = {s.id for s in playbook.steps}

    def fill(text: str, where: str, *, keep_inputs: bool = False) -> str:
        def sub(m: re.Match[str]) -> str:
            kind, name, output = m.group(1), m.group(2), m.group(3)
            if kind is None:
                return m.group(0)  # {goal} is filled at run time
            if kind == "inputs":
                if name not in playbook.inputs:
                    problems.append(f"{where} refers to unknown input {{inputs.{name}}}.")
                    return m.group(0)
                # Instructions and arguments keep the reference: they are filled in one pass at
                # run time, so an input's value is never itself read as a reference.
                return m.group(0) if keep_inputs else values.get(name, "")
            if name not in ids or not output:
                problems.append(f"{where} refers to {m.group(0)}, which is not a step's output.")
            return m.group(0)

        return REFERENCE.sub(sub, text)

    goal = fill(playbook.goal or playbook.description or playbook.name, "goal")
    steps = []
    for s in playbook.steps:
        refs = set(step_references(s.instructions))
        args = _fill_args(
            s.arguments, lambda t, sid=s.id: fill(t, f"step {sid!r}", keep_inputs=True), refs
        )
        steps.append(
            s.model_copy(
                update={
                    "title": fill(s.title, f"step {s.id!r}"),
                    # A follow-up's wait may be an input ("after: {inputs.follow_up_after}").
                    "after": fill(s.after, f"step {s.id!r}") if s.after else s.after,
                    "at": fill(s.at, f"step {s.id!r}") if s.at else s.at,
                    "instructions": fill(s.instructions, f"step {s.id!r}", keep_inputs=True),
                    "arguments": args,
                    "depends_on": sorted(
                        set(s.depends_on)
                        | (refs - {s.id})
                        | (
                            {str(s.only_if["step"])}
                            if s.only_if and s.only_if.get("step")
                            else set()
                        )
                    ),
                }
            )
        )
    if problems:
        raise PlaybookError(f"Playbook {playbook.name!r}: " + " ".join(problems))
    try:
        plan = validate(Plan(steps=steps, inputs=values), registry, max_steps=max_steps)
    except PlanError as exc:
        raise PlaybookError(
            f"Playbook {playbook.name!r} is invalid: " + " ".join(exc.problems)
        ) from None
    return goal, plan


def step_references(text: str) -> list[str]:
    """Ids of steps whose outputs ``text`` refers to."""
    return [m.group(2) for m in REFERENCE.finditer(text or "") if m.group(1) == "steps"]


def _fill_args(value: Any, fill: Any, refs: set[str]) -> Any:
    if isinstance(value, str):
        refs.update(step_references(value))
        return fill(value)
    if isinstance(value, dict):
        return {k: _fill_args(v, fill, refs) for k, v in value.items()}
    if isinstance(value, list):
        return [_fill_args(v, fill, refs) for v in value]
    return value


def render(
    text: str, *, goal: str, outputs: dict[str, str], inputs: dict[str, str] | None = None
) -> str:
    """Replace ``{goal}``, ``{inputs.NAME}`` and ``{steps.ID.output}`` in one pass, so a value
    (a person's input, a model's output) is never read again as a reference."""
    given = inputs or {}

    def sub(m: re.Match[str]) -> str:
        if m.group(1) is None:
            return goal
        if m.group(1) == "inputs" and m.group(2) in given:
            return given[m.group(2)]
        if m.group(1) == "steps" and m.group(2) in outputs:
            return outputs[m.group(2)]
        return m.group(0)

    return REFERENCE.sub(sub, text)


def render_value(
    value: Any, *, goal: str, outputs: dict[str, str], inputs: dict[str, str] | None = None
) -> Any:
    """:func:`render` applied to every string inside a JSON-like value."""
    if isinstance(value, str):
        return render(value, goal=goal, outputs=outputs, inputs=inputs)
    if isinstance(value, dict):
        return {
            k: render_value(v, goal=goal, outputs=outputs, inputs=inputs) for k, v in value.items()
        }
    if isinstance(value, list):
        return [render_value(v, goal=goal, outputs=outputs, inputs=inputs) for v in value]
    return value
