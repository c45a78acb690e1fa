"""``send_email``: a plain-text email over SMTP (aiosmtplib). Irreversible, so always approved.

The call's idempotency key travels in ``X-Baton-Idempotency-Key`` and the ``Message-ID`` is
derived from it: a message sent again after a crash carries the same id, so the receiving
side (or a person reading the headers) can recognise the repeat. Addresses are checked
strictly and no header value may contain a line break (header injection).
"""

from __future__ import annotations

import hashlib
import re
from datetime import UTC, datetime
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime
from typing import Annotated

import aiosmtplib
from pydantic import Field

from agents.errors import BatonError
from agents.toolbox.settings import SmtpSettings
from agents.tools import Risk, Tool, ToolContext, make_tool

IDEMPOTENCY_HEADER = "X-Baton-Idempotency-Key"
MAX_RECIPIENTS = 50
MAX_SUBJECT = 300
_LOCAL = re.compile(r"^[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*$")
_DOMAIN = re.compile(r"^(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63}$")
_NAMED = re.compile(r'^\s*"?([^"<>]*?)"?\s*<([^<>]+)>\s*$')

Recipients = list[str] | str


class EmailError(BatonError):
    """The email was not sent (or not to everyone); the message says why."""


def make_send_email(settings: SmtpSettings) -> Tool:
    """The ``send_email`` tool, bound to ``settings`` (it is registered even unconfigured)."""

    async def send_email(
        to: Annotated[Recipients, Field(description="Recipient address, or a list of them.")],
        subject: Annotated[str, Field(description="The subject: one line.")],
        body: Annotated[str, Field(description="The message, as plain text.")],
        cc: Annotated[Recipients | None, Field(description="Copy to these addresses.")] = None,
        bcc: Annotated[
            Recipients | None, Field(description="Blind copy to these addresses.")
        ] = None,
        *,
        ctx: ToolContext,
    ) -> str:
        """Send a plain-text email. Irreversible: a person approves every call first."""
        return await send(settings, ctx, to=to, subject=subject, body=body, cc=cc, bcc=bcc)

    return make_tool(
        send_email,
        risk=Risk.EXTERNAL,
        idempotent=False,
        outbound=("subject", "body"),
        recipients=("to", "cc", "bcc"),
    )


async def send(
    settings: SmtpSettings,
    ctx: ToolContext,
    *,
    to: Recipients,
    subject: str,
    body: str,
    cc: Recipients | None = None,
    bcc: Recipients | None = None,
) -> str:
    """Build the message, check it, and hand it to the SMTP server."""
    if not settings.configured:
        raise EmailError(
            "Email is not configured: set BATON_SMTP_HOST and BATON_SMTP_FROM (and "
            "BATON_SMTP_USERNAME/BATON_SMTP_PASSWORD if the server needs a login)."
        )
    assert settings.host is not None and settings.sender is not None
    sender = parse_addresses(settings.sender, "BATON_SMTP_FROM")
    if len(sender) != 1:
        raise EmailError("BATON_SMTP_FROM must be exactly one address.")
    to_list = parse_addresses(to, "to")
    cc_list = parse_addresses(cc, "cc")
    bcc_list = parse_addresses(bcc, "bcc")
    if not to_list:
        raise EmailError("Give at least one recipient in 'to'.")
    everyone = [a.addr_spec for a in (*to_list, *cc_list, *bcc_list)]
    if len(everyone) > MAX_RECIPIENTS:
        raise EmailError(f"{len(everyone)} recipients; at most {MAX_RECIPIENTS} per email.")
    subject = subject.strip()
    if "\r" in subject or "\n" in subject:
        raise EmailError("The subject must be one line: it contains a line break.")
    if len(subject) > MAX_SUBJECT:
        raise EmailError(f"The subject is {len(subject)} characters; keep it under {MAX_SUBJECT}.")

    msg = EmailMessage()
    msg["From"] = sender[0]
    msg["To"] = to_list
    if cc_list:
        msg["Cc"] = cc_list
    msg["Subject"] = subject
    msg["Date"] = format_datetime(datetime.now(UTC))
    msg["Message-ID"] = message_id(ctx.idempotency_key, sender[0].domain)
    msg[IDEMPOTENCY_HEADER] = _one_line(ctx.idempotency_key)
    msg.set_content(body)

    port = settings.port
    try:
        refused, _reply = await aiosmtplib.send(
            msg,
            sender=sender[0].addr_spec,
            recipients=everyone,
            hostname=settings.host,
            port=port,
            username=settings.username,
            password=settings.password,
            use_tls=settings.tls,
            start_tls=settings.starttls,
            timeout=settings.timeout_s,
        )
    except aiosmtplib.SMTPAuthenticationError:
        raise EmailError(
            f"The SMTP server {settings.host} refused the login of {settings.username} "
            "(BATON_SMTP_USERNAME/BATON_SMTP_PASSWORD). Nothing was sent."
        ) from None
    except aiosmtplib.SMTPRecipientsRefused as exc:
        why = "; ".join(f"{r.recipient}: {r.message}" for r in exc.recipients)
        raise EmailError(
            f"The SMTP server refused every recipient ({why}). Nothing was sent."
        ) from None
    except (aiosmtplib.SMTPConnectError, aiosmtplib.SMTPTimeoutError, OSError) as exc:
        raise EmailError(
            f"Could not reach the SMTP server {settings.host}:{port or 'default port'}: {exc}. "
            "Nothing was sent."
        ) from None
    except aiosmtplib.SMTPException as exc:
        raise EmailError(f"The SMTP server did not take the message: {exc}.") from None
    sent = [a for a in everyone if a not in refused]
    note = ""
    if refused:
        note = " Refused: " + "; ".join(f"{a} ({r.message})" for a, r in refused.items()) + "."
    return f"Sent “{subject}” to {', '.join(sent)} (Message-ID {msg['Message-ID']}).{note}"


def message_id(key: str, domain: str) -> str:
    """A Message-ID that is the same for every attempt of one call (derived from its key)."""
    digest = hashlib.sha256(key.encode("utf-8")).hexdigest()[:32]
    return f"<baton.{digest}@{domain}>"


def parse_addresses(value: Recipients | None, field_name: str) -> list[Address]:
    """Addresses from a list or a comma-separated string, each ``a@b.c`` or ``Name <a@b.c>``."""
    if value is None:
        return []
    items = value if isinstance(value, list) else re.split(r"[,;]", value)
    out: list[Address] = []
    for raw in items:
        if not raw.strip():
            continue
        if "\r" in raw or "\n" in raw:
            raise EmailError(f"An address in '{field_name}' contains a line break: refused.")
        named = _NAMED.match(raw)
        name, spec = (named.group(1).strip(), named.group(2).strip()) if named else ("", raw)
        spec = spec.strip()
        local, at, domain = spec.rpartition("@")
        if not at or len(spec) > 254 or not _LOCAL.match(local) or not _DOMAIN.match(domain):
            raise EmailError(
                f"{raw.strip()[:100]!r} in '{field_name}' is not an email address like "
                "name@example.com."
            )
        out.append(Address(display_name=name, username=local, domain=domain))
    return out


def _one_line(value: str) -> str:
    return re.sub(r"[\r\n]+", " ", value)
