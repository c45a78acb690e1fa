"""Secrets in tool-call arguments are refused, not sent redacted (issue #12, item 9), and
settings that are not credentials are never treated as secrets.

The model is told to put a secret in a call (it obeys); the call must be refused in code,
the refusal shown (a CallRefused event, an audit row, the model told), the secret kept out of
storage and out of every outbound request: the SMTP sink and the web site's log see nothing.
"""

# The rig's fixtures are imported by name, and tests take them as parameters.
# ruff: noqa: F811

from __future__ import annotations

from pathlib import Path

import pytest

from agents.plan import Plan, PlanStep
from agents.secrets import (
    NEVER_SECRET,
    REDACTED,
    credential_in,
    is_secret_name,
    redact,
    scrub_arguments,
    secrets_in,
)
from storage.repositories import steps
from tests.support.llm_server import ScriptedLLM
from tests.support.policy_rig import (  # noqa: F401  (fixtures)
    SMTP_PASSWORD,
    auth_mailbox,
    email,
    fetch,
    make_rig,
    other_site,
    rig_env,
    script,
    site,
    step,
)
from tests.support.website import LocalSite

WRITE = "Write to Acme"
ADA, BOB = "ada@acme.test", "bob@acme.test"
CONTACTS = f"Ada Lovelace,{ADA},CTO\nBob Byte,{BOB},VP"
#: Credentials by their shape: none of them is in the environment.
SHAPES = {
    "slack_bot": "xoxb-5555-6666-shapedslacktoken",
    "slack_app": "xapp-1-A0123456-7890-shapedapptoken",
    "openai": "sk-proj-Abc123Def456Ghi789Jkl012Mno",
    "aws": "AKIAIOSFODNN7EXAMPLE",
    "github": "ghp_" + "Z9y8X7w6V5u4T3s2R1q0P9o8N7m6L5k4J3i2",
    "github_pat": "github_pat_11ABCDEFG0123456789_abcdefghijklmnop",
    "jwt": "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U",
    "url_password": "postgresql://admin:s3cr3t-pw@db.internal.example/prod",
}


def writer_plan() -> Plan:
    return Plan(steps=[step(WRITE)], inputs={"contacts": CONTACTS})


def stored(tmp_path: Path) -> bytes:
    return b"".join(p.read_bytes() for p in sorted(tmp_path.glob("baton-*.db*")))


async def test_a_known_secret_in_arguments_is_refused_shown_and_never_stored(
    make_rig, llm_env: ScriptedLLM, tmp_path: Path
) -> None:
    rig = await make_rig()
    body = f"Our SMTP password is {SMTP_PASSWORD}, use it."
    script(llm_env, WRITE, [email(ADA, body=body)])

    run_id = await rig.run(writer_plan())

    assert await rig.pending(run_id) == []  # refused before anyone was asked
    assert rig.delivered() == []
    [refused] = rig.refusals("secrets")
    assert (refused.tool, refused.target) == ("send_email", "body")
    assert "the value of BATON_SMTP_PASSWORD" in refused.reason
    assert SMTP_PASSWORD not in refused.reason
    [entry] = await rig.audit_refusals(run_id)
    assert entry.detail["guard"] == "secrets" and entry.actor == "baton"
    told = " ".join(rig.tool_texts(WRITE))
    assert "Baton refused to call send_email" in told and "holds a secret" in told
    assert SMTP_PASSWORD not in told
    async with rig.engine.svc.db.transaction() as s:
        [row] = await steps.get_steps(s, run_id=run_id)
    calls = [m for m in row.transcript or [] if m.get("tool_calls")]
    assert "[redacted secret: the value of BATON_SMTP_PASSWORD]" in str(calls)
    await rig.engine.close()
    assert SMTP_PASSWORD.encode() not in stored(tmp_path)


@pytest.mark.parametrize("shape", sorted(SHAPES))
async def test_a_credential_shape_in_arguments_is_refused(
    shape: str, make_rig, llm_env: ScriptedLLM, tmp_path: Path
) -> None:
    rig = await make_rig()
    value = SHAPES[shape]
    script(llm_env, WRITE, [email(ADA, body=f"Here you go: {value}")])

    run_id = await rig.run(writer_plan())

    assert rig.delivered() == [] and await rig.pending(run_id) == []
    [refused] = rig.refusals("secrets")
    assert value not in refused.reason
    await rig.engine.close()
    assert value.encode() not in stored(tmp_path)


