"""Who is on the other end of an RPC: the address that per-client limits count.

The gRPC peer is the caller, unless the peer is a trusted proxy (`accounts.trusted_proxies`: the
facade's addresses, loopback by default) that names the client it serves in the metadata
`x-atoma-client-address`; the facade sets it to its HTTP client's address and never lets a client
set it (README "Accounts"). From any other peer that metadata is ignored, so a caller cannot pick
the address it is counted under.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from urllib.parse import unquote

from atoma_proxy.wire.metadata import CLIENT_ADDRESS

__all__ = ["CLIENT_ADDRESS_KEY", "TrustedProxies", "peer_host"]

CLIENT_ADDRESS_KEY = CLIENT_ADDRESS

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def peer_host(peer: str | None) -> str | None:
    """The host of a grpc peer: `ipv4:1.2.3.4:5` -> `1.2.3.4`, `ipv6:%5B::1%5D:5` -> `::1`; else the peer."""
    if not peer:
        return None
    kind, _, rest = unquote(peer).partition(":")
    if kind == "ipv4":
        return rest.rpartition(":")[0] or rest
    if kind == "ipv6":
        host = rest.rpartition(":")[0] if rest.startswith("[") else rest
        return _ip(host.strip("[]").split("%", 1)[0]) or host
    return peer  # unix:..., or an unknown form: one address all the same


class TrustedProxies:
    """The networks whose `x-atoma-client-address` metadata is believed."""

    def __init__(self, networks: Iterable[str]) -> None:
        self._networks: Sequence[Network] = [ipaddress.ip_network(n, strict=False) for n in networks]

    def trusts(self, host: str | None) -> bool:
        if host is None or not self._networks:
            return False
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            return False
        return any(address in network for network in self._networks)

    def client_address(self, peer: str | None, metadata: Iterable[tuple[str, str | bytes]] | None) -> str:
        """The address to count this call under: the forwarded one from a trusted peer, else the peer."""
        host = peer_host(peer)
        if self.trusts(host):
            for key, value in metadata or ():
                if key == CLIENT_ADDRESS_KEY and isinstance(value, str):
                    forwarded = _ip(value)
                    if forwarded is not None:
                        return forwarded
        return host or "unknown"


def _ip(text: str) -> str | None:
    """The address in its standard text (an IPv4-mapped IPv6 address as IPv4); None if not an address."""
    try:
        address = ipaddress.ip_address(text.strip())
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return str(address.ipv4_mapped)
    return str(address)
