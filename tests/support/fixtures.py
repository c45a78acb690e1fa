"""pytest plugin: a scripted LLM provider and a guard against real ones.

Enable with ``pytest_plugins = ["tests.support.fixtures"]`` in ``tests/conftest.py``.

Fixtures:

* ``_no_real_providers`` (autouse): every test runs with the network guard
  (:mod:`tests.support.netguard`) installed and provider credentials removed from
  the environment. Any refused connection, in this process or in a guarded
  subprocess, is logged to ``$BATON_NETGUARD_LOG`` and fails the test at teardown.
* ``netguard_log``: that log, for the rare test that provokes a refusal on purpose
  (read it with ``take()`` so teardown does not fail).
* ``llm``: a started :class:`~tests.support.llm_server.ScriptedLLM`. A request it
  had no script for fails the test at teardown unless ``llm.allow_unmatched``.
* ``llm_env``: ``llm``, with ``OPENAI_API_KEY``/``OPENAI_API_BASE``/``BATON_MODEL``
  set in this process's environment so in-process code picks it up.
* ``subprocess_env``: an environment for ``baton`` subprocesses that talks to
  ``llm``, uses a fresh SQLite file and is guarded via ``guard_site``.
* ``canary_secret`` (autouse, :mod:`tests.support.canary`): a secret planted in the
  environment that no log or file of the test may contain.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support import netguard
from tests.support.canary import CANARY_ENV, CANARY_VALUE, canary_secret  # noqa: F401
from tests.support.llm_server import ScriptedLLM
from tests.support.smtp import Mailbox, smtp_server
from tests.support.website import LocalSite

# litellm fetches its model cost map from the internet at import unless told not to.
# Set it before any test module imports litellm (plugins load first).
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

REPO_ROOT = Path(__file__).resolve().parents[2]
GUARD_SITE = Path(__file__).resolve().parent / "guard_site"
TEST_MODEL = "openai/gpt-4o-mini"
TEST_API_KEY = "sk-test-not-real"
_LOOPBACK_NO_PROXY = "127.0.0.1,localhost,::1"

# Environment variables (upper-cased prefixes) that could point code at a real
# provider, a hosted gateway, a telemetry sink or a proxy. Removed for every test.
_SCRUBBED_PREFIXES: tuple[str, ...] = (
    # LLM providers and gateways litellm knows about.
    "OPENAI",
    "AZURE",
    "ANTHROPIC",
    "CLAUDE",
    "GEMINI",
    "GOOGLE",
    "VERTEX",
    "PALM",
    "COHERE",
    "CO_API_KEY",
    "MISTRAL",
    "CODESTRAL",
    "GROQ",
    "TOGETHER",
    "OLLAMA",
    "HF_",
    "HUGGINGFACE",
    "AWS_",
    "BEDROCK",
    "SAGEMAKER",
    "DEEPSEEK",
    "XAI_",
    "PERPLEXITY",
    "FIREWORKS",
    "OPENROUTER",
    "REPLICATE",
    "ANYSCALE",
    "DEEPINFRA",
    "CLOUDFLARE",
    "CEREBRAS",
    "SAMBANOVA",
    "NVIDIA",
    "VOYAGE",
    "AI21",
    "ALEPH_ALPHA",
    "NLP_CLOUD",
    "DATABRICKS",
    "WATSONX",
    "VLLM",
    "HOSTED_VLLM",
    "LM_STUDIO",
    "DASHSCOPE",
    "MOONSHOT",
    "NOVITA",
    "BASETEN",
    "PREDIBASE",
    "JINA",
    # litellm's own proxy/gateway settings (LITELLM_LOG etc. stay).
    "LITELLM_API",
    "LITELLM_BASE_URL",
    "LITELLM_PROXY",
    "LITELLM_MASTER_KEY",
    # Observability sinks litellm can report to.
    "LANGFUSE",
    "LANGSMITH",
    "LANGCHAIN",
    "HELICONE",
    "WANDB",
    "ARIZE",
    "BRAINTRUST",
    "DATADOG",
    "DD_",
    "SENTRY",
    "OTEL_",
    # Proxies would turn a loopback request into a connection to the proxy host.
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "ALL_PROXY",
    "NO_PROXY",
)

# Set after scrubbing, in this process and in subprocesses.
_PINNED_ENV: dict[str, str] = {
    "LITELLM_LOCAL_MODEL_COST_MAP": "True",
    # litellm can route some calls through a native (Rust) transport whose sockets the
    # guard cannot see; keep every call on the Python path.
    "LITELLM_RUST": "false",
    "NO_PROXY": _LOOPBACK_NO_PROXY,
    "no_proxy": _LOOPBACK_NO_PROXY,
}


def is_scrubbed(name: str) -> bool:
    """Whether an environment variable is removed from tests' environments."""
    return name.upper().startswith(_SCRUBBED_PREFIXES)


