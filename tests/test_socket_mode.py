"""``baton serve`` in Socket Mode, for real: a subprocess with an ``xapp-`` token (and no
signing secret) opens a websocket to :class:`~tests.support.socket_mode.FakeSocketMode`,
which plays Slack's side of the protocol (hello, envelopes, acks, pings, disconnect) and
relays the Web API to :class:`~tests.support.slack_api.FakeSlack`. The model is the
scripted LLM server; nothing inside the process is replaced.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REPO
from tests.support.llm_server import Reply, ScriptedLLM
from tests.support.slack_api import RESPONSE_URL_METHOD, FakeSlack
from tests.support.slack_requests import CHANNEL_ID, app_mention_event, new_event_id
from tests.support.socket_mode import FakeSocketMode

PLANNER = "You are the planner"
BOT_TOKEN = "xoxb-1-socket-mode-test"
APP_TOKEN = "xapp-1-A0BATON01-1-socketmodetest"
#: Slack shows the user an error when a command is not acked within 3 s; on loopback an
#: ack should take a few milliseconds, so anything near a second is a regression.
ACK_BUDGET_S = 1.0


@dataclass
class Served:
    """A running ``baton serve`` subprocess."""

    proc: subprocess.Popen[bytes]
    out: Path
    err: Path

    def output(self) -> str:
        return self.out.read_text(errors="replace") + self.err.read_text(errors="replace")


@pytest.fixture
def slack() -> Iterator[FakeSlack]:
    with FakeSlack() as fake:
        yield fake


@pytest.fixture
def socket_mode(slack: FakeSlack) -> Iterator[FakeSocketMode]:
    with FakeSocketMode(slack) as fake:
        yield fake


@pytest.fixture
def served(
    baton_env: dict[str, str], socket_mode: FakeSocketMode, tmp_path: Path
) -> Iterator[Served]:
    """``baton serve`` connected over Socket Mode; stopped with SIGTERM, which must be clean."""
    env = dict(baton_env)
    env.pop("SLACK_SIGNING_SECRET", None)
    env.update(
        {
            "SLACK_BOT_TOKEN": BOT_TOKEN,
            "SLACK_APP_TOKEN": APP_TOKEN,
            "SLACK_API_BASE_URL": socket_mode.base_url,
            "BATON_LOG_LEVEL": "INFO",
        }
    )
    out, err = tmp_path / "serve.out", tmp_path / "serve.err"
    with out.open("wb") as stdout, err.open("wb") as stderr:
        proc = subprocess.Popen(
            [sys.executable, "-m", "bot", "serve"],
            stdin=subprocess.DEVNULL,
            stdout=stdout,
            stderr=stderr,
            env=env,
            cwd=REPO,
        )
    served = Served(proc, out, err)
    try:
        try:
            socket_mode.wait_for_connection(timeout=60)
        except AssertionError:
            proc.kill()
            proc.wait()
            raise AssertionError(f"baton serve never connected:\n{served.output()}") from None
        yield served
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
                pytest.fail(f"baton serve ignored SIGTERM:\n{served.output()}")
    assert proc.returncode == 0, served.output()
    assert "Traceback" not in served.output(), served.output()
    assert "Connected to Slack (Socket Mode)" in served.output() or (
        "connected to Slack (Socket Mode)" in served.output()
    ), served.output()


def plan(*titles: str) -> Reply:
    """The planner's answer: one researcher step per title, in a chain."""
    steps: list[dict[str, Any]] = []
    for i, title in enumerate(titles):
        steps.append(
            {
                "id": f"s{i + 1}",
                "title": title,
                "agent": "researcher",
                "instructions": f"Do: {title}.",
                "depends_on": [f"s{i}"] if i else [],
                "needs_approval": False,
            }
        )
    return Reply.json({"steps": steps})


def script(llm: ScriptedLLM, *titles: str) -> None:
    llm.rule(PLANNER, plan(*titles))
    for title in titles:
        llm.rule(f"Your step: {title}\n", Reply.text(f"Result of {title}."))


def cards(slack: FakeSlack) -> list[dict[str, Any]]:
    """Baton's top-level messages in the channel (one status card per run)."""
    return [m for m in slack.messages(CHANNEL_ID) if m["thread_ts"] in (None, m["ts"])]


def finished(slack: FakeSlack, card_ts: str) -> dict[str, Any] | None:
    """The run's closing summary in the card's thread, once posted."""
    return next(
        (m for m in slack.thread(CHANNEL_ID, card_ts) if m["text"].startswith("Run complete")),
        None,
    )


# ---- the protocol --------------------------------------------------------------------------


