"""``baton serve`` as a real subprocess, for end-to-end tests of the Slack app.

:class:`BatonServer` starts ``python -m bot serve`` (HTTP mode on a free port by default),
waits until the port accepts connections, collects stdout and stderr in background threads,
and stops the process with SIGTERM (or SIGKILL, to simulate a crash)::

    with BatonServer(env) as server:
        status, body = server.post(*slash_command("research Acme"))
        ...
    assert "Traceback" not in server.output

Requests are signed with :data:`SIGNING_SECRET`, which :meth:`BatonServer.env_for` puts in
the server's environment as ``SLACK_SIGNING_SECRET``.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import IO, Self

from tests.support.slack_requests import SIGNING_SECRET, post_signed_sync

REPO = Path(__file__).resolve().parents[2]
EVENTS_PATH = "/slack/events"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def slack_env(
    base: Mapping[str, str],
    api_base_url: str,
    *,
    bot_token: str = "xoxb-test",
    signing_secret: str = SIGNING_SECRET,
    **extra: str,
) -> dict[str, str]:
    """``base`` plus the Slack settings ``baton serve`` needs to talk to a FakeSlack."""
    env = dict(base)
    env.update(
        {
            "SLACK_BOT_TOKEN": bot_token,
            "SLACK_SIGNING_SECRET": signing_secret,
            "SLACK_API_BASE_URL": api_base_url,
            "PYTHONUNBUFFERED": "1",
        }
    )
    env.pop("SLACK_APP_TOKEN", None)
    env.update(extra)
    return env


class BatonServer:
    """One ``baton serve`` subprocess."""

    def __init__(
        self,
        env: Mapping[str, str],
        *,
        mode: str | None = "--http",
        port: int | None = None,
        host: str = "127.0.0.1",
        extra_args: Sequence[str] = (),
        cwd: Path = REPO,
    ) -> None:
        self.env = dict(env)
        self.mode = mode
        self.host = host
        self.port = port if port is not None else (free_port() if mode == "--http" else None)
        self.extra_args = list(extra_args)
        self.cwd = cwd
        self.popen: subprocess.Popen[str] | None = None
        self._out: list[str] = []
        self._err: list[str] = []
        self._lock = threading.Lock()
        self._readers: list[threading.Thread] = []

    # ---- lifecycle ---------------------------------------------------------------------------
    @property
    def args(self) -> list[str]:
        """The command line (after ``python -m bot``)."""
        args = ["serve"]
        if self.mode:
            args.append(self.mode)
        if self.port is not None:
            args += ["--port", str(self.port), "--host", self.host]
        return args + self.extra_args

    def start(self, *, wait: bool = True, timeout: float = 40.0) -> Self:
        """Start the process; with ``wait``, return once the HTTP port accepts connections."""
        self.popen = subprocess.Popen(
            [sys.executable, "-m", "bot", *self.args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            encoding="utf-8",
            errors="replace",
            env=self.env,
            cwd=self.cwd,
        )
        assert self.popen.stdout is not None
        assert self.popen.stderr is not None
        for stream, sink in ((self.popen.stdout, self._out), (self.popen.stderr, self._err)):
            reader = threading.Thread(target=self._read, args=(stream, sink), daemon=True)
            reader.start()
            self._readers.append(reader)
        if wait and self.port is not None:
            self.wait_ready(timeout)
        return self

    def _read(self, stream: IO[str], sink: list[str]) -> None:
        for line in stream:
            with self._lock:
                sink.append(line)

    def wait_ready(self, timeout: float = 40.0) -> None:
        """Poll the port until it accepts a connection; fail early if the process exits."""
        assert self.port is not None
        deadline = time.monotonic() + timeout
        while True:
            if self.popen is not None and self.popen.poll() is not None:
                raise AssertionError(
                    f"baton serve exited with {self.popen.returncode} before listening:\n"
                    f"{self.output}"
                )
            with contextlib.suppress(OSError):
                with socket.create_connection((self.host, self.port), timeout=0.2):
                    return
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"baton serve did not listen on {self.port} within {timeout}s:\n{self.output}"
                )
            time.sleep(0.05)

    @property
    def alive(self) -> bool:
        """Whether the process is still running."""
        return self.popen is not None and self.popen.poll() is None

    def kill(self) -> int:
        """SIGKILL (a crash: nothing is cleaned up); returns the exit code."""
        return self._signal(signal.SIGKILL, 10.0)

    def stop(self, timeout: float = 15.0) -> int:
        """SIGTERM, then SIGKILL if it does not exit within ``timeout``; returns the exit code."""
        return self._signal(signal.SIGTERM, timeout)

    def _signal(self, sig: int, timeout: float) -> int:
        if self.popen is None:
            return 0
        if self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.popen.pid, sig)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(10)
        for reader in self._readers:
            reader.join(5)
        return int(self.popen.returncode)

    def wait_exit(self, timeout: float = 40.0) -> int:
        """Wait for the process to exit on its own; returns the exit code."""
        assert self.popen is not None
        code = self.popen.wait(timeout)
        for reader in self._readers:
            reader.join(5)
        return int(code)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # ---- output ------------------------------------------------------------------------------
    @property
    def out(self) -> str:
        """Everything written to stdout so far."""
        with self._lock:
            return "".join(self._out)

    @property
    def err(self) -> str:
        """Everything written to stderr so far."""
        with self._lock:
            return "".join(self._err)

    @property
    def output(self) -> str:
        """stdout and stderr, labelled (for assertion messages)."""
        return f"--- stdout ---\n{self.out}--- stderr ---\n{self.err}"

    def wait_for_output(self, pattern: str, timeout: float = 30.0) -> re.Match[str]:
        """Wait until stdout or stderr matches ``pattern`` (a regex); return the match."""
        deadline = time.monotonic() + timeout
        while True:
            found = re.search(pattern, self.out) or re.search(pattern, self.err)
            if found:
                return found
            if not self.alive or time.monotonic() > deadline:
                raise AssertionError(f"no output matching {pattern!r}:\n{self.output}")
            time.sleep(0.05)

    # ---- requests ----------------------------------------------------------------------------
    @property
    def url(self) -> str:
        """The Slack request URL."""
        return f"http://{self.host}:{self.port}{EVENTS_PATH}"

    def post(
        self,
        body: bytes,
        content_type: str,
        *,
        secret: str = SIGNING_SECRET,
        timestamp: int | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float = 10.0,
    ) -> tuple[int, str]:
        """POST a request to the app, signed as Slack signs it; ``(status, body)``."""
        return post_signed_sync(
            self.url,
            body,
            content_type,
            secret,
            timestamp=timestamp,
            headers=headers,
            timeout=timeout,
        )
