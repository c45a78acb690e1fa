"""Guardrails fixed in code, around every step: nothing a model writes can lift them.

* **Approval re-check.** Right before a gated tool call runs, its approval row is read again
  and must be approved, be for exactly this call (run, step, idempotency key, tool), still
  match its digest, and hold the arguments about to run (edited ones must fit the tool's
  schema). Otherwise the call is refused, nothing is done, and the audit log says why.
* **Loop detector.** The same tool call (tool and canonical arguments) more than
  ``BATON_MAX_REPEAT_CALLS`` times in a step is answered with an error instead of being
  made; once more and the step fails. Counted from the step's stored transcript, so a
  resume counts what came before.
* **Budgets.** Before every model and tool call the money budgets are checked
  (:mod:`agents.spending`); a used-up budget parks the step on a ``budget`` approval.
* **Secrets.** Model replies are redacted before they are stored or shown
  (:mod:`agents.secrets`); tool results are redacted where they are recorded. A tool call
  whose arguments hold a secret (a known value or a credential's shape) is refused, not sent
  redacted; its arguments are stored with a marker in the secret's place.
* **Recipients, volume, egress.** An outbound tool writes only to recipients a person supplied,
  once per step and recipient (:mod:`agents.recipients`); ``http_fetch`` reads only the run's
  own sites without asking, and no URL carries the run's data out (:mod:`agents.egress`).
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from agents import egress, prompts, recipients, spending, supplied
from agents.approvals import action_digest
from agents.errors import ToolArgumentsError
from agents.events import CallRefused
from agents.flags import Verdict, is_flagged
from agents.model import ModelReply, ToolCallRequest
from agents.outcomes import CallResult, Done, Failed, Outcome, Parked, Refusal
from agents.secrets import redactor, scrub_arguments, secret_in
from agents.tools import Tool
from storage.database import Session
from storage.models import Approval, Step
from storage.repositories import approvals, audit

if TYPE_CHECKING:
    from agents.state import RunState, Services

log = logging.getLogger(__name__)

#: Approval kinds that allow a tool call to run.
CALL_KINDS = ("tool_call", "outcome_unknown")


class Interrupt(Exception):  # a step stopping with an outcome, not an error
    """Raised where a step must stop at once with ``outcome`` (caught by the step runner)."""

    def __init__(self, outcome: Outcome) -> None:
        super().__init__(outcome)
        self.outcome = outcome


class Guardrails:
    """Checks wrapped around a step's calls (mixed into :class:`~agents.runtime.StepRunner`)."""

    # Provided by StepRunner and Checkpoints.
    svc: Services
    state: RunState
    step: Step
    run_id: str

    if TYPE_CHECKING:

        def _gated(self, tool: Tool) -> bool: ...

        async def _request_approval(
            self,
            kind: str,
            action: dict[str, Any],
            risk: Any,
            *,
            key: str | None,
            step_status: str = "waiting_approval",
        ) -> Parked: ...

        async def _consume(self, approval: Approval, **step_values: Any) -> None: ...

        async def _taken_over(self, approval: Approval) -> Parked | Done | Refusal: ...

    # ---- budgets ------------------------------------------------------------------------
    async def _before_model_call(self) -> None:
        """Runaway caps (fail) and money budgets (pause) before a model call."""
        self.state.budget.check()
        held = await self._within_budget()
        if held is not None:
            raise Interrupt(held)

    async def _within_budget(self) -> Parked | Done | None:
        """None if the run may spend more; else the step parks on a ``budget`` approval.

        Raises :class:`Interrupt` with :class:`Failed` once a person said no.
        """
        if await spending.overspend(self.svc, self.state) is None:
            return None
        async with self.state.budget.asking:
            while (over := await spending.overspend(self.svc, self.state)) is not None:
                key = f"budget:{over.budget}"
                async with self.svc.db.transaction() as session:
                    found = await approvals.find_for_step(
                        session,
                        run_id=self.run_id,
                        step_id=self.step.step_id,
                        kind=spending.BUDGET_KIND,
                        tool_call_key=key,
                    )
                latest = found[-1] if found else None
                if latest is None or (latest.status == "approved" and latest.consumed_at):
                    return await self._request_approval(
                        spending.BUDGET_KIND, over.action(), spending.BUDGET_RISK, key=key
                    )
                if latest.status == "pending":
                    return Parked(latest.id)
                if latest.status == "approved":
                    await self._consume(latest)
                    spending.grant(self.state.budget, latest.action or {})
                    continue  # another budget may be used up too
                if latest.status == "taken_over":
                    taken = await self._taken_over(latest)
                    if not isinstance(taken, Refusal):
                        return taken
                    latest.reason = taken.reason
                said = latest.reason or (
                    "nobody decided in time" if latest.status == "expired" else "no reason given"
                )
                raise Interrupt(Failed(f"{over.sentence()} A person chose not to raise it: {said}"))
        return None

    # ---- the loop detector --------------------------------------------------------------
    def _repeats(
        self, raw_calls: list[dict[str, Any]], calls: list[ToolCallRequest]
    ) -> Failed | set[int]:
        """Calls of this turn to refuse as repeats, or :class:`Failed` if a loop persists."""
        limit = self.state.limits.max_repeat_calls
        if limit <= 0:
            return set()
        history = list(self.step.transcript or [])
        if history and history[-1].get("tool_calls") == raw_calls:
            history = history[:-1]  # this turn, counted call by call below
        seen = Counter(
            _signature(c["function"]["name"], c["function"].get("arguments"))
            for m in history
            if m.get("role") == "assistant"
            for c in m.get("tool_calls") or []
        )
        refuse: set[int] = set()
        for i, call in enumerate(calls):
            sig = _signature(call.name, call.arguments)
            seen[sig] += 1
            if seen[sig] > limit + 1:
                return Failed(
                    f"stopped: {call.name} called {seen[sig]} times with the same arguments "
                    f"(at most {limit} allowed in a step, BATON_MAX_REPEAT_CALLS)"
                )
            if seen[sig] == limit + 1:
                refuse.add(i)
        return refuse

    async def _refuse_repeat(self, call: ToolCallRequest) -> CallResult:
        """The answer to a repeated call, instead of making it."""
        limit = self.state.limits.max_repeat_calls
        return CallResult(
            f"Error: {call.name} was already called {limit} times with these same arguments in "
            "this step, so this call was not made: it would give the same result. Use the "
            "results you have, try different arguments, or finish the step. Repeating it again "
            "stops the step.",
            False,
        )

    # ---- approvals, re-checked at execution time ----------------------------------------
    async def _approval_holds(
        self, tool: Tool, args: dict[str, Any], key: str, call_id: str, approval: Approval | None
    ) -> CallResult | None:
        """None if the call may run now; otherwise the refusal (audited, nothing done)."""
        gated = (
            approval is not None
            or self._gated(tool)
            or (call_id == "tool" and bool(self.step.needs_approval))
        )
        if not gated:
            return None
        async with self.svc.db.transaction() as session:
            if approval is not None:
                row = await approvals.get(session, approval_id=approval.id)
            else:  # a resumed call: its approval was used when its intent was written
                found = await approvals.find_for_step(
                    session,
                    run_id=self.run_id,
                    step_id=self.step.step_id,
                    kind="tool_call",
                    tool_call_key=key,
                )
                row = next((a for a in reversed(found) if a.status == "approved"), None)
        why = approval_problem(
            row, tool=tool, args=args, key=key, run_id=self.run_id, step_id=self.step.step_id
        )
        if why is None:
            return None
        now = self.svc.clock()
        async with self.svc.db.transaction() as session:
            if row is not None and row.status != "pending":
                # Used up: a refused decision never counts again (a pending one still waits).
                await approvals.consume(session, approval_id=row.id, now=now)
            await audit.append(
                session,
                at=now,
                actor="baton",
                action="guardrail.refused",
                run_id=self.run_id,
                subject=row.id if row is not None else key,
                detail={"tool": tool.name, "key": key, "why": why, "step": self.step.step_id},
            )
        log.warning("refused %s in run %s: %s", tool.name, self.run_id, why)
        await self.svc.bus.publish(  # shown in the thread and at the terminal (agents.notices)
            CallRefused(self.run_id, self.step.step_id, tool.name, "approval", why)
        )
        return CallResult(
            f"Error: Baton refused to call {tool.name}: {why}. Nothing was done.", False
        )

    # ---- code-only guards on a call: secrets, recipients and volume, egress -------------
    async def _policy(self, tool: Tool, args: dict[str, Any], *, key: str) -> Verdict:
        """What the code-only guards say of this call, before any approval is asked for.

        In order: a secret in the arguments is refused (:func:`secret_verdict`); a fetch
        passes the egress guard (:mod:`agents.egress`); an outbound tool may address only
        supplied recipients, each at most the step's allowance of times
        (:mod:`agents.recipients`). Each reads the run from storage, so a resume decides the
        same way.
        """
        verdict = secret_verdict(args)
        url_arg = tool.extra.get(egress.URL_ARGUMENT)
        if verdict.refused is not None or not (tool.recipients or url_arg):
            return verdict
        settings = self.svc.settings
        material = await supplied.load(self.svc, self.state)
        url = args.get(url_arg) if url_arg else None
        if isinstance(url, str):
            verdict = egress.egress_verdict(
                url,
                material,
                fetch_tool=tool.name,
                allow_hosts=settings.fetch_allow_hosts,
                policy=settings.fetch_egress,
            )
            if verdict.refused is not None:
                return verdict
            if verdict.needs_approval:
                await self._audit_escalation(tool, verdict, "a host this run was not given")
        if tool.recipients:
            verdict = verdict.merged(self._recipients_verdict(tool, args, key, material))
        return verdict

    def _recipients_verdict(
        self, tool: Tool, args: dict[str, Any], key: str, material: supplied.RunMaterial
    ) -> Verdict:
        """Supplied recipients only (flagged or refused), and the step's volume allowance."""
        who = recipients.recipient_verdict(
            tool, args, material, policy=self.svc.settings.recipient_policy
        )
        if who.refused is not None:
            return who
        earlier = recipients.earlier_messages(
            material,
            self.svc.registry.tools,
            step_id=self.step.step_id,
            key=key,
            siblings=recipients.turn_siblings(self.step.transcript, key),
        )
        allowance = int((self.step.schedule or {}).get("max_per_recipient") or 1)
        volume = recipients.volume_verdict(
            recipients.recipients_of(tool, args), earlier, allowance=allowance
        )
        return who.merged(volume)

    async def _audit_escalation(self, tool: Tool, verdict: Verdict, why: str) -> None:
        """Record why a guard sends a call to a person that would otherwise just run."""
        async with self.svc.db.transaction() as session:
            await self._audit_guard(session, "guardrail.escalated", tool, verdict, why)

    async def _audit_guard(
        self,
        session: Session,
        action: str,
        tool: Tool,
        verdict: Verdict,
        why: str,
        **extra: Any,
    ) -> None:
        """One audit row saying what a guard did to a call, and why."""
        await audit.append(
            session,
            at=self.svc.clock(),
            actor="baton",
            action=action,
            run_id=self.run_id,
            subject=self.step.step_id,
            detail={
                "tool": tool.name,
                "guard": verdict.guard,
                "why": why,
                "target": verdict.target,
                **extra,
            },
        )

    async def _refused(self, tool: Tool, args: dict[str, Any], verdict: Verdict) -> CallResult:
        """Refuse a call in code: audit it, publish :class:`CallRefused`, tell the model.

        The same call refused again (its turn is run again after a sibling call's approval,
        or the model repeats it) is told again but not announced twice.
        """
        why = verdict.refused or "refused"
        digest = action_digest({"tool": tool.name, "arguments": args})[:32]
        async with self.svc.db.transaction() as session:
            seen = await audit.list_for_run(
                session, run_id=self.run_id, actions=["guardrail.refused"]
            )
            if any(
                e.subject == self.step.step_id and (e.detail or {}).get("call") == digest
                for e in seen
            ):
                return CallResult(
                    f"Error: Baton refused to call {tool.name}: {why}. Nothing was done.", False
                )
            await self._audit_guard(session, "guardrail.refused", tool, verdict, why, call=digest)
        log.warning("refused %s in run %s: %s", tool.name, self.run_id, why)
        await self.svc.bus.publish(
            CallRefused(
                self.run_id,
                self.step.step_id,
                tool.name,
                verdict.guard or "policy",
                why,
                verdict.target,
            )
        )
        return CallResult(
            f"Error: Baton refused to call {tool.name}: {why}. Nothing was done.", False
        )

    # ---- secrets ------------------------------------------------------------------------
    def _scrubbed(self, reply: ModelReply) -> ModelReply:
        """``reply`` with secrets redacted from its text and tool-call arguments.

        In arguments, a known secret or a credential's shape becomes a marker that names what
        it was (:func:`agents.secrets.scrub_arguments`): the transcript is stored without the
        secret, and the call is then refused by :func:`secret_verdict`, which sees the marker
        (on a resume too), rather than sent with ``[redacted]`` in it.
        """
        r = redactor()
        calls = []
        for c in reply.tool_calls:
            scrubbed, found = scrub_arguments(c.arguments)
            calls.append(replace(c, arguments=scrubbed) if found else c)
        content = reply.content
        if content and r.values:
            content = r.text(content)
        return replace(reply, content=content, tool_calls=calls)


