"""What a simulated node serves and how it misbehaves.

One `SimConfig` describes one node: its models, its speed (time to first token, tokens per second,
concurrency) and its faults (injected errors, hangs, dropped connections). The speed and fault
fields (`RUNTIME_FIELDS`) can also be changed while the node runs, through `POST /sim/config`,
so chaos tests can break a node mid-test; `apply_runtime_update` validates such changes. The
hostile behaviours (`HOSTILE_FIELDS`, see hostile.py) are changeable the same way.
"""

from __future__ import annotations

import argparse
import json
import math
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "DEFAULT_PORT",
    "HOSTILE_FIELDS",
    "METERING_FAULT_FIELDS",
    "MODES",
    "RUNTIME_FIELDS",
    "SimConfig",
    "add_cli_arguments",
    "apply_runtime_update",
    "config_from_args",
]

DEFAULT_PORT = 8100

# Fields that POST /sim/config may change on a running node.
RUNTIME_FIELDS: tuple[str, ...] = (
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
# Metering misbehaviours (README "Node simulator"), also changeable while the node runs.
METERING_FAULT_FIELDS = ("overproduce_tokens", "omit_usage", "fake_usage", "completions_max_tokens_only")
RUNTIME_FIELDS += METERING_FAULT_FIELDS
# Hostile-node misbehaviours (see hostile.py), live-changeable too; the string ones take one of their modes.
HOSTILE_FIELDS = ("metrics_lie", "garbage", "garbage_after_tokens", "oversize_bytes")
MODES = {
    "metrics_lie": ("", "negative", "nan", "-inf", "huge"),
    "garbage": ("", "not_json", "html", "non_utf8", "usage_type"),
}


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
    overproduce_tokens: int = 0  # tokens generated per choice past the request's cap (ignoring it)
    omit_usage: bool = False  # replies without `usage`, streamed or not, even when asked
    fake_usage: dict[str, Any] | None = None  # keys that replace the reported usage's, e.g. {"completion_tokens": -1}
    responses_api: bool = False  # serve POST /v1/responses (responses.py); off: 404 there, as a chat-only node
    completions_max_tokens_only: bool = False  # /v1/completions ignores `max_completion_tokens`, as OpenAI's API
    # Hostile node (hostile.py): lie in /metrics, answer garbage, or send more than a proxy accepts.
    metrics_lie: str = ""  # negative | nan | -inf | huge: the requests waiting that /metrics reports
    garbage: str = ""  # not_json | html | non_utf8 | usage_type: the answer (or one streamed event)
    garbage_after_tokens: int = 0  # streaming: good tokens sent before the garbage or the endless event
    oversize_bytes: int = 0  # > 0: an answer of this many bytes; streamed, one event that never ends
    # Atoma protocol (README "Sui"): "atoma" checks the proxy's X-Signature and signs every answer
    # and chunk with `sui_keystring` (a fresh Ed25519 key when unset; GET /sim/config shows its address).
    protocol: str = "openai"
    sui_keystring: str | None = None
    allowed_signers: list[str] = field(default_factory=list)  # proxy addresses accepted; empty: any
    bad_signature_rate: float = 0.0  # an answer or chunk signed over the wrong digest
    bad_hash_rate: float = 0.0  # an answer or chunk whose response_hash is not its hash
    tamper_from_chunk: int = 0  # streams: chunks before this index are never tampered with

    def __post_init__(self) -> None:
        _check_fields({name: getattr(self, name) for name in (*RUNTIME_FIELDS, *HOSTILE_FIELDS)})
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
        return {name: getattr(self, name) for name in (*RUNTIME_FIELDS, *HOSTILE_FIELDS)}


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
        if name in MODES:
            if value not in MODES[name]:
                raise ValueError(f"{name} must be one of {', '.join(repr(m) for m in MODES[name])}")
            checked[name] = value
            continue
        if name not in RUNTIME_FIELDS and name not in HOSTILE_FIELDS:
            raise ValueError(f"unknown or read-only field: {name}")
        if name in METERING_FAULT_FIELDS:
            checked[name] = _check_metering_fault(name, value)
            continue
        integer = name in ("error_status", "drop_after_tokens", "max_concurrency", *HOSTILE_FIELDS, "tamper_from_chunk")
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


def _check_metering_fault(name: str, value: Any) -> Any:
    if name == "overproduce_tokens":
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError("overproduce_tokens must be an integer >= 0")
    elif name == "fake_usage":
        if value is not None and not isinstance(value, dict):
            raise ValueError("fake_usage must be a JSON object or null")
    elif not isinstance(value, bool):
        raise ValueError(f"{name} must be a boolean")
    return value


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
    add("--overproduce-tokens", type=int, default=0, help="Tokens generated past the request's cap (default 0).")
    add("--omit-usage", action="store_true", help="Never report `usage`.")
    add("--fake-usage", type=_json_object, default=None, help="JSON object replacing usage keys.")
    add("--responses", action="store_true", help="Serve POST /v1/responses (OpenAI's Responses API).")
    add("--completions-max-tokens-only", action="store_true", help="Completions ignore `max_completion_tokens`.")
    add("--metrics-lie", choices=MODES["metrics_lie"], default=d.metrics_lie, help="Lie about waiting requests.")
    add("--garbage", choices=MODES["garbage"], default=d.garbage, help="Answer garbage with status 200.")
    add("--garbage-after-tokens", type=int, default=d.garbage_after_tokens, help="Streaming: tokens before it.")
    add("--oversize-bytes", type=int, default=d.oversize_bytes, help="Answer this many bytes (streams: one event).")
    add("--protocol", choices=("openai", "atoma"), default=d.protocol, help="`atoma`: Sui-signed traffic.")
    add("--sui-keystring", default=None, help="The node's Sui key (atoma protocol); default a fresh Ed25519 key.")
    add("--allowed-signer", action="append", help="Proxy Sui address whose requests are accepted; repeatable.")


def _json_object(text: str) -> dict[str, Any]:
    value = json.loads(text)
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError("expected a JSON object")
    return value


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
        overproduce_tokens=getattr(ns, "overproduce_tokens", d.overproduce_tokens),
        omit_usage=getattr(ns, "omit_usage", d.omit_usage),
        fake_usage=getattr(ns, "fake_usage", d.fake_usage),
        responses_api=getattr(ns, "responses", d.responses_api),
        completions_max_tokens_only=getattr(ns, "completions_max_tokens_only", d.completions_max_tokens_only),
        metrics_lie=getattr(ns, "metrics_lie", d.metrics_lie),
        garbage=getattr(ns, "garbage", d.garbage),
        garbage_after_tokens=getattr(ns, "garbage_after_tokens", d.garbage_after_tokens),
        oversize_bytes=getattr(ns, "oversize_bytes", d.oversize_bytes),
        protocol=getattr(ns, "protocol", d.protocol),
        sui_keystring=getattr(ns, "sui_keystring", None),
        allowed_signers=getattr(ns, "allowed_signer", None) or [],
    )
