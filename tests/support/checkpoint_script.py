"""A one-step run whose writer (the shipped ``sdr_writer``) first drafts an email with an
invented fact, and revises it when a person sends it back; and a grounding checker that finds
support for nothing in the invented draft and accounts honestly for the clean one.

Used by tests/test_checkpoint_override.py (engine and CLI) and tests/test_slack_checkpoint.py.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from agents.plan import Plan, PlanStep
from tests.support.llm_server import Reply, ScriptedLLM, request_text

REPO = Path(__file__).resolve().parents[2]
CHECKER = "You check outbound text"
TO = "ada@acme.test"
#: A person gave the recipient (so no recipient guard flags it); nothing else is known.
GOAL = f"Email {TO} to ask for a short call"
TITLE = "Write to the contact"
INVENTED = "I hear your team grew to 900 engineers in 2025."
FLAGGED_BODY = f"Hello,\n\n{INVENTED}\nWould you like a short call?\n\nBest regards"
CLEAN_BODY = "Hello,\n\nWould you like a short call?\n\nBest regards"
SUBJECT = "A short call"
SENT_BACK = "A person rejected this call"


def plan() -> Plan:
    """One agent step: the writer emails the contact."""
    return Plan(
        steps=[
            PlanStep(
                id="send",
                title=TITLE,
                agent="sdr_writer",
                instructions=f"Email {TO} and ask for a short call.",
            )
        ]
    )


def email(body: str, subject: str = SUBJECT, to: str = TO) -> Reply:
    return Reply.tool_calls([("send_email", {"to": to, "subject": subject, "body": body})])


def _is_checker(body: dict[str, Any]) -> bool:
    return CHECKER in str(body["messages"][0].get("content"))


def checker(body: dict[str, Any]) -> Reply | None:
    """The grounding checker: no support for a draft with the invented fact (a lazy checker
    would answer the same); for any other draft, each sentence labelled for what it is."""
    if not _is_checker(body):
        return None
    user = str(body["messages"][-1]["content"])
    draft = user.split("</data>", 1)[0]
    if "900 engineers" in draft:
        return Reply.json(
            {
                "claims": [{"claim": INVENTED, "evidence_id": None, "quote": None}],
                "sentences": [],
            }
        )
    sentences = []
    for sid, field, text in re.findall(r"^(S\d+)( \(\w+\))?: (.*)$", draft, re.M):
        kind = "heading" if field else "question" if text.rstrip().endswith("?") else "greeting"
        sentences.append({"id": sid, "kind": kind})
    return Reply.json({"claims": [], "sentences": sentences})


def script_writer(llm: ScriptedLLM, *, revise: bool = True) -> None:
    """The writer: the invented draft first; after a send-back, the clean one (``revise``)."""
    llm.responder(checker)
    step = f"Your step: {TITLE}\n"

    def writer(match: str):
        return lambda body: (
            not _is_checker(body) and step in request_text(body) and match in request_text(body)
        )

    llm.rule(writer("Sent “"), Reply.text("Sent."))
    llm.rule(writer("Baton refused"), Reply.text("Not sent."))
    if revise:
        llm.rule(writer(SENT_BACK), email(CLEAN_BODY))
    else:
        llm.rule(writer(SENT_BACK), Reply.text("Not sent: a person sent it back."))
    llm.rule(writer(step), email(FLAGGED_BODY))


def delivered(mailbox: Any) -> list[str]:
    """The bodies the SMTP sink received (line breaks as written, without the final one)."""
    return [
        str(m.get_content()).replace("\r\n", "\n").rstrip("\n") for _, _, m in mailbox.envelopes
    ]