def approval_problem(
    row: Approval | None, *, tool: Tool, args: dict[str, Any], key: str, run_id: str, step_id: str
) -> str | None:
    """Why ``row`` does not allow calling ``tool`` with ``args`` as call ``key``, or None."""
    if row is None:
        return "no approval was found for this call"
    if row.kind not in CALL_KINDS or (row.run_id, row.step_id, row.tool_call_key) != (
        run_id,
        step_id,
        key,
    ):
        return "the approval is for another action"
    if row.status != "approved":
        return f"its approval is {row.status}, not approved"
    action = row.action or {}
    if row.digest != action_digest(action):
        return "the approval's record does not match its digest (it was altered)"
    if action.get("tool") != tool.name:
        return "the approval is for another tool"
    edited = row.edited or {}
    if is_flagged(action) and "arguments" not in edited and not edited.get("override"):
        # A flagged action goes only edited (then grounded again) or sent anyway (audited).
        return "it was flagged and approved neither with an edit nor as an override"
    approved = action.get("arguments")
    if row.kind == "tool_call" and row.edited and "arguments" in row.edited:
        try:
            approved = tool.validate(row.edited["arguments"])
        except ToolArgumentsError as exc:
            return f"the edited arguments do not fit the tool ({exc})"
    if not isinstance(approved, dict) or prompts.dumps(approved) != prompts.dumps(args):
        return "the arguments about to run are not the ones approved"
    return None


