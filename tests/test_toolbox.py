"""The built-in tools against real servers on loopback: ``http_fetch`` against a local aiohttp
site, ``send_email`` into a real aiosmtpd server, the Slack tools against FakeSlack, and one
``baton run`` where an agent fetches a page and an approved email goes out once.

This module is also a Baton plugin (``BATON_PLUGINS=tests.test_toolbox``): :func:`register`
adds an agent that may use ``http_fetch``, for the end-to-end test's subprocess.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from slack_sdk.web.async_client import AsyncWebClient

from agents import Agent, Registry, ToolContext
from agents.errors import ConfigError
from agents.registry import build_registry
from agents.toolbox import EmailError, FetchError, FetchSettings, SmtpSettings, builtin_tools
from agents.toolbox.email import IDEMPOTENCY_HEADER, make_send_email, message_id
from agents.toolbox.http_fetch import make_http_fetch
from agents.toolbox.web_guard import blocked_reason, domain_allowed, parse_ip
from agents.tools import Risk
from bot.slack_tools import (
    TOOL_POST_EVENT,
    SlackToolError,
    neutralise_broadcasts,
    register_slack_tools,
    register_slack_tools_from_env,
)
from tests.conftest import Result, run_baton
from tests.support.llm_server import Reply, ScriptedLLM
from tests.support.slack_api import FakeSlack, SlackChannel
from tests.support.slack_requests import BOT_USER_ID, CHANNEL_ID, USER_ID
from tests.support.smtp import Mailbox, free_port, smtp_server
from tests.support.website import LocalSite

SLACK_TOKEN = "xoxb-1111-2222-test"
LOCAL = FetchSettings(allow_private=True, timeout_s=10)
PUBLIC_ONLY = FetchSettings(timeout_s=10)


def register(registry: Registry) -> None:
    """Plugin hook for the end-to-end test: an agent that may read web pages."""
    registry.add_agent(
        Agent(
            name="web_researcher",
            role="Reads web pages and reports what they say, citing the URL.",
            instructions="Fetch the page you are given and report its facts with the URL.",
            tools=("http_fetch",),
        )
    )


def ctx(key: str = "k-1") -> ToolContext:
    return ToolContext(run_id="r-test", step_id="s1", idempotency_key=key)


@pytest.fixture
def site() -> Iterator[LocalSite]:
    s = LocalSite().start()
    try:
        yield s
    finally:
        s.stop()


async def fetch(url: str, settings: FetchSettings = LOCAL) -> str:
    return await make_http_fetch(settings).call({"url": url}, ctx())


# ---- http_fetch ----------------------------------------------------------------------------


async def test_fetch_returns_the_final_url_title_and_readable_text(site: LocalSite) -> None:
    text = await fetch(f"{site.url}/page")

    first, title, blank, *rest = text.splitlines()
    assert first == f"URL: {site.url}/page"
    assert title == "Title: Acme & Co — News"
    assert blank == ""
    body = "\n".join(rest)
    assert "# Acme raises Series B" in body
    assert "Acme Corp raised $40M in a Series B round led by Example Ventures." in body
    assert "- Founded 2015" in body
    assert "- HQ: Lisbon" in body
    for hidden in ("SCRIPT-TEXT", "color: red", "NAV-HOME", "HIDDEN-TEXT", "NOSCRIPT", "FOOTER"):
        assert hidden not in body
    # Links: listed once at the end, absolute, nav links left out.
    assert body.endswith(
        f"Links:\n- press release: {site.url}/press/b\n- coverage: https://example.org/x"
    )


async def test_fetch_follows_redirects_and_reports_the_final_url(site: LocalSite) -> None:
    text = await fetch(f"{site.url}/hop/3")

    assert text.startswith(f"URL: {site.url}/page\nTitle: Acme & Co")
    assert site.hits == ["/hop/3", "/hop/2", "/hop/1", "/page"]


async def test_fetch_gives_up_after_five_redirects(site: LocalSite) -> None:
    with pytest.raises(FetchError, match=r"Too many redirects: more than 5"):
        await fetch(f"{site.url}/hop/9")
    assert len(site.hits) == 6


@pytest.mark.parametrize(
    "target",
    [
        "http://10.0.0.7/admin",
        "http://169.254.169.254/latest/meta-data/",
        "http://[::1]:9/",
        "http://[::ffff:10.0.0.7]/",
        "http://192.168.0.10/",
    ],
)
async def test_a_redirect_to_a_private_address_is_refused(site: LocalSite, target: str) -> None:
    # The site itself is allowed (127.0.0.1 only); the redirect's target is not.
    only_site = FetchSettings(allow_networks=(ipaddress.ip_network("127.0.0.1/32"),), timeout_s=10)
    url = f"{site.url}/to?url={target.format(port=site.port)}"

    with pytest.raises(FetchError, match=r"^Refused .*(private|loopback|link-local)"):
        await fetch(url, only_site)
    assert len(site.hits) == 1  # the redirect's target was never requested


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("http://127.0.0.1:{port}/page", "Refused 127.0.0.1: it is a loopback address"),
        ("http://10.1.2.3/", "Refused 10.1.2.3: it is a private-network address"),
        ("http://[::1]:{port}/page", "Refused ::1: it is a loopback address"),
        ("http://169.254.169.254/latest/meta-data/", "a link-local address"),
        ("http://[::ffff:127.0.0.1]:{port}/page", "a loopback address"),
        ("http://0.0.0.0:{port}/page", "an unspecified address"),
        (
            "http://localhost:{port}/page",
            "Refused localhost: it resolves to ",
        ),
    ],
)
async def test_private_addresses_are_refused_by_default(
    site: LocalSite, url: str, why: str
) -> None:
    with pytest.raises(FetchError) as info:
        await fetch(url.format(port=site.port), PUBLIC_ONLY)

    assert why in str(info.value)
    assert "BATON_FETCH_ALLOW_PRIVATE" in str(info.value)
    assert site.hits == []  # refused before any connection


def test_settings_default_to_public_addresses_only() -> None:
    settings = FetchSettings.from_env({})
    assert settings.allow_private is False
    assert settings.allow_networks == ()
    assert settings.allow_domains == ()


async def test_the_domain_allowlist_is_checked_on_every_hop(site: LocalSite) -> None:
    allowed = FetchSettings(allow_private=True, allow_domains=("127.0.0.1",), timeout_s=10)
    assert (await fetch(f"{site.url}/page", allowed)).startswith(f"URL: {site.url}/page")

    with pytest.raises(FetchError, match=r"Refused localhost: it is not in the allowed domains"):
        await fetch(f"{site.url}/to?url=http://localhost:{site.port}/page", allowed)

    elsewhere = FetchSettings(allow_private=True, allow_domains=("example.com",))
    with pytest.raises(FetchError, match=r"not in the allowed domains \(example\.com;"):
        await fetch(f"{site.url}/page", elsewhere)


def test_allowed_domains_include_subdomains_only() -> None:
    allow = ("example.com",)
    assert domain_allowed("example.com", allow)
    assert domain_allowed("news.Example.COM.", allow)
    assert not domain_allowed("badexample.com", allow)
    assert not domain_allowed("example.com.evil.net", allow)
    assert domain_allowed("anything.net", ())


async def test_the_body_is_read_up_to_the_byte_cap(site: LocalSite) -> None:
    small = FetchSettings(allow_private=True, max_bytes=2_000, timeout_s=10)

    text = await fetch(f"{site.url}/big", small)

    assert "word10 word11" in text
    assert "word5000" not in text
    assert text.endswith("[Cut: only the first 2000 bytes were read (BATON_FETCH_MAX_BYTES).]")


async def test_long_text_is_cut(site: LocalSite) -> None:
    text = await fetch(f"{site.url}/big")

    assert text.endswith("[Cut: the text goes on past 15000 characters.]")
    assert len(text) < 15_200


async def test_the_whole_fetch_has_a_time_limit(site: LocalSite) -> None:
    hasty = FetchSettings(allow_private=True, timeout_s=0.3)

    with pytest.raises(FetchError, match=r"did not answer within 0\.3 seconds"):
        await fetch(f"{site.url}/slow", hasty)


async def test_text_that_is_not_html_comes_back_as_it_is(site: LocalSite) -> None:
    plain = await fetch(f"{site.url}/plain")
    assert plain == f"URL: {site.url}/plain\nContent-Type: text/plain\n\nline one\n  line two"

    data = await fetch(f"{site.url}/data.json")
    assert data.endswith('{"revenue": "12M"}')

    raw = await fetch(f"{site.url}/raw")
    assert raw.endswith("\n\njust words, no type")


async def test_binary_files_and_errors_are_clear_sentences(site: LocalSite) -> None:
    with pytest.raises(FetchError, match=r"/logo\.png is a image/png file, not a page"):
        await fetch(f"{site.url}/logo.png")
    with pytest.raises(FetchError, match=r"/blob is binary, not a page"):
        await fetch(f"{site.url}/blob")
    with pytest.raises(FetchError, match=r"/missing answered 404 Not Found\.$"):
        await fetch(f"{site.url}/missing")
    with pytest.raises(FetchError, match=r"only http and https"):
        await fetch("file:///etc/passwd")
    with pytest.raises(FetchError, match=r"not a full URL"):
        await fetch("/page")
    with pytest.raises(FetchError, match=r"user name or password"):
        await fetch(f"http://me:secret@127.0.0.1:{site.port}/page")


def test_address_classes() -> None:
    def reason(text: str) -> str | None:
        ip = parse_ip(text)
        assert ip is not None
        return blocked_reason(ip)

    assert reason("93.184.216.34") is None
    assert reason("2606:4700::1111") is None
    assert reason("192.168.1.1") == "a private-network address"
    assert reason("100.64.0.1") == "not a public address"  # carrier-grade NAT
    assert reason("224.0.0.1") == "a multicast address"
    assert reason("fe80::1") is not None
    assert reason("fd00::1") == "a private-network address"
    assert reason("::ffff:169.254.169.254") is not None
    assert reason("2002:0a00:0001::") == "a private-network address"  # 6to4 around 10.0.0.1
    assert reason("::") == "an unspecified address"


def test_fetch_settings_are_read_from_the_environment() -> None:
    settings = FetchSettings.from_env(
        {
            "BATON_FETCH_ALLOW_DOMAINS": " Example.com, *.docs.example.org ,",
            "BATON_FETCH_ALLOW_PRIVATE": "10.1.0.0/16, 127.0.0.1",
            "BATON_FETCH_MAX_BYTES": "1000",
            "BATON_FETCH_TIMEOUT": "2.5",
        }
    )
    assert settings.allow_domains == ("example.com", "docs.example.org")
    assert [str(n) for n in settings.allow_networks] == ["10.1.0.0/16", "127.0.0.1/32"]
    assert (settings.max_bytes, settings.timeout_s) == (1000, 2.5)
    assert FetchSettings.from_env({"BATON_FETCH_ALLOW_PRIVATE": "yes"}).allow_private is True
    with pytest.raises(ConfigError, match="BATON_FETCH_ALLOW_PRIVATE must be true, false"):
        FetchSettings.from_env({"BATON_FETCH_ALLOW_PRIVATE": "maybe"})
    with pytest.raises(ConfigError, match="BATON_FETCH_MAX_BYTES must be greater than 0"):
        FetchSettings.from_env({"BATON_FETCH_MAX_BYTES": "0"})
    with pytest.raises(ConfigError, match="BATON_FETCH_ALLOW_DOMAINS takes domain names"):
        FetchSettings.from_env({"BATON_FETCH_ALLOW_DOMAINS": "https://example.com/"})


# ---- send_email ----------------------------------------------------------------------------


def smtp(box: Mailbox, **extra: Any) -> SmtpSettings:
    return SmtpSettings(
        host=box.host, port=box.port, sender="Baton <baton@example.com>", timeout_s=10, **extra
    )


async def test_send_email_delivers_with_the_idempotency_key(mailbox: Mailbox) -> None:
    tool = make_send_email(smtp(mailbox))
    assert tool.risk is Risk.EXTERNAL
    assert tool.idempotent is False

    result = await tool.call(
        {
            "to": ["Ana Lima <ana@example.com>", "bo@example.org"],
            "cc": "carl@example.net",
            "bcc": ["audit@example.com"],
            "subject": "Series B — congrats",
            "body": "Hello Ana,\n\ncongratulations on the round.\n",
        },
        ctx("r-1:s1:call-7"),
    )

    [(sender, rcpts, msg)] = mailbox.envelopes
    assert sender == "baton@example.com"
    assert rcpts == ["ana@example.com", "bo@example.org", "carl@example.net", "audit@example.com"]
    assert msg["From"] == "Baton <baton@example.com>"
    assert msg["To"] == "Ana Lima <ana@example.com>, bo@example.org"
    assert msg["Cc"] == "carl@example.net"
    assert msg["Bcc"] is None  # blind copies stay blind
    assert msg["Subject"] == "Series B — congrats"
    assert msg[IDEMPOTENCY_HEADER] == "r-1:s1:call-7"
    assert msg["Message-ID"] == message_id("r-1:s1:call-7", "example.com")
    assert (
        msg.get_content().replace("\r\n", "\n") == "Hello Ana,\n\ncongratulations on the round.\n"
    )
    assert result.startswith("Sent “Series B — congrats” to ana@example.com, bo@example.org")


async def test_a_retried_call_carries_the_same_message_id(mailbox: Mailbox) -> None:
    tool = make_send_email(smtp(mailbox))
    args = {"to": "ana@example.com", "subject": "Hi", "body": "x"}

    await tool.call(args, ctx("same-key"))
    await tool.call(args, ctx("same-key"))
    await tool.call(args, ctx("other-key"))

    ids = [m["Message-ID"] for _, _, m in mailbox.envelopes]
    assert ids[0] == ids[1] != ids[2]


@pytest.mark.parametrize(
    ("args", "error"),
    [
        ({"to": "ana@example.com\r\nBcc: x@evil.com"}, "contains a line break"),
        ({"subject": "Hi\r\nBcc: x@evil.com"}, "The subject must be one line"),
        ({"to": "not-an-address"}, "is not an email address"),
        ({"to": "ana@localhost"}, "is not an email address"),
        ({"to": "a..b@example.com"}, "is not an email address"),
        ({"cc": ["ok@example.com", "Eve <eve@@example.com>"]}, "in 'cc' is not an email"),
        ({"to": []}, "at least one recipient"),
    ],
)
async def test_bad_addresses_and_header_injection_are_refused(
    mailbox: Mailbox, args: dict[str, Any], error: str
) -> None:
    tool = make_send_email(smtp(mailbox))
    full = {"to": "ana@example.com", "subject": "Hi", "body": "x", **args}

    with pytest.raises(EmailError, match=re.escape(error)):
        await tool.call(full, ctx())
    assert mailbox.envelopes == []


async def test_refused_recipients_are_reported(mailbox: Mailbox) -> None:
    tool = make_send_email(smtp(mailbox))

    partly = await tool.call(
        {"to": ["ana@example.com", "nobody@example.com"], "subject": "Hi", "body": "x"}, ctx()
    )
    assert "to ana@example.com " in partly
    assert "Refused: nobody@example.com (5.1.1 no such user)." in partly

    with pytest.raises(EmailError, match=r"refused every recipient .*Nothing was sent"):
        await tool.call({"to": "nobody@example.com", "subject": "Hi", "body": "x"}, ctx())


async def test_smtp_login_and_a_wrong_password(monkeypatch: pytest.MonkeyPatch) -> None:
    with smtp_server(password="s3cret-pw") as box:
        good = make_send_email(smtp(box, username="baton", password="s3cret-pw"))
        await good.call({"to": "ana@example.com", "subject": "Hi", "body": "x"}, ctx())
        assert len(box.envelopes) == 1

        bad_settings = smtp(box, username="baton", password="wrong-pw-123")
        assert "wrong-pw-123" not in repr(bad_settings)
        with pytest.raises(EmailError) as info:
            await make_send_email(bad_settings).call(
                {"to": "ana@example.com", "subject": "Hi", "body": "x"}, ctx()
            )
        assert "refused the login of baton" in str(info.value)
        assert "wrong-pw-123" not in str(info.value)
        assert len(box.envelopes) == 1
        assert box.logins[-1].endswith(":refused")


async def test_unconfigured_email_says_what_to_set() -> None:
    [_fetch, send_email] = builtin_tools({})

    with pytest.raises(EmailError, match=r"Email is not configured: set BATON_SMTP_HOST"):
        await send_email.call({"to": "ana@example.com", "subject": "Hi", "body": "x"}, ctx())


async def test_unreachable_smtp_server_is_a_sentence() -> None:
    settings = SmtpSettings(host="127.0.0.1", port=free_port(), sender="b@example.com")

    with pytest.raises(EmailError, match=r"Could not reach the SMTP server 127\.0\.0\.1:\d+"):
        await make_send_email(settings).call(
            {"to": "ana@example.com", "subject": "Hi", "body": "x"}, ctx()
        )


def test_smtp_settings_from_the_environment() -> None:
    env = {
        "BATON_SMTP_HOST": "smtp.example.com",
        "BATON_SMTP_PORT": "465",
        "BATON_SMTP_USERNAME": "baton",
        "BATON_SMTP_PASSWORD": "hunter2-secret",
        "BATON_SMTP_FROM": "baton@example.com",
        "BATON_SMTP_TLS": "true",
    }
    settings = SmtpSettings.from_env(env)
    assert (settings.host, settings.port, settings.tls, settings.starttls) == (
        "smtp.example.com",
        465,
        True,
        None,
    )
    assert "hunter2-secret" not in repr(settings)
    with pytest.raises(ConfigError, match="not both"):
        SmtpSettings.from_env({**env, "BATON_SMTP_STARTTLS": "true"})
    with pytest.raises(ConfigError, match="go together"):
        SmtpSettings.from_env({"BATON_SMTP_USERNAME": "baton"})
    with pytest.raises(ConfigError, match="BATON_SMTP_PORT must be"):
        SmtpSettings.from_env({"BATON_SMTP_PORT": "smtp"})


def test_the_registry_always_has_the_builtin_tools() -> None:
    registry = build_registry()
    assert registry.tool("http_fetch").risk is Risk.READ_ONLY
    assert registry.tool("http_fetch").idempotent is True
    assert registry.tool("send_email").risk is Risk.EXTERNAL


# ---- Slack tools ---------------------------------------------------------------------------


@pytest.fixture
def fake_slack() -> Iterator[FakeSlack]:
    with FakeSlack(
        channels=[
            SlackChannel(CHANNEL_ID, "general", members={BOT_USER_ID, USER_ID}),
            SlackChannel("C0OUTSIDE1", "outside", is_member=False),
        ]
    ) as fake:
        yield fake


def slack_registry(fake: FakeSlack) -> Registry:
    registry = Registry()
    register_slack_tools(registry, AsyncWebClient(token=SLACK_TOKEN, base_url=fake.base_url))
    return registry


async def test_slack_read_channel_lists_messages_oldest_first(fake_slack: FakeSlack) -> None:
    first = fake_slack.add_message(CHANNEL_ID, "Kickoff at 10")
    second = fake_slack.add_message(CHANNEL_ID, "Bring the numbers")
    tool = slack_registry(fake_slack).tool("slack_read_channel")
    assert tool.risk is Risk.READ_ONLY

    text = await tool.call({"channel": f"<#{CHANNEL_ID}|general>", "limit": 5}, ctx())

    assert text.splitlines() == [
        f"The last 2 message(s) in <#{CHANNEL_ID}>, oldest first:",
        f"[{first['ts']}] <@{USER_ID}>: Kickoff at 10",
        f"[{second['ts']}] <@{USER_ID}>: Bring the numbers",
    ]
    assert fake_slack.last_call("conversations.history").args["limit"] in (5, "5")


async def test_slack_read_channel_says_when_baton_is_not_in_the_channel(
    fake_slack: FakeSlack,
) -> None:
    tool = slack_registry(fake_slack).tool("slack_read_channel")

    with pytest.raises(SlackToolError, match=r"not a member of <#C0OUTSIDE1>: invite it"):
        await tool.call({"channel": "C0OUTSIDE1"}, ctx())
    with pytest.raises(SlackToolError, match=r"'#general' is not a channel id"):
        await tool.call({"channel": "#general"}, ctx())


async def test_slack_post_message_defuses_broadcasts_and_posts_once_per_key(
    fake_slack: FakeSlack,
) -> None:
    tool = slack_registry(fake_slack).tool("slack_post_message")
    assert tool.risk is Risk.EXTERNAL
    text = (
        "Hey <!channel> and <!here|here>, <!everyone>: @channel @here @Everyone, mail me@here.com"
    )

    first = await tool.call({"channel": CHANNEL_ID, "text": text}, ctx("post-key-1"))
    again = await tool.call({"channel": CHANNEL_ID, "text": text}, ctx("post-key-1"))

    assert first.startswith(f"Posted in <#{CHANNEL_ID}> (ts ")
    assert "Already posted" in again
    assert fake_slack.count("chat.postMessage") == 1
    [posted] = [m for m in fake_slack.messages(CHANNEL_ID) if m.get("bot_id")]
    for loud in ("<!channel>", "<!here", "<!everyone>", "@channel", "@here ", "@Everyone"):
        assert loud not in posted["text"]
    assert posted["text"].replace("\u200b", "") == (
        "Hey @channel and @here, @everyone: @channel @here @Everyone, mail me@here.com"
    )
    assert posted["metadata"] == {
        "event_type": TOOL_POST_EVENT,
        "event_payload": {"key": "post-key-1"},
    }

    await tool.call({"channel": CHANNEL_ID, "text": "next"}, ctx("post-key-2"))
    assert fake_slack.count("chat.postMessage") == 2


async def test_slack_post_message_in_a_channel_baton_is_not_in(fake_slack: FakeSlack) -> None:
    tool = slack_registry(fake_slack).tool("slack_post_message")

    with pytest.raises(SlackToolError, match=r"not a member of <#C0OUTSIDE1>"):
        await tool.call({"channel": "C0OUTSIDE1", "text": "hi"}, ctx())


def test_neutralise_broadcasts_leaves_ordinary_mentions() -> None:
    assert neutralise_broadcasts("hi <@U123> and <#C123>") == "hi <@U123> and <#C123>"
    assert "\u200b" in neutralise_broadcasts("<!here>")


def test_neutralise_broadcasts_defuses_user_group_mentions() -> None:
    assert neutralise_broadcasts("ping <!subteam^S0123|@oncall> now") == "ping @\u200boncall now"
    assert neutralise_broadcasts("<!subteam^S0123>") == "@\u200bgroup"


def test_slack_tools_are_added_only_with_a_bot_token(fake_slack: FakeSlack) -> None:
    registry = Registry()
    assert register_slack_tools_from_env(registry, {}) is False
    assert "slack_post_message" not in registry.tools
    env = {"SLACK_BOT_TOKEN": SLACK_TOKEN, "SLACK_API_BASE_URL": fake_slack.base_url}
    assert register_slack_tools_from_env(registry, env) is True
    assert {"slack_read_channel", "slack_post_message"} <= set(registry.tools)


# ---- end to end: `baton run` fetches a page, then an approved email goes out once ---------


PLAYBOOK = """\
name: page-to-mail
description: Read a page, then mail what it says.
inputs:
  page: {description: The page to read}