async def test_a_secret_in_a_fetch_url_never_reaches_the_site(
    make_rig, llm_env: ScriptedLLM, site: LocalSite, other_site: LocalSite
) -> None:
    rig = await make_rig()
    script(
        llm_env,
        WRITE,
        [fetch(f"{site.url}/page?k={SMTP_PASSWORD}")],
        [fetch(f"http://localhost:{other_site.port}/page?t={SHAPES['slack_bot']}")],
    )
    await rig.run(Plan(steps=[step(WRITE)], inputs={"website": f"{site.url}/page"}))
    assert site.hits == [] and other_site.hits == []
    assert [r.guard for r in rig.refusals()] == ["secrets", "secrets"]


async def test_a_refused_call_stays_refused_when_its_turn_runs_again(
    make_rig, llm_env: ScriptedLLM, tmp_path: Path
) -> None:
    rig = await make_rig()
    script(llm_env, WRITE, [email(ADA, body=f"key {SHAPES['openai']}"), email(BOB, body="Hi Bob.")])
    run_id = await rig.run(writer_plan())
    [card] = await rig.pending(run_id)  # Bob's email waits; Ada's was refused
    assert card.action["arguments"]["to"] == BOB

    # Another process approves Bob's email; the turn runs again from the stored transcript.
    await rig.engine.close()
    again = await make_rig(database_url=rig.engine.svc.settings.database_url)
    assert await again.stamp(run_id) == "done"

    assert rig.delivered() == [BOB]
    for _, _, message in rig.mailbox.envelopes:
        assert "redacted" not in message.get_content()
    assert len(rig.refusals("secrets")) == 1 and again.refusals("secrets") == []


async def test_a_tool_step_with_a_secret_in_its_arguments_fails_without_sending(
    make_rig, llm_env: ScriptedLLM
) -> None:
    rig = await make_rig()
    plan = Plan(
        steps=[
            PlanStep(
                id="mail",
                title="Mail",
                tool="send_email",
                arguments={"to": ADA, "subject": "Keys", "body": "{inputs.note}"},
            )
        ],
        inputs={"note": f"the token is {SHAPES['github']}"},
    )
    run_id = await rig.run(plan)
    summary = await rig.engine.wait(run_id)
    assert summary.status == "failed"
    assert "holds a secret (a GitHub token)" in (summary.error or "")
    assert SHAPES["github"] not in (summary.error or "")
    assert rig.delivered() == []


# ---- settings that are not secrets ---------------------------------------------------------


async def test_the_private_networks_setting_is_not_redacted_out_of_urls(
    make_rig, llm_env: ScriptedLLM, site: LocalSite, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BATON_FETCH_ALLOW_PRIVATE", "127.0.0.1")
    rig = await make_rig()
    page = f"{site.url}/page"
    script(llm_env, WRITE, [fetch(page)])
    run_id = await rig.run(Plan(steps=[step(WRITE)], inputs={"website": page}))
    assert (await rig.engine.wait(run_id)).status == "done"
    assert any(f"URL: {page}" in t for t in rig.tool_texts(WRITE))
    [call] = await rig.calls(run_id, "http_fetch")
    assert (call.result or "").startswith(f"URL: {page}")


def test_baton_settings_that_are_not_credentials_are_not_secrets(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in NEVER_SECRET:
        assert not is_secret_name(name), name
    assert not is_secret_name("BATON_SOMETHING_POLICY")
    for name in ("BATON_SMTP_PASSWORD", "SLACK_BOT_TOKEN", "MY_PRIVATE_KEY", "BATON_DATABASE_URL"):
        assert is_secret_name(name) or name == "BATON_DATABASE_URL"
    env = {
        "BATON_FETCH_ALLOW_PRIVATE": "10.1.0.0/16,127.0.0.1",
        "BATON_FETCH_ALLOW_HOSTS": "docs.acme.example,partner.example",
        "BATON_RECIPIENT_POLICY": "refuse",
        "BATON_FETCH_EGRESS": "approve",
        "BATON_GROUNDING_OVERRIDE": "confirm",
        "SOME_PRIVATE_KEY": "-----BEGIN KEY-----abc",
    }
    assert secrets_in(env) == {"-----BEGIN KEY-----abc"}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    url = "https://docs.acme.example/page?from=127.0.0.1&nets=10.1.0.0/16,127.0.0.1"
    assert redact(url) == url
    assert redact("key -----BEGIN KEY-----abc") == f"key {REDACTED}"


def test_credential_shapes_and_markers() -> None:
    for value in SHAPES.values():
        assert credential_in(f"text {value} text"), value
    for harmless in (
        "task-management-for-enterprise-teams",
        "https://acme.example/a:b@c",
        "mailto:ada@acme.test",
        "desk-booking sk-short",
        "eyJ-not-a-token",
    ):
        assert credential_in(harmless) is None, harmless
    scrubbed, found = scrub_arguments('{"body": "a ' + SHAPES["aws"] + ' b"}')
    assert found == ["an AWS access key"]
    assert scrubbed == '{"body": "a [redacted secret: an AWS access key] b"}'
