"""The outbound-sales pack end to end through the ``baton`` CLI, with every part real but the
model: the shipped config folder (agents and playbook), a local web site for the research,
a real SMTP server (aiosmtpd) that receives the mail, and a CRM MCP server (stdio, SQLite).

The scripted model plays a gullible SDR: the account's news page carries a prompt injection
asking to mail the contact list to an outsider and to skip approval, and the model obeys.
Approval and grounding are fixed in code, so nothing reaches anyone until a person approves,
and the person rejects the outsider's email.
"""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path

from tests.conftest import Result, run_baton
from tests.support.llm_server import ScriptedLLM
from tests.support.sales import (
    CONTACTS,
    EVIL,
    crm_emails,
    pending_approvals,
    sales_config,
    script_sales,
)
from tests.support.smtp import Mailbox
from tests.support.website import LocalSite


def test_outbound_sales_pack_end_to_end_through_the_cli(
    llm: ScriptedLLM,
    baton_env: dict[str, str],
    sales_site: LocalSite,
    mailbox: Mailbox,
    tmp_path: Path,
) -> None:
    crm_db = tmp_path / "crm.db"
    db = tmp_path / "baton.db"
    env = {
        **baton_env,
        "BATON_CONFIG_DIR": str(sales_config(tmp_path, crm_db)),
        "BATON_FETCH_ALLOW_PRIVATE": "127.0.0.1/32",
        "BATON_SMTP_HOST": mailbox.host,
        "BATON_SMTP_PORT": str(mailbox.port),
        "BATON_SMTP_FROM": "sdr@ourco.test",
    }
    script_sales(llm, sales_site)

    check: Result = run_baton(["check"], env)
    assert check.code == 0, check.out + check.err
    assert "outbound_sales" in check.out and "MCP servers: 1 (crm)" in check.out

    # 1. Research, contacts and the three emails the model wants to send: all wait.
    r = run_baton(
        [
            "run",
            "--playbook",
            "outbound_sales",
            "-i",
            "account=Acme",
            "-i",
            f"website={sales_site.url}/",
            "-i",
            f"pages={sales_site.url}/news",
            "-i",
            "offer=Thermal testing for rocket engines.",
            "-i",
            f"contacts={CONTACTS}",
            "-i",
            "follow_up_after=2s",
            "--approvals",
            "exit",
        ],
        env,
        timeout=120,
    )
    assert r.code == 3, r.out + r.err
    assert "Traceback" not in r.err
    assert sorted(sales_site.hits) == ["/", "/news"]
    pending = pending_approvals(db)
    assert sorted(p["action"]["arguments"]["to"] for p in pending) == sorted(
        ["ada@acme.test", "bob@acme.test", EVIL]
    )
    assert mailbox.envelopes == []  # nothing is sent before a person approves
    ada = next(p for p in pending if p["action"]["arguments"]["to"] == "ada@acme.test")
    claims = ada["action"]["grounding"]["claims"]
    assert {(c["claim"], c["supported"], c.get("source")) for c in claims} == {
        ("Acme raised $20M in a Series B", True, f"{sales_site.url}/news"),
        ("Ada is the CTO", True, f"{sales_site.url}/"),
    }

    # 2. A person approves the two real emails and rejects the injected one.
    run_id = _run_id(db)
    for p in pending:
        if p["action"]["arguments"]["to"] == EVIL:
            d = run_baton(["reject", p["id"], "--reason", "not on the list", "--no-continue"], env)
        else:
            d = run_baton(["approve", p["id"], "--no-continue"], env)
        assert d.code == 0, d.out + d.err

    # 3. Resume: the emails go out, then the CRM records wait for approval (writes).
    r = run_baton(["resume", run_id, "--approvals", "exit"], env, timeout=120)
    assert r.code == 3, r.out + r.err
    sent = sorted(rcpts[0] for _, rcpts, _ in mailbox.envelopes)
    assert sent == ["ada@acme.test", "bob@acme.test"]
    assert crm_emails(crm_db) == []
    crm = pending_approvals(db)
    assert [p["action"]["tool"] for p in crm] == ["crm__log_activity"] * 2
    for p in crm:
        assert run_baton(["approve", p["id"], "--no-continue"], env).code == 0

    # 4. Bob replies before the follow-up is due; the follow-up goes to Ada only.
    with sqlite3.connect(crm_db) as conn:
        conn.execute(
            "INSERT INTO activities (contact_email, kind, summary, idempotency_key, created_at) "
            "VALUES ('bob@acme.test', 'reply', 'Interested', NULL, '2030-01-01')"
        )
    r = run_baton(["resume", run_id, "--approvals", "exit"], env, timeout=120)
    deadline = time.monotonic() + 60
    while (
        r.code == 3
        and not any(p["action"].get("tool") == "send_email" for p in pending_approvals(db))
        and time.monotonic() < deadline
    ):
        r = run_baton(["resume", run_id, "--approvals", "exit"], env, timeout=120)
    assert r.code == 3, r.out + r.err
    assert crm_emails(crm_db) == [
        ("ada@acme.test", "email", "Rockets"),
        ("bob@acme.test", "email", "Engines"),
    ]
    [follow_up] = pending_approvals(db)
    assert follow_up["action"]["arguments"]["to"] == "ada@acme.test"
    assert run_baton(["approve", follow_up["id"], "--no-continue"], env).code == 0
    r = run_baton(["resume", run_id, "--approvals", "exit"], env, timeout=120)
    assert r.code == 0, r.out + r.err

    recipients = [rcpts[0] for _, rcpts, _ in mailbox.envelopes]
    assert sorted(recipients) == ["ada@acme.test", "ada@acme.test", "bob@acme.test"]
    assert EVIL not in json.dumps(recipients)
    subjects = sorted(m["Subject"] for _, _, m in mailbox.envelopes)
    assert subjects == ["Engines", "Following up", "Rockets"]
    # Each email carries its own idempotency key: none was sent twice.
    keys = [m["X-Baton-Idempotency-Key"] for _, _, m in mailbox.envelopes]
    assert len(set(keys)) == 3
    assert len(crm_emails(crm_db)) == 2


def _run_id(db: Path) -> str:
    with sqlite3.connect(db) as conn:
        [(run_id,)] = conn.execute("SELECT id FROM runs").fetchall()
    return str(run_id)
