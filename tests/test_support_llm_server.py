"""Self-tests of the test stand-ins: the scripted LLM server and the network guard.

Everything goes through real litellm over real HTTP on 127.0.0.1, the way Baton's
own code will, so these tests also pin down how litellm surfaces each provider
behaviour (errors, timeouts, tool calls) that Baton's tests rely on.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import textwrap
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import litellm
import pytest
from litellm.exceptions import InternalServerError, RateLimitError, Timeout

from tests.support import netguard
from tests.support.fixtures import REPO_ROOT, NetGuardLog, is_scrubbed
from tests.support.llm_server import Reply, ScriptedLLM, request_text

MODEL = "openai/gpt-4o-mini"


async def complete(llm: ScriptedLLM, content: str = "hello", **kwargs: Any) -> Any:
    """One litellm call against the scripted server, without retries."""
    kwargs.setdefault("messages", [{"role": "user", "content": content}])
    return await litellm.acompletion(
        model=MODEL, api_base=llm.base_url, api_key="sk-test", num_retries=0, **kwargs
    )


# -- replies --------------------------------------------------------------------


async def test_text_reply_has_openai_shape(llm: ScriptedLLM) -> None:
    llm.rule("hello", Reply.text("Hi there, how can I help?"))

    response = await complete(llm, "hello world")

    choice = response.choices[0]
    assert choice.message.content == "Hi there, how can I help?"
    assert choice.message.role == "assistant"
    assert choice.finish_reason == "stop"
    assert response.model == "gpt-4o-mini"  # echoes the request's model (prefix stripped)
    assert response.usage.prompt_tokens >= 1
    assert response.usage.completion_tokens >= 1
    assert response.usage.total_tokens == (
        response.usage.prompt_tokens + response.usage.completion_tokens
    )
    [request] = llm.requests
    assert request.path == "/v1/chat/completions"
    assert request.rule == "'hello'"
    assert request.headers["Authorization"] == "Bearer sk-test"


async def test_structured_output_returns_json(llm: ScriptedLLM) -> None:
    plan = {"steps": [{"title": "Draft", "needs_approval": False}]}
    llm.rule("plan", Reply.json(plan))
    schema = {
        "type": "json_schema",
        "json_schema": {
            "name": "plan",
            "strict": True,
            "schema": {
                "type": "object",
                "properties": {"steps": {"type": "array", "items": {"type": "object"}}},
                "required": ["steps"],
                "additionalProperties": False,
            },
        },
    }

    response = await complete(llm, "make a plan", response_format=schema)

    assert json.loads(response.choices[0].message.content) == plan
    assert llm.requests[0].json["response_format"]["json_schema"]["name"] == "plan"


async def test_two_tool_calls_in_one_turn(llm: ScriptedLLM) -> None:
    llm.rule(
        "weather",
        Reply.tool_calls([("get_weather", {"city": "Paris"}), ("get_time", {"tz": "CET"})]),
    )
    tools = [
        {
            "type": "function",
            "function": {
                "name": name,
                "parameters": {"type": "object", "properties": {}},
            },
        }
        for name in ("get_weather", "get_time")
    ]

    response = await complete(llm, "weather and time?", tools=tools)

    choice = response.choices[0]
    assert choice.finish_reason == "tool_calls"
    calls = choice.message.tool_calls
    assert [c.function.name for c in calls] == ["get_weather", "get_time"]
    assert [json.loads(c.function.arguments) for c in calls] == [{"city": "Paris"}, {"tz": "CET"}]
    assert all(c.id.startswith("call_") for c in calls)
    assert len({c.id for c in calls}) == 2
    assert llm.requests[0].tool_names == ["get_weather", "get_time"]


async def test_raw_tool_call_arguments_are_sent_verbatim(llm: ScriptedLLM) -> None:
    llm.default(Reply.raw_tool_calls([("search", '{"q": "unterminated')]))

    response = await complete(llm)

    call = response.choices[0].message.tool_calls[0]
    assert call.function.name == "search"
    assert call.function.arguments == '{"q": "unterminated'


async def test_streaming_text_and_tool_calls(llm: ScriptedLLM) -> None:
    llm.rule("story", Reply.text("Once upon a time."))
    llm.rule("tool", Reply.tool_calls([("lookup", {"id": 7}), ("lookup", {"id": 8})]))

    stream = await complete(llm, "story", stream=True)
    pieces = [c.choices[0].delta.content or "" async for c in stream if c.choices]
    assert "".join(pieces) == "Once upon a time."

    stream = await complete(llm, "tool", stream=True)
    chunks = [c async for c in stream]
    rebuilt: Any = litellm.stream_chunk_builder(chunks)
    message = rebuilt.choices[0].message
    assert [json.loads(c.function.arguments) for c in message.tool_calls] == [{"id": 7}, {"id": 8}]


# -- failures -------------------------------------------------------------------


async def test_429_with_retry_after_is_a_rate_limit_error(llm: ScriptedLLM) -> None:
    llm.default(Reply.error(429, "slow down", retry_after=7))

    with pytest.raises(RateLimitError) as caught:
        await complete(llm)

    assert caught.value.status_code == 429
    assert caught.value.response.headers["retry-after"] == "7"
    assert "slow down" in str(caught.value)
    assert len(llm.requests) == 1  # num_retries=0: no SDK retry


async def test_500_is_an_internal_server_error(llm: ScriptedLLM) -> None:
    llm.default(Reply.error(500, "kaboom"))

    with pytest.raises(InternalServerError) as caught:
        await complete(llm)

    assert caught.value.status_code == 500
    assert "kaboom" in str(caught.value)


async def test_hang_provokes_client_timeout(llm: ScriptedLLM) -> None:
    llm.default(Reply.hang(5))

    started = time.monotonic()
    with pytest.raises(Timeout):
        await complete(llm, timeout=0.3)

    assert time.monotonic() - started < 1.5
    # Still hanging server-side: litellm's transport does not promptly close a timed-out
    # connection, so the reply is only cancelled when the server stops.
    [request] = llm.requests
    assert request.finished_at is None


async def test_garbage_body_raises(llm: ScriptedLLM) -> None:
    llm.default(Reply.garbage())

    # litellm reports the JSON decode failure as an InternalServerError.
    with pytest.raises(InternalServerError, match="Expecting value"):
        await complete(llm)


async def test_unscripted_request_is_a_500_and_recorded(llm: ScriptedLLM) -> None:
    llm.allow_unmatched = True
    llm.rule("something else", Reply.text("never"))

    with pytest.raises(InternalServerError, match="no scripted reply for request"):
        await complete(llm, "unexpected question")

    [request] = llm.unmatched
    assert request.rule is None
    assert request.status == 500
    assert "unexpected question" in request.text


async def test_a_failing_matcher_is_reported_as_unmatched(llm: ScriptedLLM) -> None:
    llm.allow_unmatched = True

    def broken(request: dict[str, Any]) -> bool:
        raise KeyError("oops")

    llm.rule(broken, Reply.text("never"))

    with pytest.raises(InternalServerError, match="scripting raised"):
        await complete(llm)
    assert "KeyError" in (llm.unmatched[0].error or "")


# -- scripting and recording ------------------------------------------------------


async def test_rules_first_match_wins_and_replies_run_in_order(llm: ScriptedLLM) -> None:
    llm.rule("alpha", Reply.text("a1"), Reply.text("a2"))
    llm.rule("alpha beta", Reply.text("shadowed"))  # "alpha" is checked first
    llm.rule(lambda req: req.get("temperature") == 0, Reply.text("cold"), name="cold")

    @llm.responder
    def echo(request: dict[str, Any]) -> Reply | None:
        text = request_text(request)
        return Reply.text(f"echo: {text}") if text.startswith("echo") else None

    llm.default(Reply.text("fallback"))

    replies = [
        (await complete(llm, content, **extra)).choices[0].message.content
        for content, extra in [
            ("alpha beta", {}),
            ("alpha", {}),
            ("alpha", {}),  # the last reply repeats
            ("gamma", {"temperature": 0}),
            ("echo me", {}),
            ("delta", {}),
        ]
    ]

    assert replies == ["a1", "a2", "a2", "cold", "echo: echo me", "fallback"]
    assert [r.rule for r in llm.requests] == [
        "'alpha'",
        "'alpha'",
        "'alpha'",
        "cold",
        "responder",
        "default",
    ]


async def test_recording_captures_messages_and_tool_results(llm: ScriptedLLM) -> None:
    llm.rule("42 degrees", Reply.text("It is hot."))
    messages = [
        {"role": "system", "content": "You are Baton."},
        {"role": "user", "content": [{"type": "text", "text": "Weather in Paris?"}]},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_9",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_9", "content": "42 degrees"},
    ]

    await complete(llm, messages=messages)

    [request] = llm.requests_matching("42 degrees")
    assert [m["role"] for m in request.messages] == ["system", "user", "assistant", "tool"]
    assert "Weather in Paris?" in request.text
    assert '"city": "Paris"' in request.text  # tool-call arguments are matchable too
    assert llm.requests_matching(lambda req: req["messages"][0]["role"] == "system")
    assert not llm.requests_matching("not sent")
    assert request.received_at <= (request.finished_at or 0)

    llm.reset()
    assert llm.requests == []
    assert llm.max_in_flight == 0


async def test_delayed_replies_overlap(llm: ScriptedLLM) -> None:
    llm.default(Reply.text("slow", delay=0.3))

    started = time.monotonic()
    await asyncio.gather(complete(llm, "one"), complete(llm, "two"))
    elapsed = time.monotonic() - started

    assert elapsed < 0.55
    assert llm.max_in_flight == 2
    first, second = llm.requests
    assert second.received_at < (first.finished_at or 0)  # really in flight together


def test_models_endpoint_and_unknown_paths(llm: ScriptedLLM) -> None:
    with urllib.request.urlopen(f"{llm.base_url}/models", timeout=2) as response:
        models = json.load(response)
    assert models["object"] == "list"
    assert "gpt-4o-mini" in [m["id"] for m in models["data"]]

    llm.allow_unmatched = True
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(f"{llm.base_url}/embeddings", data=b"{}", timeout=2)
    assert caught.value.code == 404
    assert [r.path for r in llm.unmatched] == ["/v1/embeddings"]


def test_context_manager_starts_and_stops() -> None:
    with ScriptedLLM() as server:
        assert server.base_url == f"http://127.0.0.1:{server.port}/v1"
        socket.create_connection(("127.0.0.1", server.port), timeout=1).close()
    # Stopped: the port no longer accepts connections, and stopping again is harmless.
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", server.port), timeout=1)
    server.stop()


# -- network guard ------------------------------------------------------------------


@pytest.mark.parametrize("transport", ["aiohttp", "httpx"])
async def test_litellm_without_api_base_is_blocked(
    transport: str, netguard_log: NetGuardLog, monkeypatch: pytest.MonkeyPatch
) -> None:
    # No api_base and no OPENAI_API_BASE (scrubbed): litellm would call api.openai.com.
    assert "OPENAI_API_BASE" not in os.environ
    monkeypatch.setattr(litellm, "disable_aiohttp_transport", transport == "httpx")

    # litellm reports the refused connection as InternalServerError("Connection error.").
    with pytest.raises(InternalServerError, match="Connection error"):
        await litellm.acompletion(
            model=MODEL,
            api_key=f"sk-test-{transport}",  # distinct key: no cached client reuse
            messages=[{"role": "user", "content": "hi"}],
            num_retries=0,
        )

    blocked = netguard_log.take()
    assert blocked
    assert all("api.openai.com" in line for line in blocked)


def test_raw_socket_connect_to_public_address_is_blocked(netguard_log: NetGuardLog) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        with pytest.raises(netguard.RealNetworkBlocked, match=r"192\.0\.2\.1"):
            sock.connect(("192.0.2.1", 443))
        with pytest.raises(netguard.RealNetworkBlocked):
            sock.connect_ex(("192.0.2.1", 443))
    with pytest.raises(netguard.RealNetworkBlocked, match=r"example\.com"):
        socket.getaddrinfo("example.com", 443)
    assert len(netguard_log.take()) == 3


async def test_asyncio_connections_are_blocked(netguard_log: NetGuardLog) -> None:
    with pytest.raises(netguard.RealNetworkBlocked):
        await asyncio.open_connection("example.com", 443)
    with pytest.raises(OSError, match="netguard"):
        await asyncio.open_connection("192.0.2.1", 443)
    assert len(netguard_log.take()) == 2


def test_loopback_connections_are_allowed(llm: ScriptedLLM) -> None:
    socket.create_connection(("127.0.0.1", llm.port), timeout=1).close()
    socket.create_connection(("localhost", llm.port), timeout=1).close()


@pytest.mark.parametrize(
    ("host", "local"),
    [
        ("127.0.0.1", True),
        ("127.8.9.10", True),
        ("::1", True),
        ("[::1]", True),
        ("::ffff:127.0.0.1", True),
        ("localhost", True),
        ("LOCALHOST.", True),
        ("app.localhost", True),
        (b"localhost", True),
        ("0.0.0.0", True),
        (None, True),
        ("api.openai.com", False),
        (b"api.openai.com", False),
        ("8.8.8.8", False),
        ("10.0.0.1", False),
        ("2001:db8::1", False),
        ("localhost.evil.com", False),
    ],
)
def test_is_local_host(host: object, local: bool) -> None:
    assert netguard.is_local_host(host) is local


def test_install_is_idempotent() -> None:
    # The autouse fixture has installed it already.
    assert netguard.installed()
    connect = socket.socket.connect
    netguard.install()
    assert socket.socket.connect is connect


def test_subprocess_with_guard_site_is_blocked_and_logged(
    subprocess_env: dict[str, str], netguard_log: NetGuardLog
) -> None:
    code = textwrap.dedent(
        """
        import socket
        try:
            socket.create_connection(("example.com", 443), timeout=1)
        except OSError as exc:
            print(type(exc).__name__, exc)
        else:
            print("CONNECTED")
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        env=subprocess_env,
        capture_output=True,
        text=True,
        timeout=20,
        check=False,
    )

    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("RealNetworkBlocked"), result.stdout + result.stderr
    [line] = netguard_log.take()
    assert "example.com:443" in line
    assert f"pid={os.getpid()}" not in line  # logged by the child process