def secret_verdict(args: dict[str, Any]) -> Verdict:
    """Refuse a call whose arguments hold a secret: a known value, a credential's shape, or
    the marker left where one was removed. The refusal names the argument and the kind of
    secret, never its value."""
    for name, text in _strings(args):
        what = secret_in(text)
        if what is not None:
            return Verdict(
                refused=f"its argument {name!r} holds a secret ({what}); Baton never sends "
                "secrets, not even redacted",
                guard="secrets",
                target=name,
            )
    return Verdict()


def _strings(value: Any, path: str = "") -> list[tuple[str, str]]:
    """Every string inside a JSON-like value, with where it is (``to``, ``items.0``)."""
    if isinstance(value, str):
        return [(path or "(arguments)", value)]
    if isinstance(value, dict):
        return [s for k, v in value.items() for s in _strings(v, f"{path}.{k}" if path else str(k))]
    if isinstance(value, list):
        return [s for i, v in enumerate(value) for s in _strings(v, f"{path}.{i}")]
    return []


def _signature(name: str, arguments: Any) -> tuple[str, str]:
    """A call's identity for the loop detector: the tool and its canonical arguments."""
    raw = arguments if isinstance(arguments, str) else json.dumps(arguments)
    try:
        return name, prompts.dumps(json.loads(raw or "{}"))
    except json.JSONDecodeError:
        return name, raw.strip()
