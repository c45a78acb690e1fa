"""Who may decide a checkpoint: an allowlist per risk level, and no self-approval of
high-risk actions unless configured. Checked on every click; refusals are audited.

Settings (comma-separated user ids ``U…`` and user group ids ``S…``; empty = anyone in the
workspace that started the run):

- ``BATON_APPROVERS_READ_ONLY``, ``BATON_APPROVERS_WRITES``, ``BATON_APPROVERS_EXTERNAL``
- ``BATON_SELF_APPROVE_EXTERNAL`` (default false): may the requester approve their own
  external (irreversible) action?
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field

RISKS = ("read_only", "writes", "external")
GroupLookup = Callable[[str], Awaitable[set[str]]]


@dataclass(frozen=True)
class RiskRule:
    """Who may approve actions of one risk level."""

    users: frozenset[str] = frozenset()
    groups: frozenset[str] = frozenset()
    allow_self: bool = True

    @property
    def open(self) -> bool:
        """No allowlist: anyone in the workspace may decide."""
        return not self.users and not self.groups


@dataclass(frozen=True)
class ApprovalPolicy:
    """Rules per risk level."""

    rules: Mapping[str, RiskRule] = field(
        default_factory=lambda: {
            "read_only": RiskRule(),
            "writes": RiskRule(),
            "external": RiskRule(allow_self=False),
        }
    )

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> ApprovalPolicy:
        """Read ``BATON_APPROVERS_*`` and ``BATON_SELF_APPROVE_EXTERNAL``."""
        rules = {}
        for risk in RISKS:
            ids = {i.strip() for i in env.get(f"BATON_APPROVERS_{risk.upper()}", "").split(",")}
            ids.discard("")
            allow_self = True
            if risk == "external":
                allow_self = env.get("BATON_SELF_APPROVE_EXTERNAL", "").lower() in (
                    "1",
                    "true",
                    "yes",
                )
            rules[risk] = RiskRule(
                users=frozenset(i for i in ids if not i.startswith("S")),
                groups=frozenset(i for i in ids if i.startswith("S")),
                allow_self=allow_self,
            )
        return cls(rules=rules)

    def rule(self, risk: str) -> RiskRule:
        """The rule for ``risk`` (unknown risks get the strictest one)."""
        return self.rules.get(risk) or self.rules.get("external") or RiskRule(allow_self=False)

    async def refusal(
        self,
        *,
        risk: str,
        user_id: str,
        team_id: str | None,
        run_team_id: str | None,
        requester: str | None,
        members_of: GroupLookup,
    ) -> str | None:
        """Why ``user_id`` may not decide, or None if they may."""
        if run_team_id and team_id and team_id != run_team_id:
            return "This run belongs to another workspace."
        rule = self.rule(risk)
        if not rule.allow_self and requester == f"slack:{user_id}":
            return (
                "You asked for this run, and an irreversible action needs someone else's "
                "approval. Ask a teammate to approve it."
            )
        if rule.open or user_id in rule.users:
            return None
        for group in rule.groups:
            if user_id in await members_of(group):
                return None
        return f"Only the approvers for {risk.replace('_', '-')} actions can decide this."


class GroupCache:
    """Members of user groups, cached for a minute (``usergroups.users.list`` is Tier 2)."""

    def __init__(self, fetch: GroupLookup, ttl_s: float = 60.0) -> None:
        self._fetch = fetch
        self._ttl = ttl_s
        self._cache: dict[str, tuple[float, set[str]]] = {}

    async def members(self, group: str) -> set[str]:
        """Member user ids of ``group``."""
        hit = self._cache.get(group)
        now = time.monotonic()
        if hit is not None and now - hit[0] < self._ttl:
            return hit[1]
        members = await self._fetch(group)
        self._cache[group] = (now, members)
        return members