goal: Brief the CEO on {inputs.page}
steps:
  - id: research
    title: Read the page
    agent: web_researcher
    instructions: Read {inputs.page} and list its facts with the URL.
  - id: mail
    title: Mail the CEO
    tool: send_email
    arguments:
      to: ceo@example.com
      subject: What the page says
      body: "{steps.research.output}"
"""


def test_baton_run_fetches_a_page_and_sends_the_approved_email_once(
    llm: ScriptedLLM, baton_env: dict[str, str], site: LocalSite, mailbox: Mailbox, tmp_path: Path
) -> None:
    playbook = tmp_path / "page_to_mail.yaml"
    playbook.write_text(PLAYBOOK, encoding="utf-8")
    page = f"{site.url}/page"
    llm.rule(
        "Your step: Read the page\n",
        Reply.tool_calls([("http_fetch", {"url": page})]),
        Reply.text(f"- Acme raised $40M in a Series B (source: {page})"),
    )
    # The email's text is grounded before it is shown for approval (agents/grounding.py).
    llm.rule(
        "You check outbound text",
        Reply.json(
            {
                "sentences": [
                    {"id": "S1", "kind": "heading"},
                    {
                        "id": "S2",
                        "kind": "claim",
                        "claims": [
                            {
                                "claim": "Acme raised $40M in a Series B",
                                "evidence_id": "tool:1",
                                "quote": "raised $40M in a Series B",
                            }
                        ],
                    },
                ]
            }
        ),
    )
    env = {
        **baton_env,
        "BATON_PLUGINS": "tests.test_toolbox",
        "BATON_FETCH_ALLOW_PRIVATE": "127.0.0.1/32",
        "BATON_SMTP_HOST": mailbox.host,
        "BATON_SMTP_PORT": str(mailbox.port),
        "BATON_SMTP_FROM": "baton@example.com",
    }

    r: Result = run_baton(
        ["run", "--playbook", str(playbook), "-i", f"page={page}", "--approvals", "prompt"],
        env,
        stdin="a\n",
    )

    assert r.code == 0, r.out + r.err
    assert "Traceback" not in r.err
    # The agent's fetch reached the site and its text went back to the model.
    assert site.hits == ["/page"]
    [_, second] = llm.requests_matching("Your step: Read the page\n")
    [tool_message] = [m for m in second.messages if m.get("role") == "tool"]
    assert f"URL: {page}" in str(tool_message["content"])
    assert "Acme Corp raised $40M" in str(tool_message["content"])
    # The email waited for approval, then went out exactly once.
    assert "send_email (risk: external)" in r.out
    assert "ok  Acme raised $40M in a Series B" in r.out
    assert f"“raised $40M in a Series B” — {page}" in r.out
    [(sender, rcpts, msg)] = mailbox.envelopes
    assert (sender, rcpts) == ("baton@example.com", ["ceo@example.com"])
    assert msg["Subject"] == "What the page says"
    assert f"Acme raised $40M in a Series B (source: {page})" in msg.get_content()
    assert msg[IDEMPOTENCY_HEADER]
    assert msg["Message-ID"] == message_id(msg[IDEMPOTENCY_HEADER], "example.com")
