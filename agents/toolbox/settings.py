"""Settings of the built-in tools, read from ``BATON_FETCH_*`` and ``BATON_SMTP_*``.

Read once when the registry is built, so a malformed value stops Baton at start with a
sentence naming the variable. An unset SMTP host is not an error here: ``send_email`` is
always registered and says what to set when it is called.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass, field

from agents.errors import ConfigError

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True)
class FetchSettings:
    """What ``http_fetch`` may reach, and how much it reads."""

    #: Only these domains (and their subdomains) may be fetched; empty means any public host.
    allow_domains: tuple[str, ...] = ()
    #: Allow private, loopback and link-local addresses (an intranet; the tests' local site).
    allow_private: bool = False
    #: Non-public networks allowed all the same (``10.1.2.0/24``), when not all of them are.
    allow_networks: tuple[IPNetwork, ...] = ()
    #: Bytes read from one response body; the rest is cut off.
    max_bytes: int = 2_000_000
    #: Seconds for the whole fetch, every redirect included.
    timeout_s: float = 20.0

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> FetchSettings:
        """Read ``BATON_FETCH_*``; a malformed value is a clear :class:`ConfigError`."""
        env = os.environ if env is None else env
        base = cls()
        domains = []
        for raw in env.get("BATON_FETCH_ALLOW_DOMAINS", "").split(","):
            domain = raw.strip().lower().lstrip("*").strip(".")
            if raw.strip() and (not domain or "/" in domain or ":" in domain):
                raise ConfigError(
                    f"BATON_FETCH_ALLOW_DOMAINS takes domain names like example.com, "
                    f"got {raw.strip()!r}"
                )
            if domain:
                domains.append(domain)
        max_bytes = _positive_int(env, "BATON_FETCH_MAX_BYTES", base.max_bytes)
        timeout_s = _positive_float(env, "BATON_FETCH_TIMEOUT", base.timeout_s)
        allow_private, networks = _private(env.get("BATON_FETCH_ALLOW_PRIVATE") or "")
        return cls(
            allow_domains=tuple(domains),
            allow_private=allow_private,
            allow_networks=networks,
            max_bytes=max_bytes,
            timeout_s=timeout_s,
        )


@dataclass(frozen=True)
class SmtpSettings:
    """The mail server ``send_email`` hands messages to."""

    #: Without a host (and a From address) email is not configured.
    host: str | None = None
    #: None: 465 with implicit TLS, otherwise 587 with STARTTLS, otherwise 25.
    port: int | None = None
    username: str | None = None
    #: Never shown: kept out of ``repr`` so it cannot reach a log line.
    password: str | None = field(default=None, repr=False)
    #: The sender address (``Baton <baton@example.com>`` or a bare address).
    sender: str | None = None
    #: True: require STARTTLS; False: never; None: use it when the server offers it.
    starttls: bool | None = None
    #: Implicit TLS from the first byte (usually port 465).
    tls: bool = False
    timeout_s: float = 30.0

    @property
    def configured(self) -> bool:
        """Whether a host and a From address are set."""
        return bool(self.host and self.sender)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> SmtpSettings:
        """Read ``BATON_SMTP_*``; a malformed value is a clear :class:`ConfigError`."""
        env = os.environ if env is None else env
        port_raw = env.get("BATON_SMTP_PORT") or ""
        port = None
        if port_raw:
            port = _positive_int(env, "BATON_SMTP_PORT", 0)
            if port > 65535:
                raise ConfigError(f"BATON_SMTP_PORT must be a port number, got {port_raw!r}")
        starttls_raw = env.get("BATON_SMTP_STARTTLS") or ""
        starttls = _bool(env, "BATON_SMTP_STARTTLS", False) if starttls_raw else None
        tls = _bool(env, "BATON_SMTP_TLS", False)
        if tls and starttls:
            raise ConfigError(
                "Set either BATON_SMTP_TLS (implicit TLS, port 465) or BATON_SMTP_STARTTLS "
                "(upgrade on port 587), not both."
            )
        username = env.get("BATON_SMTP_USERNAME") or None
        password = env.get("BATON_SMTP_PASSWORD") or None
        if bool(username) != bool(password):
            raise ConfigError(
                "BATON_SMTP_USERNAME and BATON_SMTP_PASSWORD go together: set both or neither."
            )
        return cls(
            host=(env.get("BATON_SMTP_HOST") or "").strip() or None,
            port=port,
            username=username,
            password=password,
            sender=(env.get("BATON_SMTP_FROM") or "").strip() or None,
            starttls=starttls,
            tls=tls,
        )


def _private(raw: str) -> tuple[bool, tuple[IPNetwork, ...]]:
    """``BATON_FETCH_ALLOW_PRIVATE``: true, false, or a comma list of networks to allow."""
    word = raw.strip().lower()
    if word in ("", "0", "false", "no", "off"):
        return False, ()
    if word in ("1", "true", "yes", "on"):
        return True, ()
    networks = []
    for part in raw.split(","):
        if not part.strip():
            continue
        try:
            networks.append(ipaddress.ip_network(part.strip(), strict=False))
        except ValueError:
            raise ConfigError(
                "BATON_FETCH_ALLOW_PRIVATE must be true, false, or networks like "
                f"10.1.0.0/16,127.0.0.1; got {part.strip()!r}"
            ) from None
    return False, tuple(networks)


def _positive_int(env: Mapping[str, str], key: str, default: int) -> int:
    raw = env.get(key)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{key} must be a whole number, got {raw!r}") from None
    if value <= 0:
        raise ConfigError(f"{key} must be greater than 0, got {raw!r}")
    return value


def _positive_float(env: Mapping[str, str], key: str, default: float) -> float:
    raw = env.get(key)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{key} must be a number of seconds, got {raw!r}") from None
    if not value > 0:
        raise ConfigError(f"{key} must be greater than 0, got {raw!r}")
    return value


def _bool(env: Mapping[str, str], key: str, default: bool) -> bool:
    raw = env.get(key)
    if raw is None or raw.strip() == "":
        return default
    if raw.strip().lower() in ("1", "true", "yes", "on"):
        return True
    if raw.strip().lower() in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{key} must be true or false, got {raw!r}")
