"""What must never be in a message or view Baton sends to Slack: a checker for tests.

``slack_text_problems(call)`` scans one recorded Web API call (a
:class:`tests.support.slack_api.RecordedCall`, or its ``args`` as a mapping) and returns one
line per problem, empty when the call is clean. It reads every text people are shown: the
message's fallback ``text`` and every text object (``mrkdwn`` and ``plain_text``) in its
``blocks`` or ``view``, at any depth (sections, fields, context elements, buttons, confirm
dialogs, modal titles), and the payloads posted to ``response_url``. Problems:

* a raw broadcast or special token: ``<!channel>``, ``<!here>``, ``<!everyone>``,
  ``<!subteam^…>`` (a user group in ``allowed_groups``, written without a label, is Baton's own
  configured approver group and allowed), any other ``<!…>`` except ``<!date^…>``;
* a plain ``@channel``, ``@here`` or ``@everyone`` (a defused one has a zero-width space after
  the ``@`` and passes);
* a masked link ``<target|label>`` whose label is not the target itself (compared without
  scheme, ``www.`` and trailing slash: ``<https://acme.example|acme.example>`` passes,
  ``<https://sso.evil.example/login|acme.example/partners>`` does not);
* ``link_names`` or ``parse=full`` in the arguments (Slack would turn names into pings).

Escaped text (``&lt;!channel&gt;``) is shown as it reads and pings nobody: it passes.

Typical use, over everything a scenario sent::

    for call in fake.calls:
        assert not slack_text_problems(call), call.summary()
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterator, Mapping
from typing import Any

__all__ = ["all_problems", "shown_texts", "slack_text_problems"]

_TOKEN = re.compile(r"<([^<>|]*)(?:\|([^<>]*))?>")
_PLAIN_BROADCAST = re.compile(r"(?<![\w@])@(channel|here|everyone)\b", re.IGNORECASE)
_SCHEME = re.compile(r"^[a-z][a-z0-9+.-]*:", re.IGNORECASE)
_GROUP = re.compile(r"^!subteam\^([A-Za-z0-9]+)$")
#: Keys whose string values people read (text objects hold theirs under ``text``).
_SHOWN_KEYS = ("text", "fallback", "pretext")


def shown_texts(value: Any) -> Iterator[str]:
    """Every string in ``value`` that Slack shows to people (see the module's docstring)."""
    if isinstance(value, Mapping):
        for key, item in value.items():
            if key in _SHOWN_KEYS and isinstance(item, str):
                yield item
            elif isinstance(item, Mapping | list):
                yield from shown_texts(item)
    elif isinstance(value, list):
        for item in value:
            yield from shown_texts(item)


def _bare(target: str) -> str:
    value = _SCHEME.sub("", target.strip().lower()).lstrip("/")
    return value.removeprefix("www.").rstrip("/")


def text_problems(text: str, allowed_groups: Collection[str] = ()) -> list[str]:
    """The problems of one shown string."""
    problems: list[str] = []
    for m in _TOKEN.finditer(text):
        target, label = m.group(1).strip(), m.group(2)
        if target.startswith("!"):
            group = _GROUP.match(target)
            if target.startswith("!date^"):
                continue
            if group and label is None and group.group(1) in allowed_groups:
                continue
            problems.append(f"raw special token {m.group(0)!r}")
        elif target.startswith(("@", "#")):
            continue  # a user mention or a channel link
        elif label is not None and _bare(label) != _bare(target):
            problems.append(f"masked link {m.group(0)!r}: its text is not where it goes")
    for m in _PLAIN_BROADCAST.finditer(text):
        problems.append(f"plain broadcast {m.group(0)!r}")
    return problems


def slack_text_problems(call: Any, allowed_groups: Collection[str] = ()) -> list[str]:
    """Every problem in one recorded call (``RecordedCall`` or its ``args``), in order."""
    args = call.args if hasattr(call, "args") else call
    problems: list[str] = []
    if not isinstance(args, Mapping):
        return problems
    if args.get("link_names") not in (None, False, 0, "0", "false"):
        problems.append("link_names is set: Slack would turn @names into pings")
    if str(args.get("parse") or "").lower() == "full":
        problems.append("parse=full: Slack would turn @names into pings")
    for text in shown_texts(args):
        problems += text_problems(text, allowed_groups)
    return problems


def all_problems(calls: Any, allowed_groups: Collection[str] = ()) -> list[str]:
    """The problems of many calls, each prefixed with the call's summary when it has one."""
    out: list[str] = []
    for call in calls:
        where = call.summary() if hasattr(call, "summary") else "call"
        out += [f"{where}: {p}" for p in slack_text_problems(call, allowed_groups)]
    return out