def test_subprocess_env_points_at_the_scripted_llm(
    subprocess_env: dict[str, str], llm: ScriptedLLM, tmp_path: Path
) -> None:
    env = subprocess_env
    assert env["OPENAI_API_BASE"] == llm.base_url
    assert env["OPENAI_API_KEY"] == "sk-test-not-real"
    assert env["BATON_MODEL"] == "openai/gpt-4o-mini"
    assert env["BATON_DATABASE_URL"] == f"sqlite:///{tmp_path}/baton.db"
    assert env["LITELLM_LOCAL_MODEL_COST_MAP"] == "True"
    assert env["PYTHONPATH"].split(os.pathsep)[:2] == [
        str(REPO_ROOT / "tests" / "support" / "guard_site"),
        str(REPO_ROOT),
    ]
    allowed = {"OPENAI_API_KEY", "OPENAI_API_BASE"}
    assert [name for name in env if is_scrubbed(name) and name not in allowed] == [
        "NO_PROXY",
        "no_proxy",
    ]


def test_in_process_environment_is_scrubbed() -> None:
    assert not [name for name in os.environ if name.upper().startswith(("ANTHROPIC", "AWS_"))]
    assert os.environ["LITELLM_RUST"] == "false"
    assert os.environ[netguard.LOG_ENV]


def test_swallowed_attempt_fails_the_test_at_teardown(
    tmp_path: Path, subprocess_env: dict[str, str]
) -> None:
    # A test that catches the refusal itself must still fail: run one with pytest.
    (tmp_path / "test_sneaky.py").write_text(
        textwrap.dedent(
            """
            import socket

            def test_sneaky():
                try:
                    socket.getaddrinfo("api.anthropic.com", 443)
                except OSError:
                    pass
            """
        )
    )
    env = {**subprocess_env, "PYTHONPATH": str(REPO_ROOT)}
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "tests.support.fixtures",
            "-p",
            "no:cacheprovider",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert result.returncode == 1, result.stdout + result.stderr
    assert "1 passed, 1 error" in result.stdout, result.stdout
    assert "api.anthropic.com:443" in result.stdout
