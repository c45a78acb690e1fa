"""Approval cards of emails, flagged and clean, for the view tests (tests/test_views.py
snapshots and tests/test_email_card.py)."""

from __future__ import annotations

from typing import Any

from bot.views.cards import ApprovalCard

DIGEST = "9f2c" * 16
TS = 1_717_243_200.0  # 2024-06-01 12:00 UTC
NEWS = "https://acme.example/news"

EMAIL_ARGS: dict[str, Any] = {
    "to": "Ada Lovelace <ada@acme.example>",
    "subject": "Congrats on the Series B",
    "body": "Dear Ada,\n\nCongrats on the $20M Series B.\nWorth a chat next week?\n\n— The team",
    "cc": ["bob@acme.example"],
    "bcc": None,
}
SUPPORTED = {
    "claim": "Acme raised $20M in a Series B",
    "supported": True,
    "source": NEWS,
    "url": NEWS,
    "quote": "Acme raised $20M in a Series B led by Orbit Capital.",
}
UNSUPPORTED = {
    "claim": "Acme is hiring 200 engineers",
    "supported": False,
    "problem": "no source for it",
}
FLAGS = [
    {"kind": "claim", "text": "Acme is hiring 200 engineers", "problem": "no source for it"},
    {
        "kind": "backstop",
        "text": "Congrats on the 200 hires.",
        "problem": "“200” occurs in no evidence",
    },
]


def email_card(*, flagged: bool, **changes: Any) -> ApprovalCard:
    """A pending ``send_email`` approval, with two flags or none."""
    claims = [SUPPORTED, UNSUPPORTED] if flagged else [SUPPORTED]
    action: dict[str, Any] = {
        "tool": "send_email",
        "arguments": EMAIL_ARGS,
        "grounding": {"claims": claims, "unsupported": 1 if flagged else 0},
    }
    if flagged:
        action["flags"] = FLAGS
    values: dict[str, Any] = {
        "approval_id": "a_41" if flagged else "a_42",
        "run_id": "r_7kq2",
        "step_id": "send",
        "step_title": "Send the email",
        "kind": "tool_call",
        "action": action,
        "digest": DIGEST,
        "risk": "external",
        "claims": tuple(claims),
    }
    values.update(changes)
    return ApprovalCard(**values)
