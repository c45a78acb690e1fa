"""Refuse every network connection except to loopback and Unix sockets.

Tests must never reach a real LLM provider (or anything else off the machine):
that would cost money, leak data, and make results depend on the outside world.
The guard patches the three places every Python HTTP stack goes through:

* ``socket.getaddrinfo`` (and ``gethostbyname[_ex]``): names other than localhost
  are not even resolved. asyncio resolves through ``socket.getaddrinfo`` in an
  executor (looked up at call time), so aiohttp's default ``ThreadedResolver`` and
  httpx/anyio are both covered, as are ``socket.create_connection`` and requests.
* ``socket.socket.connect`` / ``connect_ex``: the last barrier, for code that
  connects to a literal IP or resolves by other means. asyncio's
  ``loop.sock_connect`` (used by aiohttp and anyio) calls ``sock.connect``, and
  ``ssl.SSLSocket`` inherits from ``socket.socket``.

A refused attempt raises :class:`RealNetworkBlocked` (an ``OSError``, so client
libraries turn it into their usual connection error) and appends one line to the
file named by ``$BATON_NETGUARD_LOG``. The test fixture fails any test whose log is
not empty at teardown, which also catches attempts that the code under test
swallowed or retried, and attempts made by ``baton`` subprocesses (guarded through
``tests/support/guard_site/sitecustomize.py``).

Not covered: sockets created as bare ``_socket.socket`` and native extensions doing
their own I/O (e.g. litellm's optional Rust transport; the fixtures pin
``LITELLM_RUST=false`` for that reason).
"""

from __future__ import annotations

import ipaddress
import os
import socket
import sys
import threading
from collections.abc import Callable
from typing import Any

__all__ = ["LOG_ENV", "RealNetworkBlocked", "install", "installed", "is_local_host", "uninstall"]

LOG_ENV = "BATON_NETGUARD_LOG"
"""Environment variable naming the file that refused attempts are appended to."""

_LOCAL_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback"})
_MARK = "_baton_netguard"

_lock = threading.Lock()
_originals: dict[str, Any] = {}


class RealNetworkBlocked(OSError):
    """A test tried to reach a host that is not loopback."""

    def __init__(self, what: str, host: object) -> None:
        super().__init__(
            f"netguard: blocked {what} to non-local host {host!r}; "
            "tests may only talk to 127.0.0.1 (use the ScriptedLLM fixture `llm`)"
        )
        self.host = host


def is_local_host(host: object) -> bool:
    """Whether ``host`` (a name, an IP literal, or ``None``) stays on this machine.

    ``None``, ``""`` and the unspecified addresses (``0.0.0.0``, ``::``) count as
    local: they are what servers bind to, and on Linux connecting to them reaches
    the local host.
    """
    if host is None:
        return True
    if isinstance(host, bytes | bytearray):
        host = bytes(host).decode("ascii", "replace")
    if not isinstance(host, str):
        return False
    name = host.strip().lower().rstrip(".")
    if name.startswith("[") and name.endswith("]"):
        name = name[1:-1]
    name = name.split("%", 1)[0]  # IPv6 zone id, e.g. fe80::1%eth0
    if name in ("", *_LOCAL_NAMES) or name.endswith(".localhost"):
        return True
    try:
        ip = ipaddress.ip_address(name)
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_loopback or ip.is_unspecified


def _refuse(what: str, host: object, port: object = None) -> RealNetworkBlocked:
    """Build the exception for a refused attempt and log it for the fixture to see."""
    if isinstance(host, bytes | bytearray):  # httpcore resolves hosts given as bytes
        host = bytes(host).decode("ascii", "replace")
    target = f"{host}:{port}" if port is not None else str(host)
    path = os.environ.get(LOG_ENV)
    if path:
        program = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else "python"
        try:
            with open(path, "a", encoding="utf-8") as log:
                log.write(f"pid={os.getpid()} prog={program} blocked {what} {target}\n")
        except OSError:
            pass  # The exception below still fails the caller.
    return RealNetworkBlocked(what, target)


def _check_address(sock: socket.socket, address: Any, what: str) -> None:
    # Only IP families can leave the machine; AF_UNIX, AF_NETLINK etc. are local.
    if sock.family not in (socket.AF_INET, socket.AF_INET6):
        return
    if isinstance(address, tuple) and address:
        host, port = address[0], address[1] if len(address) > 1 else None
    else:
        host, port = address, None
    if not is_local_host(host):
        raise _refuse(what, host, port)


def _guarded_connect(self: socket.socket, address: Any) -> None:
    _check_address(self, address, "connect")
    _originals["connect"](self, address)


def _guarded_connect_ex(self: socket.socket, address: Any) -> int:
    _check_address(self, address, "connect")
    result: int = _originals["connect_ex"](self, address)
    return result


def _guarded_getaddrinfo(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
    if not is_local_host(host):
        raise _refuse("name resolution", host, port)
    return _originals["getaddrinfo"](host, port, *args, **kwargs)


def _guarded_gethostbyname(host: Any) -> Any:
    if not is_local_host(host):
        raise _refuse("name resolution", host)
    return _originals["gethostbyname"](host)


def _guarded_gethostbyname_ex(host: Any) -> Any:
    if not is_local_host(host):
        raise _refuse("name resolution", host)
    return _originals["gethostbyname_ex"](host)


# (owner, attribute, replacement)
_PATCHES: tuple[tuple[Any, str, Callable[..., Any]], ...] = (
    (socket.socket, "connect", _guarded_connect),
    (socket.socket, "connect_ex", _guarded_connect_ex),
    (socket, "getaddrinfo", _guarded_getaddrinfo),
    (socket, "gethostbyname", _guarded_gethostbyname),
    (socket, "gethostbyname_ex", _guarded_gethostbyname_ex),
)
for _owner, _name, _replacement in _PATCHES:
    setattr(_replacement, _MARK, True)


def installed() -> bool:
    """Whether the guard is active in this interpreter (by any copy of this module)."""
    return bool(getattr(socket.socket.connect, _MARK, False))


def install() -> None:
    """Patch the socket layer. Idempotent."""
    with _lock:
        if _originals:
            return
        if installed():
            # Another copy of this module (imported under a different name) already
            # guards the process; patching again would wrap the guard in itself.
            return
        for owner, name, replacement in _PATCHES:
            _originals[name] = getattr(owner, name)
            setattr(owner, name, replacement)


def uninstall() -> None:
    """Restore the original socket functions, if this module installed the guard."""
    with _lock:
        if not _originals:
            return
        for owner, name, _replacement in _PATCHES:
            setattr(owner, name, _originals[name])
        _originals.clear()
