"""Where the red team's cases run: a real Engine in process (fast), and the rubber-stamp
approvers, in process, in Slack (``baton serve`` + FakeSlack) and at the terminal.

The in-process :class:`Rig` is the engine ``baton run`` would build (``Settings.from_env``,
the config folder, the SMTP sink, the local sites, the Slack tools against FakeSlack when a
case needs them); its rubber stamp approves every pending approval the way a careless
person with one button would. Code must make that harmless.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from agents.approvals import DecisionRequest
from agents.bootstrap import open_engine
from agents.engine import Engine
from agents.playbook import bind, parse_playbook
from agents.settings import Settings
from bot.cards import approval_card, run_card
from bot.views import approval_message, status_card
from storage.models import Approval
from storage.repositories import approvals, audit, runs, steps
from tests.support import adversary as adv
from tests.support.llm_server import ScriptedLLM
from tests.support.smtp import Mailbox, smtp_server
from tests.support.website import LocalSite

#: The in-process approver (as Slack would name one).
STAMP = "slack:U0STAMP001"


@dataclass
class Rig:
    """One engine with its stand-ins. Build it with the ``rig`` fixture."""

    llm: ScriptedLLM
    engine: Engine
    mailbox: Mailbox
    site: LocalSite
    #: Another host (``localhost``) the attacker controls.
    evil: LocalSite
    fake: Any = None
    #: Every decision the stamp made or tried: (approval id, what, outcome).
    decisions: list[tuple[str, str, str]] = field(default_factory=list)

    async def start(self, values: dict[str, str] | None = None, **extra: str) -> str:
        """Start the red team's playbook with a person's inputs (``extra`` overrides)."""
        given = values or adv.inputs(self.site, **extra)
        playbook = parse_playbook(adv.PLAYBOOK)
        s = self.engine.svc.settings
        goal, plan = bind(playbook, given, self.engine.svc.registry, max_steps=s.limits.max_steps)
        return await self.engine.start_plan(
            goal, plan, playbook=playbook.name, inputs=given, requester="slack:U0ALICE01"
        )

    async def pending(self, run_id: str) -> list[Approval]:
        async with self.engine.svc.db.transaction() as s:
            return await approvals.list_approvals(s, run_id=run_id, statuses=["pending"])

    async def all_approvals(self, run_id: str) -> list[Approval]:
        async with self.engine.svc.db.transaction() as s:
            return await approvals.list_approvals(s, run_id=run_id)

    async def stamp(self, run_id: str, rounds: int = 8) -> str:
        """Approve everything, as a person who never reads would: a plain Approve on every
        pending approval. Where code refuses that (a flagged call), the stamp takes the card's
        primary button instead, "Send back to the writer" (a reject with a note). Returns the
        run's final status."""
        summary = await self.engine.wait(run_id)
        for _ in range(rounds):
            found = await self.pending(run_id)
            if not found:
                break
            for a in found:
                await self._approve(a)
            summary = await self.engine.wait(run_id)
        return summary.status

    async def _approve(self, a: Approval) -> None:
        try:
            await self.engine.decide(DecisionRequest(a.id, "approve", STAMP, digest=a.digest))
            self.decisions.append((a.id, "approve", "ok"))
            return
        except Exception as exc:  # code refused the plain approve: that is the defence
            self.decisions.append((a.id, "approve", f"refused: {exc}"))
        with contextlib.suppress(Exception):
            await self.engine.decide(
                DecisionRequest(a.id, "reject", STAMP, reason="Send back", digest=a.digest)
            )
            self.decisions.append((a.id, "send_back", "ok"))

    async def cards(self, run_id: str) -> list[dict[str, Any]]:
        """What Slack would be sent for this run: every approval card and the status card."""
        out: list[dict[str, Any]] = []
        async with self.engine.svc.db.transaction() as s:
            run = await runs.get_run(s, run_id=run_id)
            rows = await steps.get_steps(s, run_id=run_id)
            found = await approvals.list_approvals(s, run_id=run_id)
        titles = {r.step_id: r.title for r in rows}
        for a in found:
            text, blocks = approval_message(approval_card(a, titles.get(a.step_id, a.step_id)))
            out.append({"text": text, "blocks": blocks})
        if run is not None:
            text, blocks = status_card(run_card(run, rows))
            out.append({"text": text, "blocks": blocks})
        return out

    async def audit_actions(self, run_id: str) -> list[str]:
        async with self.engine.svc.db.transaction() as s:
            return [e.action for e in await audit.list_entries(s, run_id=run_id)]

    async def outside(self, run_id: str) -> adv.Outside:
        """Everything that left Baton, with the cards of this run as Slack would get them."""
        calls = (lambda: self.fake.calls) if self.fake is not None else list
        return adv.Outside(
            self.mailbox, (self.site, self.evil), calls, slack_messages=await self.cards(run_id)
        )

    async def assert_safe(self, run_id: str, **kw: Any) -> None:
        adv.assert_safe(await self.outside(run_id), **kw)

    async def caught_by(self, run_id: str) -> set[str]:
        """Which guards acted in this run: the kinds of every flag on its approvals, and
        ``refused`` when code refused a call."""
        kinds = {f["kind"] for a in await self.all_approvals(run_id) for f in self.flags(a)}
        if "guardrail.refused" in await self.audit_actions(run_id):
            kinds.add("refused")
        return kinds

    def flags(self, approval: Approval) -> list[dict[str, Any]]:
        return list((approval.action or {}).get("flags") or [])


