"""Money budgets: per run, per requester per day, per Slack workspace per day.

Checked before every model call and every tool call of a step. A budget that is used up does
not fail the run: the step parks on a ``budget`` approval saying which budget, what was spent
and the cap, and offering to raise the cap *for this run* to one more cap's worth beyond what is spent. The raise
is the approval's action (``raise_to``), so it is bound by the approval's digest and read
back from storage after a restart.

A day is a UTC day. The day's spend is the cost of the runs created or updated since UTC
midnight (a run that started yesterday and is still spending counts whole). It is read from
storage at most every :data:`DAY_TOTAL_TTL_S` seconds per run, plus this run's own spend
since that read.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from agents.budget import RunBudget, dollars
from storage.repositories import approvals, runs

if TYPE_CHECKING:
    from agents.state import RunState, Services

DAY_S = 86_400.0
DAY_TOTAL_TTL_S = 5.0
BUDGET_KIND = "budget"
#: Who may raise a budget: the approvers of irreversible actions (money spent is spent), and
#: by default not the requester themselves (BATON_SELF_APPROVE_EXTERNAL).
BUDGET_RISK = "external"

RUN, USER_DAY, WORKSPACE_DAY = "run", "user_day", "workspace_day"
SETTING = {
    RUN: "BATON_MAX_COST_USD",
    USER_DAY: "BATON_MAX_COST_USD_PER_USER_DAY",
    WORKSPACE_DAY: "BATON_MAX_COST_USD_PER_WORKSPACE_DAY",
}


@dataclass(frozen=True)
class Overspend:
    """A budget used up: which one, by whom, how much was spent, and the cap in force."""

    budget: str
    spent: float
    #: The cap in force for this run (the configured one, or as raised by a person).
    cap: float
    #: The configured cap: one more of it is what approving adds.
    base: float
    who: str | None = None

    @property
    def raise_to(self) -> float:
        """The cap this run gets if a person approves: one more cap's worth beyond what is
        spent (a single call can overshoot a cap; raising less would ask again at once)."""
        return max(self.cap, self.spent) + self.base

    def action(self) -> dict[str, Any]:
        """The approval's action: exactly what a person is asked to allow."""
        return {
            "budget": self.budget,
            "who": self.who,
            "spent": self.spent,
            "cap": self.cap,
            "raise_to": self.raise_to,
            "setting": SETTING[self.budget],
        }

    def sentence(self) -> str:
        """What happened, in words."""
        return describe(self.action())


def describe(action: dict[str, Any]) -> str:
    """A budget approval's action as a sentence (also used by the CLI and Slack)."""
    budget = str(action.get("budget"))
    spent, cap = float(action.get("spent") or 0), float(action.get("cap") or 0)
    setting = action.get("setting") or SETTING.get(budget, "")
    who = action.get("who")
    if budget == USER_DAY:
        lead = f"{who} has spent ${dollars(spent)} today (UTC), reaching the per-user daily cap"
    elif budget == WORKSPACE_DAY:
        lead = f"Workspace {who} has spent ${dollars(spent)} today (UTC), reaching its daily cap"
    else:
        lead = f"This run has cost ${dollars(spent)}, reaching its cap"
    return f"{lead} of ${dollars(cap)} ({setting})."


def offer(action: dict[str, Any]) -> str:
    """What approving a budget approval does, in words."""
    raise_to = float(action.get("raise_to") or 0)
    if action.get("budget") == RUN:
        return f"Approve to let this run spend up to ${dollars(raise_to)}; reject to stop it."
    return (
        f"Approve to let this run go on until that spend reaches ${dollars(raise_to)}; "
        "reject to stop it."
    )


def day_start(now: float) -> float:
    """UTC midnight before ``now`` (epoch seconds are UTC and have no leap seconds)."""
    return now - now % DAY_S


async def overspend(svc: Services, state: RunState) -> Overspend | None:
    """The first budget this run has used up, or None if it may spend more."""
    budget = state.budget
    if budget.raised is None:
        await _load(svc, state)
    raised = budget.raised or {}
    base = budget.limits.max_cost_usd
    if base > 0:
        cap = raised.get(RUN, base)
        if budget.cost_usd >= cap:
            return Overspend(RUN, budget.cost_usd, cap, base)
    s = svc.settings
    for name, base, who in (
        (USER_DAY, s.max_cost_usd_per_user_day, state.requester),
        (WORKSPACE_DAY, s.max_cost_usd_per_workspace_day, budget.team_id),
    ):
        if base <= 0 or not who:
            continue
        spent = await _day_total(svc, budget, name, who)
        cap = raised.get(name, base)
        if spent >= cap:
            return Overspend(name, spent, cap, base, who)
    return None


def grant(budget: RunBudget, action: dict[str, Any]) -> None:
    """Record in memory a raise a person approved (storage already holds it)."""
    raised = budget.raised if budget.raised is not None else {}
    name, cap = str(action.get("budget")), float(action.get("raise_to") or 0)
    raised[name] = max(raised.get(name, 0.0), cap)
    budget.raised = raised


async def _load(svc: Services, state: RunState) -> None:
    async with svc.db.transaction() as session:
        run = await runs.get_run(session, run_id=state.run_id)
        found = await approvals.list_approvals(
            session, run_id=state.run_id, statuses=["approved"], limit=1_000
        )
    state.budget.team_id = run.team_id if run is not None else None
    state.budget.raised = {}
    for a in found:
        # A raise counts once its step has used it (consumed it): an approval not used yet is
        # found by that step's next check, which consumes it, so the run sees it as handled.
        if a.kind == BUDGET_KIND and a.consumed_at is not None:
            grant(state.budget, a.action or {})


async def _day_total(svc: Services, budget: RunBudget, name: str, who: str) -> float:
    since = day_start(svc.clock())
    now = time.monotonic()
    cached = budget.day_totals.get(name)
    if cached is not None and cached[3] == since and now - cached[2] < DAY_TOTAL_TTL_S:
        total, run_cost_then = cached[0], cached[1]
    else:
        async with svc.db.transaction() as session:
            if name == USER_DAY:
                total = await runs.spent_since(session, since=since, requester=who)
            else:
                total = await runs.spent_since(session, since=since, team_id=who)
        run_cost_then = budget.cost_usd
        budget.day_totals[name] = (total, run_cost_then, now, since)
    # The stored total includes this run as it was then; add what it has spent since.
    return total + max(0.0, budget.cost_usd - run_cost_then)
