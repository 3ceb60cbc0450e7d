"""Where ``tagteller serve`` listens and the addresses it tells people to open.

:func:`listen_socket` binds the listening socket before uvicorn starts, so the real port is known
(``--port 0`` asks the system for a free one) and a port already in use is one clear line instead
of a log traceback. :func:`page_urls` turns the bound address into URLs a browser can open: an
address bound to every interface (``0.0.0.0``, ``::``) is no address to type, so the machine's
LAN address is printed for phones, plus this machine's own loopback URL.

Standard library only: importing this module imports no web framework.
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass

#: A documentation address (RFC 5737): "connecting" a UDP socket to it sends nothing, but makes
#: the system pick the interface, and so the address, it would route through.
_ROUTE_PROBE_V4 = "192.0.2.1"
_ROUTE_PROBE_V6 = "2001:db8::1"


class ListenError(OSError):
    """The address cannot be listened on (in use, not this machine's, no permission)."""


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def is_wildcard(host: str) -> bool:
    """True for an address meaning "every interface" (``0.0.0.0``, ``::``, or an empty host)."""
    if host == "":
        return True
    try:
        return ipaddress.ip_address(host).is_unspecified
    except ValueError:
        return False


def listen_socket(host: str, port: int) -> socket.socket:
    """A TCP socket bound to ``host``:``port`` (0: a free port), ready for uvicorn to listen on."""
    try:
        infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise ListenError(f"cannot listen on {host}: {exc.strerror or 'unknown host'}") from None
    family, _kind, _proto, _name, address = infos[0]
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn does: restart without waiting
        if family == socket.AF_INET6 and is_wildcard(host):
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)  # "::" takes IPv4 as well
        sock.bind(address)
    except OSError as exc:
        sock.close()
        reason = (exc.strerror or exc.__class__.__name__).lower()
        raise ListenError(f"cannot listen on {format_host(host)}:{port}: {reason}") from None
    sock.set_inheritable(True)
    return sock


def bound_port(sock: socket.socket) -> int:
    return int(sock.getsockname()[1])


def format_host(host: str) -> str:
    """``host`` as it goes in a URL (an IPv6 address in brackets)."""
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


def lan_address(ipv6: bool = False) -> str | None:
    """This machine's address on its network (what a phone on the same Wi-Fi opens), or None when
    it has none but loopback (an offline machine without a network)."""
    family, probe = (socket.AF_INET6, _ROUTE_PROBE_V6) if ipv6 else (socket.AF_INET, _ROUTE_PROBE_V4)
    with socket.socket(family, socket.SOCK_DGRAM) as probe_socket:
        try:
            probe_socket.connect((probe, 9))
            address = probe_socket.getsockname()[0]
        except OSError:  # no route at all: try the host name's address instead
            address = _host_name_address(family)
    if address is None:
        return None
    parsed = ipaddress.ip_address(address.split("%", 1)[0])
    if parsed.is_loopback or parsed.is_unspecified or parsed.is_link_local:
        return None
    return str(parsed)


def _host_name_address(family: int) -> str | None:
    try:
        infos = socket.getaddrinfo(socket.gethostname(), None, family=family, type=socket.SOCK_STREAM)
    except OSError:
        return None
    return str(infos[0][4][0]) if infos else None


@dataclass(frozen=True)
class PageUrls:
    """The page's URL on this machine, and the one for other devices (None: none to offer)."""

    local: str
    network: str | None
    #: True when the server listens on every interface but no LAN address was found.
    no_lan_address: bool = False


def page_urls(host: str, port: int) -> PageUrls:
    """The URLs to print for a server bound to ``host``:``port``."""
    if is_wildcard(host):
        ipv6 = ":" in host
        local = f"http://{'[::1]' if ipv6 else '127.0.0.1'}:{port}/"
        lan = lan_address(ipv6=ipv6)
        if lan is None and ipv6:
            lan = lan_address(ipv6=False)
        network = f"http://{format_host(lan)}:{port}/" if lan is not None else None
        return PageUrls(local=local, network=network, no_lan_address=lan is None)
    url = f"http://{format_host(host)}:{port}/"
    return PageUrls(local=url, network=None if is_loopback(host) else url)
