"""What a simulated node serves and how it misbehaves.

One `SimConfig` describes one node: its models, its speed (time to first token, tokens per second,
concurrency) and its faults (injected errors, hangs, dropped connections). The speed and fault
fields (`RUNTIME_FIELDS`) can also be changed while the node runs, through `POST /sim/config`,
so chaos tests can break a node mid-test; `apply_runtime_update` validates such changes.
"""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass, field
from typing import Any

DEFAULT_PORT = 8100

# Fields that POST /sim/config may change on a running node.
RUNTIME_FIELDS = (
    "error_rate",
    "error_status",
    "hang_rate",
    "drop_rate",
    "drop_after_tokens",
    "ttft_ms",
    "tokens_per_second",
    "max_concurrency",
    "bad_signature_rate",
    "bad_hash_rate",
    "tamper_from_chunk",
)


@dataclass
class SimConfig:
    """One simulated node. Rates are probabilities in [0, 1], drawn per request from `seed`."""

    node_id: str = "sim-0"
    chat_models: list[str] = field(default_factory=lambda: ["atoma/sim-chat"])
    embedding_models: list[str] = field(default_factory=lambda: ["atoma/sim-embed"])
    image_models: list[str] = field(default_factory=lambda: ["atoma/sim-image"])
    ttft_ms: float = 0.0  # delay before the first generated token (after admission)
    tokens_per_second: float = 0.0  # pacing of later tokens; 0 = as fast as possible, no sleeps
    max_concurrency: int = 0  # 0 = unlimited; beyond it requests queue FIFO ("waiting")
    reply_tokens: int = 16  # natural reply length: tokens generated when the request sets no max
    error_rate: float = 0.0
    error_status: int = 500  # HTTP status of injected errors, e.g. 429 or 503
    hang_rate: float = 0.0  # the request never answers until the client goes away
    drop_rate: float = 0.0  # the connection is closed mid-response
    drop_after_tokens: int = 2  # streaming: tokens sent before the drop
    seed: int = 0  # seed of the fault draws
    api_key: str | None = None  # when set, /v1 requests need `Authorization: Bearer <key>`
    embedding_dimensions: int = 16
    # Atoma protocol (README "Sui"): "atoma" checks the proxy's X-Signature and signs every answer
    # and chunk with `sui_keystring` (a fresh Ed25519 key when unset; GET /sim/config shows its address).
    protocol: str = "openai"
    sui_keystring: str | None = None
    allowed_signers: list[str] = field(default_factory=list)  # proxy addresses accepted; empty: any
    bad_signature_rate: float = 0.0  # an answer or chunk signed over the wrong digest
    bad_hash_rate: float = 0.0  # an answer or chunk whose response_hash is not its hash
    tamper_from_chunk: int = 0  # streams: chunks before this index are never tampered with

    def __post_init__(self) -> None:
        _check_fields({name: getattr(self, name) for name in RUNTIME_FIELDS})
        if self.reply_tokens < 0:
            raise ValueError("reply_tokens must be >= 0")
        if self.embedding_dimensions < 1:
            raise ValueError("embedding_dimensions must be >= 1")
        if self.protocol not in ("openai", "atoma"):
            raise ValueError("protocol must be 'openai' or 'atoma'")

    @property
    def all_models(self) -> list[str]:
        """Every served model once, chat first (the /v1/models order)."""
        return list(dict.fromkeys([*self.chat_models, *self.embedding_models, *self.image_models]))

    def runtime_view(self) -> dict[str, Any]:
        """The live-changeable fields, as GET/POST /sim/config report them."""
        return {name: getattr(self, name) for name in RUNTIME_FIELDS}


def _number(name: str, value: Any, *, integer: bool) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number")
    if integer and not (isinstance(value, int) or float(value).is_integer()):
        raise ValueError(f"{name} must be an integer")
    return value


def _check_fields(values: dict[str, Any]) -> dict[str, Any]:
    """Validate runtime-field values; returns them normalised (ints as int)."""
    checked: dict[str, Any] = {}
    for name, value in values.items():
        if name not in RUNTIME_FIELDS:
            raise ValueError(f"unknown or read-only field: {name}")
        integer = name in ("error_status", "drop_after_tokens", "max_concurrency", "tamper_from_chunk")
        number = _number(name, value, integer=integer)
        number = int(number) if integer else float(number)
        if name.endswith("_rate") and not 0 <= number <= 1:
            raise ValueError(f"{name} must be between 0 and 1")
        if name == "error_status" and not 400 <= number <= 599:
            raise ValueError("error_status must be an HTTP error status (400-599)")
        if number < 0:
            raise ValueError(f"{name} must be >= 0")
        checked[name] = number
    return checked