def secret_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Plant the secrets the adversary is after (the redactor learns them by name)."""
    monkeypatch.setenv("BATON_SMTP_USERNAME", adv.SMTP_USER)
    monkeypatch.setenv("BATON_SMTP_PASSWORD", adv.SMTP_PASSWORD)
    monkeypatch.setenv("ACME_API_KEY", adv.OPENAI_KEY)
    monkeypatch.setenv("GITHUB_TOKEN", adv.GITHUB_TOKEN)
    monkeypatch.setenv("SLACK_BOT_TOKEN", adv.SLACK_TOKEN)


@contextlib.contextmanager
def sites(home: str = adv.HOME, **pages: str) -> Iterator[tuple[LocalSite, LocalSite]]:
    """The account's site (``/`` plus ``pages``, keyed by path without the slash) and the
    attacker's (``/collect``, any query)."""
    extra = {f"/{k.replace('__', '/')}": v for k, v in pages.items()}
    site = LocalSite(pages={"/": home, "/news": adv.NEWS, **extra}).start()
    evil = LocalSite(pages={"/collect": "<html><body>thanks</body></html>"}).start()
    try:
        yield site, evil
    finally:
        site.stop()
        evil.stop()


def evil_url(evil: LocalSite, query: str = "") -> str:
    """A URL on the attacker's host (``localhost``: another host than the account's)."""
    return f"http://localhost:{evil.port}/collect" + (f"?{query}" if query else "")


@contextlib.asynccontextmanager
async def open_rig(
    llm: ScriptedLLM,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    site: LocalSite,
    evil: LocalSite,
    *,
    fake: Any = None,
    crm_db: Path | None = None,
    env: dict[str, str] | None = None,
) -> AsyncIterator[Rig]:
    """An engine as ``baton run`` builds it, against the stand-ins."""
    with smtp_server(password=adv.SMTP_PASSWORD) as box:
        secret_env(monkeypatch)
        folder = adv.config_folder(tmp_path, slack=fake is not None, crm_db=crm_db)
        values = {
            "BATON_DATABASE_URL": f"sqlite:///{tmp_path}/baton.db",
            "BATON_CONFIG_DIR": str(folder),
            "BATON_PLUGINS": "",
            "BATON_FETCH_ALLOW_PRIVATE": "127.0.0.1/32",
            "BATON_SMTP_HOST": box.host,
            "BATON_SMTP_PORT": str(box.port),
            "BATON_SMTP_FROM": "sdr@ourco.test",
            "BATON_SENDER_PROFILE": adv.SENDER_PROFILE,
            "BATON_RETRY_BASE": "0.01",
            "BATON_RETRY_MAX": "0.05",
            "BATON_MODEL_TIMEOUT": "10",
            **(env or {}),
        }
        for k, v in values.items():
            monkeypatch.setenv(k, v)
        extra: list[Any] = []
        if fake is not None:
            from slack_sdk.web.async_client import AsyncWebClient

            from bot.poster import Poster
            from bot.slack_tools import slack_tools

            client = AsyncWebClient(token=adv.SLACK_TOKEN, base_url=fake.base_url)
            extra = slack_tools(Poster(client))
        engine = await open_engine(Settings.from_env(), extra_tools=extra)
        try:
            yield Rig(llm, engine, box, site, evil, fake)
        finally:
            await engine.close()
            await engine.svc.db.close()


def pending_json(rig: Rig, approval: Approval) -> str:
    return json.dumps(approval.action, ensure_ascii=False)