@dataclass(frozen=True)
class NetGuardLog:
    """The file refused network attempts are logged to (one line each)."""

    path: Path

    def lines(self) -> list[str]:
        """Logged refusals so far."""
        try:
            return self.path.read_text(encoding="utf-8").splitlines()
        except FileNotFoundError:
            return []

    def take(self) -> list[str]:
        """Return the logged refusals and empty the log (for tests expecting one)."""
        lines = self.lines()
        self.path.write_text("", encoding="utf-8")
        return lines


@pytest.fixture
def netguard_log(tmp_path_factory: pytest.TempPathFactory) -> NetGuardLog:
    """The per-test network guard log (outside ``tmp_path``, so tests own that alone)."""
    path = tmp_path_factory.mktemp("netguard") / "blocked.log"
    path.touch()
    return NetGuardLog(path)


@pytest.fixture(autouse=True)
def _no_real_providers(
    netguard_log: NetGuardLog, monkeypatch: pytest.MonkeyPatch
) -> Iterator[NetGuardLog]:
    """Guard the network and scrub provider settings for every test."""
    for name in list(os.environ):
        if is_scrubbed(name):
            monkeypatch.delenv(name)
    for name, value in _PINNED_ENV.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv(netguard.LOG_ENV, str(netguard_log.path))

    already_installed = netguard.installed()
    netguard.install()
    try:
        yield netguard_log
    finally:
        if not already_installed:
            netguard.uninstall()
    blocked = netguard_log.lines()
    if blocked:
        pytest.fail(
            "the test tried to reach the real network (a real LLM provider?):\n  "
            + "\n  ".join(blocked),
            pytrace=False,
        )


@pytest.fixture
def llm() -> Iterator[ScriptedLLM]:
    """A started :class:`ScriptedLLM`; fails the test if a request had no script."""
    server = ScriptedLLM().start()
    try:
        yield server
    finally:
        server.stop()
    unmatched = server.unmatched
    if unmatched and not server.allow_unmatched:
        details = "\n  ".join(
            f"{r.method} {r.path}: {r.error or r.text[:200]!r}" for r in unmatched
        )
        pytest.fail(
            f"ScriptedLLM got {len(unmatched)} request(s) with no scripted reply "
            f"(set llm.allow_unmatched = True if intended):\n  {details}",
            pytrace=False,
        )


@pytest.fixture
def llm_env(llm: ScriptedLLM, monkeypatch: pytest.MonkeyPatch) -> ScriptedLLM:
    """``llm``, also configured as the provider in this process's environment."""
    monkeypatch.setenv("OPENAI_API_KEY", TEST_API_KEY)
    monkeypatch.setenv("OPENAI_API_BASE", llm.base_url)
    monkeypatch.setenv("BATON_MODEL", TEST_MODEL)
    return llm


@pytest.fixture
def subprocess_env(llm: ScriptedLLM, tmp_path: Path, netguard_log: NetGuardLog) -> dict[str, str]:
    """Environment for ``baton`` subprocesses: scripted provider, fresh DB, network guard."""
    env = {name: value for name, value in os.environ.items() if not is_scrubbed(name)}
    env.update(_PINNED_ENV)
    pythonpath = [str(GUARD_SITE), str(REPO_ROOT)]
    if os.environ.get("PYTHONPATH"):
        pythonpath.append(os.environ["PYTHONPATH"])
    env.update(
        {
            "OPENAI_API_KEY": TEST_API_KEY,
            "OPENAI_API_BASE": llm.base_url,
            "BATON_MODEL": TEST_MODEL,
            "BATON_DATABASE_URL": f"sqlite:///{tmp_path / 'baton.db'}",
            "PYTHONPATH": os.pathsep.join(pythonpath),
            netguard.LOG_ENV: str(netguard_log.path),
            CANARY_ENV: CANARY_VALUE,  # must never leak (tests.support.canary)
            "PYTHONUNBUFFERED": "1",
        }
    )
    return env


@pytest.fixture
def mailbox() -> Iterator[Mailbox]:
    """A real SMTP server (aiosmtpd) on 127.0.0.1 that keeps what it receives."""
    with smtp_server() as box:
        yield box


@pytest.fixture
def sales_site() -> Iterator[LocalSite]:
    """The account's web site of the sales-pack tests (a prompt injection on its news page)."""
    from tests.support.sales import HOME, NEWS

    s = LocalSite(pages={"/": HOME, "/news": NEWS}).start()
    try:
        yield s
    finally:
        s.stop()
