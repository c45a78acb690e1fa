"""Which URLs ``http_fetch`` may reach: http(s) only, allowed domains, public addresses.

The address check runs inside the connector's resolver (:class:`GuardedResolver`), so the
address that was checked is the address connected to: a name cannot resolve to a public
address for the check and to a private one for the connection (DNS rebinding). Literal IP
hosts never reach a resolver; :func:`check_url` checks them before each hop.
"""

from __future__ import annotations

import ipaddress
import socket

from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import ThreadedResolver
from yarl import URL

from agents.errors import BatonError
from agents.toolbox.settings import FetchSettings

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class FetchError(BatonError):
    """A page could not be fetched, or was refused; the message says which and why."""


def blocked_reason(ip: IPAddress) -> str | None:
    """Why ``ip`` is not a public address (``"a loopback address"``), or None if it is."""
    if isinstance(ip, ipaddress.IPv6Address):
        # An IPv4 address wrapped in IPv6 reaches the IPv4 host: judge that one.
        embedded = ip.ipv4_mapped or ip.sixtofour or (ip.teredo[1] if ip.teredo else None)
        if embedded is not None:
            inner = blocked_reason(embedded)
            if inner is not None:
                return inner
    checks = (
        (ip.is_unspecified, "an unspecified address"),
        (ip.is_loopback, "a loopback address"),
        (ip.is_link_local, "a link-local address (cloud metadata lives there)"),
        (ip.is_multicast, "a multicast address"),
        (ip.is_private, "a private-network address"),
        (ip.is_reserved, "a reserved address"),
        # Shared address space (100.64/10), benchmarking ranges and the like.
        (not ip.is_global, "not a public address"),
    )
    return next((reason for hit, reason in checks if hit), None)


def parse_ip(host: str) -> IPAddress | None:
    """``host`` as an IP address, or None when it is a name."""
    try:
        return ipaddress.ip_address(host.strip("[]").split("%", 1)[0])
    except ValueError:
        return None


def domain_allowed(host: str, allow: tuple[str, ...]) -> bool:
    """Whether ``host`` is one of ``allow`` or a subdomain of one (any host if empty)."""
    if not allow:
        return True
    host = host.lower().rstrip(".")
    return any(host == d or host.endswith("." + d) for d in allow)


def check_url(url: URL, settings: FetchSettings) -> None:
    """Refuse a URL that is not http(s), names no host, carries credentials, is outside the
    allowlist, or is a literal IP that is not public (names are checked when resolved)."""
    if url.scheme not in ("http", "https"):
        raise FetchError(
            f"Refused {url.human_repr()[:200]}: only http and https URLs can be fetched."
        )
    host = url.raw_host or ""
    if not host:
        raise FetchError(f"Refused {url.human_repr()[:200]}: the URL names no host.")
    if url.raw_user is not None or url.raw_password is not None:
        raise FetchError("Refused a URL with a user name or password in it.")
    if not domain_allowed(host, settings.allow_domains):
        raise FetchError(
            f"Refused {host}: it is not in the allowed domains "
            f"({', '.join(settings.allow_domains)}; BATON_FETCH_ALLOW_DOMAINS)."
        )
    ip = parse_ip(host)
    if ip is not None:
        reason = address_refused(ip, settings)
        if reason:
            raise FetchError(_refusal(host, host, reason))


def address_refused(ip: IPAddress, settings: FetchSettings) -> str | None:
    """Why ``ip`` may not be fetched under ``settings``, or None if it may."""
    if settings.allow_private:
        return None
    plain = ip.ipv4_mapped if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped else ip
    if any(plain in net for net in settings.allow_networks):
        return None
    return blocked_reason(ip)


class GuardedResolver(AbstractResolver):
    """Resolves names, then refuses the lot if any address is not public.

    Refusing (rather than dropping the bad addresses) keeps the rule simple to state: a
    name that points anywhere private is not fetched.
    """

    def __init__(self, settings: FetchSettings) -> None:
        self.settings = settings
        self.inner = ThreadedResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        """Resolve ``host`` and check every address it resolves to."""
        try:
            found = await self.inner.resolve(host, port, family)
        except OSError as exc:
            raise FetchError(f"Could not resolve {host}: {exc.strerror or exc}.") from None
        for entry in found:
            ip = parse_ip(entry["host"])
            reason = "not an IP address" if ip is None else address_refused(ip, self.settings)
            if reason:
                raise FetchError(_refusal(host, entry["host"], reason))
        return found

    async def close(self) -> None:
        """Release the inner resolver."""
        await self.inner.close()


def _refusal(host: str, address: str, reason: str) -> str:
    what = f"it is {reason}" if host == address else f"it resolves to {address}, {reason}"
    return (
        f"Refused {host}: {what}. Only public addresses can be fetched "
        "(BATON_FETCH_ALLOW_PRIVATE=true allows private ones)."
    )
