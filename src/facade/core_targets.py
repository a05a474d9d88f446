"""The gRPC target and channel options for the core(s) a facade talks to.

`facade.core_targets` names several cores (`host:port` each), or one name whose DNS answer lists
several addresses; the channel balances on the client side, the way gRPC does it natively:
`round_robin` over the cores whose grpc.health.v1 check (service "") says SERVING, so a core that
is stopping (NOT_SERVING) or gone gets no new call. `facade.core_target` stays the one-core
spelling: one connection (pick_first) without health checks, so the facade's /health still reports
the core's own NOT_SERVING; it gets the retries below too.

A call that never reached a core (its connection broke first) is retried on another one
transparently by gRPC. Past that, gRPC's retry policy retries UNAVAILABLE until a response header
arrived: a core that died before answering a non-streaming call (whose facts the core sends only
at the end) is retried on another core within the call's deadline; the dead core's reservation is
swept at no charge (README "Crashes"). A core's own UNAVAILABLE (NO_NODE_AVAILABLE, NODE_FAILED,
DATABASE_UNAVAILABLE) carries `grpc-retry-pushback-ms: -1` (src/core/status.py), which tells
gRPC never to retry it: only transport failures are retried. Requests above gRPC's retry buffer
(256 KiB) are not retried once sent.
"""

from __future__ import annotations

import ipaddress
import json
import socket

__all__ = ["channel_target"]

MAX_ATTEMPTS = 4  # the first attempt included: three cores and one more try

_RETRIES: dict[str, object] = {
    "methodConfig": [
        {
            "name": [{}],
            "retryPolicy": {
                "maxAttempts": MAX_ATTEMPTS,
                "initialBackoff": "0.02s",
                "maxBackoff": "0.5s",
                "backoffMultiplier": 2,
                "retryableStatusCodes": ["UNAVAILABLE"],
            },
        }
    ],
}
_BALANCED: dict[str, object] = {
    "loadBalancingConfig": [{"round_robin": {}}],
    "healthCheckConfig": {"serviceName": ""},
    **_RETRIES,
}


def _options(config: dict[str, object]) -> tuple[tuple[str, str | int], ...]:
    return (
        ("grpc.service_config", json.dumps(config)),
        ("grpc.service_config_disable_resolution", 1),  # ours, never one from DNS TXT records
        ("grpc.enable_retries", 1),
    )


def channel_target(targets: list[str], *, balanced: bool = True) -> tuple[str, tuple[tuple[str, str | int], ...]]:
    """The channel target for these core addresses and the options that balance and retry over them.

    One target is passed to gRPC as written (a DNS name with several addresses is balanced over all);
    several are resolved once, here, into one `ipv4:`/`ipv6:` address list. `balanced=False` (the one
    `facade.core_target`): retries only.
    """
    options = _options(_BALANCED if balanced else _RETRIES)
    if len(targets) == 1:
        return targets[0], options
    addresses: list[str] = []
    for target in targets:
        addresses.extend(_addresses(target))
    families = {address.partition(":")[0] for address in addresses}
    if len(families) > 1:  # one URI has one scheme
        raise ValueError(f"facade.core_targets mixes IPv4 and IPv6 addresses: {targets}")
    scheme = families.pop()
    return f"{scheme}:" + ",".join(address.partition(":")[2] for address in addresses), options


def _addresses(target: str) -> list[str]:
    host, sep, port = target.removeprefix("dns:///").rpartition(":")
    if not sep or not port.isdigit() or "://" in host or host.startswith(("unix:", "ipv4:", "ipv6:")):
        raise ValueError(f"facade.core_targets entries are host:port, not {target!r}")
    host = host.strip("[]")
    try:
        literal = ipaddress.ip_address(host)
        ips = [str(literal)]
    except ValueError:
        infos = socket.getaddrinfo(host, int(port), type=socket.SOCK_STREAM)
        ips = list(dict.fromkeys(str(info[4][0]) for info in infos))
    return [f"ipv6:[{ip}]:{port}" if ":" in ip else f"ipv4:{ip}:{port}" for ip in ips]
