"""An email as people see it: which calls are emails, their fields, and checks of edits.

A call is shown (and edited) as an email when its tool is ``send_email`` or its arguments
have ``to``, ``subject`` and ``body``. The cards (Slack, App Home, terminal) show To, Cc,
Bcc, Subject and then the body as text; the edit form has one input per field. Edited
fields are checked here in code (addresses parsed as addresses, a one-line subject) before
the tool's own schema sees them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from agents.toolbox.email import MAX_SUBJECT, EmailError, parse_addresses

SEND_EMAIL = "send_email"
#: The header fields, in the order they are shown.
HEADERS = ("to", "cc", "bcc", "subject")
_REQUIRED = frozenset(("to", "subject", "body"))


def is_email(tool: str | None, arguments: Mapping[str, Any] | None) -> bool:
    """Whether a call to ``tool`` with ``arguments`` is an email (shown and edited as one)."""
    args = arguments if isinstance(arguments, Mapping) else {}
    return tool == SEND_EMAIL or set(args) >= _REQUIRED


def action_is_email(action: Mapping[str, Any] | None) -> bool:
    """Whether an approval's action is an email."""
    action = action or {}
    return "tool" in action and is_email(str(action.get("tool")), action.get("arguments"))


def recipients(value: Any) -> list[str]:
    """The addresses of a ``to``/``cc``/``bcc`` value (a list or a comma-separated string)."""
    if value is None:
        return []
    items = value if isinstance(value, list) else str(value).replace(";", ",").split(",")
    return [str(item).strip() for item in items if str(item).strip()]


def addresses(value: Any) -> list[str]:
    """The bare addresses (``ada@acme.example``) of a ``to``/``cc``/``bcc`` value, as a
    confirmation names them; what does not parse is kept as it was written."""
    out = []
    for item in recipients(value):
        try:
            parsed = parse_addresses(item, "to")
        except EmailError:
            parsed = []
        out.append(parsed[0].addr_spec if len(parsed) == 1 else item)
    return out


def problems(arguments: Mapping[str, Any]) -> dict[str, str]:
    """What is wrong with an email's fields, by field name (empty when it may go)."""
    out: dict[str, str] = {}
    for name in ("to", "cc", "bcc"):
        try:
            found = parse_addresses(arguments.get(name), name)
        except EmailError as exc:
            out[name] = str(exc)
            continue
        if name == "to" and not found:
            out[name] = "Give at least one recipient."
    subject = arguments.get("subject")
    if not isinstance(subject, str) or not subject.strip():
        out["subject"] = "The subject is empty."
    elif "\n" in subject or "\r" in subject:
        out["subject"] = "The subject must be one line."
    elif len(subject.strip()) > MAX_SUBJECT:
        out["subject"] = f"The subject is {len(subject.strip())} characters; at most {MAX_SUBJECT}."
    body = arguments.get("body")
    if not isinstance(body, str) or not body.strip():
        out["body"] = "The body is empty."
    return out