def apply_runtime_update(config: SimConfig, update: Any) -> None:
    """Apply a POST /sim/config body: all fields are checked before any is changed."""
    if not isinstance(update, dict):
        raise ValueError("expected a JSON object")
    for name, value in _check_fields(update).items():
        setattr(config, name, value)


def add_cli_arguments(parser: argparse.ArgumentParser) -> None:
    """The `atoma-proxy node-sim` options (host and port included)."""
    d = SimConfig()
    add = parser.add_argument
    add("--host", default="127.0.0.1", help="Interface to listen on (default 127.0.0.1).")
    add(
        "--port",
        type=int,
        default=DEFAULT_PORT,
        help=f"Port to listen on; 0 picks a free one (default {DEFAULT_PORT}).",
    )
    add("--node-id", default=d.node_id, help=f"Node identifier shown in /sim/stats (default {d.node_id}).")
    add(
        "--chat-model", action="append", help=f"Chat/completions model served; repeatable (default {d.chat_models[0]})."
    )
    add("--embedding-model", action="append", help=f"Embedding model; repeatable (default {d.embedding_models[0]}).")
    add("--image-model", action="append", help=f"Image model; repeatable (default {d.image_models[0]}).")
    add("--ttft-ms", type=float, default=d.ttft_ms, help="Milliseconds before the first token (default 0).")
    add("--tokens-per-second", type=float, default=d.tokens_per_second, help="Token pace; 0 = unlimited (default).")
    add("--max-concurrency", type=int, default=d.max_concurrency, help="Requests served at once; 0 = unlimited.")
    add("--reply-tokens", type=int, default=d.reply_tokens, help="Reply length when no max is set (default 16).")
    add("--error-rate", type=float, default=d.error_rate, help="Probability of an injected error response.")
    add("--error-status", type=int, default=d.error_status, help="HTTP status of injected errors (default 500).")
    add("--hang-rate", type=float, default=d.hang_rate, help="Probability that a request never answers.")
    add("--drop-rate", type=float, default=d.drop_rate, help="Probability that the connection is dropped mid-reply.")
    add("--drop-after-tokens", type=int, default=d.drop_after_tokens, help="Tokens streamed before a drop (default 2).")
    add("--seed", type=int, default=d.seed, help="Seed of the fault draws (default 0).")
    add("--api-key", default=None, help="Require `Authorization: Bearer <key>` on /v1 requests.")
    add("--embedding-dimensions", type=int, default=d.embedding_dimensions, help="Default embedding size (16).")
    add("--protocol", choices=("openai", "atoma"), default=d.protocol, help="`atoma`: Sui-signed traffic.")
    add("--sui-keystring", default=None, help="The node's Sui key (atoma protocol); default a fresh Ed25519 key.")
    add("--allowed-signer", action="append", help="Proxy Sui address whose requests are accepted; repeatable.")


def config_from_args(ns: argparse.Namespace) -> SimConfig:
    """Build a SimConfig from parsed `add_cli_arguments` options (host and port are not part of it)."""
    d = SimConfig()
    return SimConfig(
        node_id=ns.node_id,
        chat_models=ns.chat_model or d.chat_models,
        embedding_models=ns.embedding_model or d.embedding_models,
        image_models=ns.image_model or d.image_models,
        ttft_ms=ns.ttft_ms,
        tokens_per_second=ns.tokens_per_second,
        max_concurrency=ns.max_concurrency,
        reply_tokens=ns.reply_tokens,
        error_rate=ns.error_rate,
        error_status=ns.error_status,
        hang_rate=ns.hang_rate,
        drop_rate=ns.drop_rate,
        drop_after_tokens=ns.drop_after_tokens,
        seed=ns.seed,
        api_key=ns.api_key,
        embedding_dimensions=getattr(ns, "embedding_dimensions", d.embedding_dimensions),
        protocol=getattr(ns, "protocol", d.protocol),
        sui_keystring=getattr(ns, "sui_keystring", None),
        allowed_signers=getattr(ns, "allowed_signer", None) or [],
    )
