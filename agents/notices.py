"""Refusals and flags made visible: written to the audit log, published as events, read back.

A guard that refuses a call writes ``guardrail.refused`` and publishes
:class:`~agents.events.CallRefused` (:meth:`agents.guardrails.Guardrails._refused`, and the
approval re-check). An outbound call whose approval carries flags writes ``outbound.flagged``
and publishes :class:`~agents.events.OutboundFlagged` (:func:`flagged`). Front ends render the
events as they happen (the thread, the terminal) and read the log back with :func:`for_run`
(``baton show``, the end of a run), so nothing a guard did goes unseen: a run that ended with
refused calls says so instead of a plain "done".
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from agents.events import OutboundFlagged
from storage.database import Session
from storage.repositories import audit

if TYPE_CHECKING:
    from agents.state import Services

#: Audit actions of a refused call and of a flagged outbound call.
REFUSED = "guardrail.refused"
FLAGGED = "outbound.flagged"
#: Flags listed in one notice; the approval card lists them all.
FLAGS_SHOWN = 3


def refusal_text(tool: str, target: str | None, reason: str) -> str:
    """``send_email to x@evil.example, not a recipient of this run``."""
    aimed = f" to {target}" if target else ""
    return f"{tool}{aimed}, {reason.strip().rstrip('.')}"


def plural(n: int, word: str) -> str:
    """``1 refused call``, ``2 refused calls``."""
    return f"{n} {word}" + ("" if n == 1 else "s")


def flags_text(tool: str, flags: Sequence[Mapping[str, Any]]) -> str:
    """``send_email: 2 problems: claim "…" (no source); recipient "…" (not supplied)``."""
    shown = [
        f'{f.get("kind", "?")} "{f.get("text", "")}" ({f.get("problem", "")})'
        for f in flags[:FLAGS_SHOWN]
    ]
    more = f"; and {len(flags) - FLAGS_SHOWN} more" if len(flags) > FLAGS_SHOWN else ""
    return f"{tool}: {plural(len(flags), 'problem')}: " + "; ".join(shown) + more


async def flagged(
    svc: Services,
    *,
    run_id: str,
    step_id: str,
    tool: str,
    approval_id: str | None,
    flags: Sequence[Mapping[str, Any]],
) -> None:
    """Record and announce that an outbound call went to a person with these flags."""
    frozen = tuple({str(k): str(v) for k, v in f.items()} for f in flags)
    async with svc.db.transaction() as session:
        await audit.append(
            session,
            at=svc.clock(),
            actor="baton",
            action=FLAGGED,
            run_id=run_id,
            subject=approval_id or step_id,
            detail={"tool": tool, "step": step_id, "approval": approval_id, "flags": list(frozen)},
        )
    await svc.bus.publish(OutboundFlagged(run_id, step_id, tool, approval_id, frozen))


@dataclass(frozen=True)
class Notice:
    """A refusal or a flag as read back from the audit log."""

    #: ``refused`` or ``flagged``.
    kind: str
    at: float
    #: The step the call was made in, when known.
    step: str | None
    tool: str
    #: One line, as the thread shows it (without the ``⚠️ refused:`` lead).
    text: str
    guard: str | None = None


async def for_run(session: Session, run_id: str) -> list[Notice]:
    """Every refusal and flag of a run, oldest first."""
    out: list[Notice] = []
    for entry in await audit.list_for_run(session, run_id=run_id, actions=(REFUSED, FLAGGED)):
        detail = entry.detail or {}
        tool = str(detail.get("tool") or "?")
        step = detail.get("step") or (entry.subject if entry.action == REFUSED else None)
        if entry.action == REFUSED:
            why = str(detail.get("why") or "refused")
            target = detail.get("target")
            text = refusal_text(tool, str(target) if target else None, why)
            guard = str(detail.get("guard") or "approval")
            out.append(Notice("refused", entry.at, step, tool, text, guard))
        else:
            flags = [f for f in detail.get("flags") or [] if isinstance(f, Mapping)]
            out.append(Notice("flagged", entry.at, step, tool, flags_text(tool, flags)))
    return out


def refused_count(notices: Sequence[Notice]) -> int:
    """How many of ``notices`` are refusals."""
    return sum(1 for n in notices if n.kind == "refused")