def test_connects_with_the_app_token_and_keeps_the_socket_alive(
    served: Served, slack: FakeSlack, socket_mode: FakeSocketMode
) -> None:
    opened = slack.calls_to("apps.connections.open")
    assert len(opened) == 1 and opened[0].ok
    assert opened[0].token == APP_TOKEN  # the app-level token opens the socket…
    assert socket_mode.open_connections, "no open connection"
    # …and slack_sdk pings right after connecting; the server's pong carries the same data.
    ping = socket_mode.wait_for_ping(from_app=True)
    assert ping.data.startswith(b"sdk-ping-pong:")
    socket_mode.ping(b"server-ping")
    pong = socket_mode.wait_for_ping(from_app=False)
    assert pong.data == b"server-ping"


def test_slash_command_is_acked_at_once_and_its_run_completes(
    served: Served, llm: ScriptedLLM, slack: FakeSlack, socket_mode: FakeSocketMode
) -> None:
    script(llm, "Look up Acme", "Summarise Acme")

    # An answer in the ack itself: the envelope's response payload.
    help_env = socket_mode.slash_command("help", response_url=slack.response_url())
    help_ack = socket_mode.wait_for_ack(help_env.envelope_id, timeout=3)
    assert help_ack.payload is not None and "/orchestrate" in help_ack.payload["text"]
    assert not cards(slack)

    envelope = socket_mode.slash_command("research Acme", response_url=slack.response_url())
    ack = socket_mode.wait_for_ack(envelope.envelope_id, timeout=3)
    latency = ack.at - envelope.sent_at
    assert latency < ACK_BUDGET_S, f"ack took {latency * 1000:.0f} ms"
    assert ack.message == {"envelope_id": envelope.envelope_id}  # an empty ack, nothing else
    assert len(socket_mode.acks_for(envelope.envelope_id)) == 1

    # The status card, posted through the Web API with the bot token…
    card = slack.wait_for(lambda f: cards(f), timeout=10)[0]
    assert "research Acme" in card["text"] and card["blocks"]
    post = slack.calls_to("chat.postMessage")[0]
    assert post.token == BOT_TOKEN
    # …the run completes in its thread, and the card ends up saying so.
    summary = slack.wait_for(lambda f: finished(f, card["ts"]), timeout=60)
    assert "research Acme" in summary["text"]
    replies = [m["text"] for m in slack.thread(CHANNEL_ID, card["ts"])]
    assert any("Result of Look up Acme" in str(r) for r in replies) or len(replies) >= 3
    slack.wait_for(
        lambda f: (f.message(CHANNEL_ID, card["ts"]) or {}).get("text", "").startswith("Done"),
        timeout=10,
    )
    assert len(llm.requests_matching(PLANNER)) == 1
    assert not slack.calls_to(RESPONSE_URL_METHOD)  # nothing to say privately: it worked


def test_a_redelivered_event_is_acked_and_starts_one_run(
    served: Served, llm: ScriptedLLM, slack: FakeSlack, socket_mode: FakeSocketMode
) -> None:
    script(llm, "Look up Globex")
    event_id = new_event_id()
    event = app_mention_event("research Globex")
    # Slack redelivers when an ack is late; the copy has a new envelope, the same event_id.
    # Both are in flight at once: the unique event_id row lets exactly one through.
    first = socket_mode.event(event, event_id=event_id)
    again = socket_mode.event(event, event_id=event_id, retry_attempt=1, retry_reason="timeout")
    assert first.envelope_id != again.envelope_id
    for envelope in (first, again):
        # A dropped duplicate must still be acked, or Slack keeps redelivering it.
        ack = socket_mode.wait_for_ack(envelope.envelope_id, timeout=3)
        assert ack.at - envelope.sent_at < ACK_BUDGET_S
        assert ack.message == {"envelope_id": envelope.envelope_id}

    card = slack.wait_for(lambda f: cards(f), timeout=10)[0]
    slack.wait_for(lambda f: finished(f, card["ts"]), timeout=60)
    # A third copy after the run is over is acked and dropped too.
    late = socket_mode.event(event, event_id=event_id, retry_attempt=2, retry_reason="timeout")
    socket_mode.wait_for_ack(late.envelope_id, timeout=3)
    assert len(cards(slack)) == 1, slack.dump()
    assert len(llm.requests_matching(PLANNER)) == 1


def test_reconnects_when_slack_asks_to_refresh(
    served: Served, llm: ScriptedLLM, slack: FakeSlack, socket_mode: FakeSocketMode
) -> None:
    first = socket_mode.wait_for_connection()
    socket_mode.disconnect("refresh_requested")
    second = socket_mode.wait_for_connection(count=2, timeout=30)
    assert second.id != first.id and second.ticket != first.ticket
    assert len(slack.calls_to("apps.connections.open")) == 2  # a fresh URL, not the old one
    socket_mode.wait_for_close(first.id)  # the SDK drops the old socket itself
    envelope = socket_mode.slash_command("help")
    assert envelope.connection == second.id
    ack = socket_mode.wait_for_ack(envelope.envelope_id, timeout=3)
    assert ack.connection == second.id and ack.payload and ack.payload.get("text")
