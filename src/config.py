"""Configuration: a TOML file with environment overrides.

The file is named by `--config` on the command line or the `ATOMA_CONFIG` environment variable.
Every setting can be overridden from the environment with the `ATOMA_` prefix and `__` between
sections, e.g. `ATOMA_DATABASE__URL=postgresql://...` or `ATOMA_FACADE__PORT=9090`.
"""

from __future__ import annotations

import ipaddress
import os
from typing import Any, Literal

from pydantic import BaseModel, Field, SecretStr, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from atoma_proxy.core.limits import MAX_OUTPUT_TOKENS, MAX_PRICE_MICRO_USD
from atoma_proxy.paths import default_database_url

__all__ = [
    "CONFIG_ENV",
    "MIB",
    "NODE_RESPONSE_CEILING",
    "AccountsSettings",
    "ConfidentialSettings",
    "CoreSettings",
    "DatabaseSettings",
    "FacadeSettings",
    "LedgerSettings",
    "LoggingSettings",
    "ModelConfig",
    "NodeConfig",
    "RateLimitSettings",
    "RoutingSettings",
    "Settings",
    "SuiSettings",
    "TelemetrySettings",
    "TokenizerConfig",
    "load_settings",
]

CONFIG_ENV = "ATOMA_CONFIG"
MIB = 1024 * 1024
# A node's answer travels whole in one gRPC message of at most 64 MiB (the core's and the facade's limit).
NODE_RESPONSE_CEILING = 64 * MIB - 64 * 1024


class NodeConfig(BaseModel):
    """One inference node of the static registry."""

    id: str = Field(description="Unique node identifier, shown in x-atoma-node.")
    url: str = Field(description="Base URL of the node's OpenAI-compatible API, without /v1.")
    models: list[str] = Field(min_length=1, description="Models the node serves.")
    input_price_per_million: int = Field(
        0, ge=0, le=MAX_PRICE_MICRO_USD, description="Micro-USD per million prompt tokens."
    )
    output_price_per_million: int = Field(
        0, ge=0, le=MAX_PRICE_MICRO_USD, description="Micro-USD per million generated tokens."
    )
    price_per_image: int = Field(0, ge=0, le=MAX_PRICE_MICRO_USD, description="Micro-USD per generated image.")
    api_key: str | None = Field(None, description="Bearer key the node expects, if any.")
    confidential_signing_key: str | None = Field(
        None, description="Base64 Ed25519 public key of the node's confidential sidecar (docs/confidential.md)."
    )
    protocol: Literal["openai", "atoma"] = Field(
        "openai",
        description='`atoma`: requests signed with the proxy\'s Sui key, answers verified (README "Sui").',
    )
    sui_address: str | None = Field(
        None, description="The node's Sui address: with `atoma`, its answers must be signed by it."
    )
    node_small_id: int | None = Field(None, ge=0, description="The node's small id in the Atoma contract.")
    context_lengths: dict[str, int] = Field(
        default_factory=dict,
        description="Context length (tokens) of some of its models, when it differs from [[models]].",
    )
    apis: list[Literal["chat", "responses"]] = Field(
        default=["chat"],
        description='OpenAI APIs the node serves; with "responses", /v1/responses is passed through to it.',
    )


class ModelConfig(BaseModel):
    """What /v1/models says of a model beyond its prices (README "Models and prices")."""

    id: str = Field(description="The model id, as in [[nodes]] `models`.")
    kind: Literal["chat", "embeddings", "images"] | None = Field(
        None, description="What it serves; requests of another kind are refused before any node is called."
    )
    context_length: int | None = Field(None, ge=1, description="Context length in tokens (nodes may override it).")
    created: int = Field(0, ge=0, description="Unix time shown as `created` (0: unknown).")


class TokenizerConfig(BaseModel):
    """How the ledger counts a model's prompt tokens before calling a node (README "Metering")."""

    model: str = Field(description="The model whose prompts this tokenizer counts.")
    kind: Literal["huggingface", "sim-words"] = Field(
        "huggingface", description="`huggingface`: a local tokenizer.json; `sim-words`: the node simulator's rule."
    )
    path: str | None = Field(None, description="Path of the HF tokenizer.json (local file, never downloaded).")

    @model_validator(mode="after")
    def _path_for_huggingface(self) -> TokenizerConfig:
        if self.kind == "huggingface" and not self.path:
            raise ValueError(f"tokenizer of {self.model!r}: `path` to a tokenizer.json is required")
        return self


class LedgerSettings(BaseModel):
    """Pricing, reservations and settlement of every inference request (README "Metering")."""

    enabled: bool = Field(True, description="Reserve before and settle after every request; false meters nothing.")
    default_max_completion_tokens: int = Field(
        4096, ge=1, le=MAX_OUTPUT_TOKENS, description="Output tokens reserved per choice when a request sets no cap."
    )
    reservation_margin: float = Field(
        30.0, gt=0, description="Seconds a reservation outlives its request's deadline before the sweeper frees it."
    )
    max_request_seconds: float = Field(
        3600.0, gt=0, description="Deadline assumed for reservations of calls that carry no gRPC deadline."
    )
    sweep_interval: float = Field(5.0, gt=0, description="Seconds between sweeps of expired reservations.")
    answer_before_settlement: bool = Field(
        True,
        description="A successful answer leaves without waiting for its settlement to commit (README 'Metering').",
    )
    price_cache_ttl: float = Field(
        5.0, ge=0, description="Seconds a user's price overrides and stacks are cached by each core."
    )
    image_models: list[str] = Field(
        default_factory=list, description="Models that generate images: paid per image, never sold as stacks."
    )


class DatabaseSettings(BaseModel):
    url: str = Field(
        default_factory=default_database_url,
        description="SQLAlchemy URL: sqlite:///path (embedded; default in the data directory, see paths.py) "
        "or postgresql://user@host/db (psycopg).",
    )
    pool_size: int = Field(10, ge=1, description="Connections per process (PostgreSQL).")
    connect_timeout: int = Field(
        2, ge=2, le=60, description="Seconds to connect to PostgreSQL before the database counts as unavailable."
    )
    pool_timeout: float = Field(
        2.0,
        gt=0,
        description="Seconds a request waits for a pooled connection before the database counts as unavailable.",
    )
    statement_timeout: float = Field(
        5.0, gt=0, description="Seconds the request path waits for the database (key check, reservation) before 503."
    )


class CoreSettings(BaseModel):
    listen: str = Field("127.0.0.1:50051", description="gRPC listen address of the routing core.")
    max_concurrent_rpcs: int = Field(4096, ge=1, description="RPCs served at once before new ones are refused.")
    node_connect_timeout: float = Field(5.0, gt=0, description="Seconds to connect to a node.")
    node_read_timeout: float = Field(300.0, gt=0, description="Seconds a node may stay silent mid-response.")
    node_max_connections: int = Field(1024, ge=1, description="Pooled keep-alive connections to nodes, in all.")
    node_max_event_bytes: int = Field(
        4 * MIB,
        ge=1024,
        le=32 * MIB,
        description="Longest SSE event a node may send; past it, NODE_FAILED.",
    )
    node_max_response_bytes: int = Field(
        60 * MIB,
        ge=1024,
        le=NODE_RESPONSE_CEILING,
        description="Longest answer (body bytes) a node may send; past it, NODE_FAILED. Below the 64 MiB gRPC message.",
    )
    health_interval: float = Field(5.0, gt=0, description="Seconds between health probes of each node.")
    health_timeout: float = Field(2.0, gt=0, description="Seconds a health probe may take.")
    shutdown_grace: float = Field(10.0, ge=0, description="Seconds in-flight RPCs get to finish on shutdown.")
    api_key_cache_ttl: float = Field(
        1.0, ge=0, description="Seconds a verified API key is trusted before the database is asked again."
    )
    workers: int = Field(
        1, ge=1, le=64, description="Processes of `atoma-proxy core`, each a full core on `listen` (SO_REUSEPORT)."
    )
    max_connection_age: float = Field(
        300.0,
        ge=0,
        description="Seconds before a client connection is asked to reconnect (calls in flight finish); 0: never.",
    )
    metrics_listen: str | None = Field(
        None, description='host:port of the core\'s Prometheus /metrics over HTTP; unset: none (README "Operations").'
    )


class FacadeSettings(BaseModel):
    host: str = Field("127.0.0.1", description="Listen host of the OpenAI REST facade.")
    port: int = Field(8080, ge=0, le=65535, description="Listen port of the OpenAI REST facade.")
    core_target: str = Field(
        "127.0.0.1:50051",
        description="gRPC target of the core; `dns:///name:port` or `ipv4:a:p,b:p` spread calls over several cores.",
    )
    core_targets: list[str] = Field(
        default_factory=list,
        description="gRPC addresses of several cores, round robin over the healthy ones (replaces core_target).",
    )
    request_timeout: float = Field(600.0, gt=0, description="Deadline given to the core for each request.")
    in_process: bool = Field(
        True,
        description="With the core in the same process (`serve`, `demo`): call it in-process, not over loopback gRPC.",
    )
    core_connections: int = Field(
        1,
        ge=1,
        le=64,
        description="gRPC connections to the core, used in turn; set it to the core's workers so all of them serve.",
    )
    workers: int = Field(
        1, ge=1, le=64, description="Processes of `atoma-proxy facade`, all on `host:port` (SO_REUSEPORT)."
    )
    header_timeout: float = Field(
        10.0,
        gt=0,
        description="Seconds a client has to send a request's headers; past it: 408 and the connection closed.",
    )
    body_timeout: float = Field(
        60.0, gt=0, description="Seconds a client has to send a request's body after its headers; past it: 408."
    )
    cors_origins: list[str] = Field(
        default_factory=list,
        description='Browser origins allowed to call the facade (CORS): ["https://app.example"], "*" any; empty: off.',
    )

    def targets(self) -> list[str]:
        """The cores' addresses: `core_targets`, else the one `core_target`."""
        return list(self.core_targets) or [self.core_target]


class RoutingSettings(BaseModel):
    """Node selection, failover and outlier ejection (README "Routing")."""

    strategy: Literal["balanced", "cheapest", "fastest", "round_robin"] = Field(
        "balanced", description="Default strategy; a request may pick another with `x-atoma-routing-strategy`."
    )
    price_weight: float = Field(0.5, ge=0, description="Exponent of the price ratio in the balanced score.")
    max_attempts: int = Field(3, ge=1, le=10, description="Nodes tried per request before its error is returned.")
    first_token_timeout: float = Field(
        30.0, gt=0, description="Seconds a node may take to stream its first token before another node is tried."
    )
    eject_after_failures: int = Field(3, ge=1, description="Consecutive failures that eject a node.")
    eject_error_rate: float = Field(0.5, gt=0, le=1, description="Error rate over `error_window` that ejects a node.")
    eject_min_requests: int = Field(10, ge=1, description="Requests in the window before the error rate counts.")
    error_window: float = Field(30.0, gt=0, description="Seconds of outcomes the error rate is computed over.")
    ejection_time: float = Field(1.0, gt=0, description="Seconds of a first ejection; doubled at each repeat.")
    max_ejection_time: float = Field(60.0, gt=0, description="Longest ejection.")
    health_max_backoff: float = Field(
        30.0, gt=0, description="Longest interval between probes of a failing node (backoff from health_interval)."
    )
    metrics_interval: float = Field(
        2.0, ge=0, description="Seconds between scrapes of each node's Prometheus /metrics; 0 turns them off."
    )
    seed: int | None = Field(None, description="Seed of the random draws of node selection (benchmarks, tests).")


class RateLimitSettings(BaseModel):
    """Requests and tokens per minute, per API key and per user (README "Rate limits"); 0 or unset is unlimited."""

    redis_url: str | None = Field(
        None, description="Redis shared by all core instances (redis://host:6379/0); unset keeps limits in-process."
    )
    key_requests_per_minute: int | None = Field(None, ge=0, description="Requests per minute of each API key.")
    key_tokens_per_minute: int | None = Field(None, ge=0, description="Tokens per minute of each API key.")
    user_requests_per_minute: int | None = Field(None, ge=0, description="Requests per minute of each user, all keys.")
    user_tokens_per_minute: int | None = Field(None, ge=0, description="Tokens per minute of each user, all keys.")
    fail_open: bool = Field(True, description="When Redis is unreachable: admit (true) or refuse with 429 (false).")
    redis_timeout: float = Field(0.25, gt=0, description="Seconds a Redis call may take before Redis counts as down.")
    key_prefix: str = Field("atoma:rl:", description="Prefix of the rate-limit keys in Redis.")


class AccountsSettings(BaseModel):
    """User accounts: login tokens and the admin API (README "Accounts")."""

    jwt_secret: SecretStr | None = Field(
        None,
        min_length=32,
        description="HS256 key of the access tokens, shared by all core instances; unset disables AccountService.",
    )
    access_token_minutes: int = Field(15, ge=1, le=24 * 60, description="Lifetime of an access token, in minutes.")
    refresh_token_days: int = Field(30, ge=1, le=365, description="Lifetime of a refresh token, in days.")
    admin_token: SecretStr | None = Field(
        None, min_length=16, description="Bearer token of AccountAdminService; unset disables the admin API."
    )
    auth_attempts_per_address: int = Field(
        120, ge=0, description="Register/Login/RefreshToken calls per minute from one client address; 0: no limit."
    )
    auth_attempts_per_email: int = Field(
        10, ge=0, description="Register/Login calls per minute for one email; 0: no limit."
    )
    trusted_proxies: list[str] = Field(
        default_factory=lambda: ["127.0.0.1/32", "::1/128"],
        description="Peers (IPs or networks) whose `x-atoma-client-address` metadata names the client: the facades.",
    )
    hash_queue: int = Field(
        16, ge=0, description="Password hashes that may wait for one of the 4 hashing slots; past it: 429 at once."
    )

    @field_validator("trusted_proxies")
    @classmethod
    def _networks(cls, value: list[str]) -> list[str]:
        for network in value:
            ipaddress.ip_network(network, strict=False)  # ValueError names the bad entry
        return value


class ConfidentialSettings(BaseModel):
    """Confidential inference (README "Confidential inference", docs/confidential.md)."""

    attestation_authority_key: str | None = Field(
        None, description="Base64 Ed25519 public key of the attestation authority; unset: no key is ever offered."
    )
    key_lifetime: float = Field(7200.0, gt=0, description="Seconds a registered node key is offered.")
    default_lock_timeout: float = Field(5.0, gt=0, description="Seconds an unused lock lives by default.")
    max_lock_timeout: float = Field(300.0, gt=0, description="Longest lock a client may ask for.")
    default_max_num_tokens: int = Field(4096, ge=1, description="Tokens a lock holds when the client names none.")
    max_num_tokens: int = Field(1_000_000, ge=1, description="Most tokens one lock may hold.")
    max_request_seconds: float = Field(600.0, gt=0, description="Seconds a confidential request may run.")


class SuiSettings(BaseModel):
    """The proxy as a Sui/Atoma network citizen (README "Sui"); names follow Atoma's `[atoma_sui]`."""

    http_rpc_node_addr: str | None = Field(
        None, description="Sui GraphQL endpoint, e.g. https://graphql.testnet.sui.io/graphql; unset: no chain."
    )
    sui_keystore_path: str | None = Field(
        None, description="Sui keystore (JSON array of keystrings) holding the proxy's key; unset: no signing."
    )
    sui_config_path: str | None = Field(
        None, description="Sui client.yaml whose active_address names the proxy's key in the keystore."
    )
    address: str | None = Field(None, description="The proxy's address in the keystore (wins over client.yaml).")
    atoma_package_id: str | None = Field(None, description="Atoma contract package id.")
    atoma_db: str | None = Field(None, description="Atoma database (AtomaDb) object id.")
    usdc_package_id: str | None = Field(None, description="USDC package id (coin type <id>::usdc::USDC).")
    request_timeout: float = Field(
        300.0, gt=0, description="Seconds an RPC to the Sui node may take (Atoma's `{ secs, nanos }` form accepted)."
    )
    limit: int = Field(50, ge=1, description="Events per page when reading the chain (Sui GraphQL serves 50 at most).")
    cursor_path: str | None = Field(None, description="Unused: the event cursor is kept in the database.")
    chain_stacks: bool = Field(
        False,
        description="BuyStack buys on chain (acquire_new_stack_entry); needs the keystore, RPC, package ids, atoma_db.",
    )
    gas_budget: int = Field(50_000_000, ge=1, description="MIST a stack purchase may spend on gas.")

    @field_validator("request_timeout", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> Any:
        """Atoma writes durations as serde's `{ secs = 300, nanos = 0 }`."""
        if isinstance(value, dict) and set(value) <= {"secs", "nanos"}:
            return float(value.get("secs", 0)) + float(value.get("nanos", 0)) / 1e9
        return value


class TelemetrySettings(BaseModel):
    """OpenTelemetry traces (README "Operations"): off unless `otlp_endpoint` is set."""

    otlp_endpoint: str | None = Field(
        None, description="OTLP/gRPC collector, e.g. http://otel-collector:4317; unset: no tracing at all."
    )
    service_name: str | None = Field(
        None, description="service.name of the spans; default atoma-proxy-core / atoma-proxy-facade."
    )
    sampling_ratio: float = Field(1.0, ge=0, le=1, description="Fraction of new traces recorded (parent-based).")


class LoggingSettings(BaseModel):
    """Log lines on standard error (README "Operations")."""

    format: Literal["text", "json"] = Field("text", description="`json`: one JSON object per line.")
    level: str = Field("INFO", description="Python logging level; `--log-level` overrides it.")


class Settings(BaseSettings):
    """All settings of atoma-proxy."""

    model_config = SettingsConfigDict(env_prefix="ATOMA_", env_nested_delimiter="__", extra="forbid")

    database: DatabaseSettings = Field(default_factory=DatabaseSettings)
    core: CoreSettings = CoreSettings()
    facade: FacadeSettings = FacadeSettings()
    accounts: AccountsSettings = AccountsSettings()
    rate_limits: RateLimitSettings = RateLimitSettings()
    routing: RoutingSettings = RoutingSettings()
    ledger: LedgerSettings = LedgerSettings()
    confidential: ConfidentialSettings = ConfidentialSettings()
    sui: SuiSettings = SuiSettings()
    telemetry: TelemetrySettings = TelemetrySettings()
    logging: LoggingSettings = LoggingSettings()
    tokenizers: list[TokenizerConfig] = Field(default_factory=list, description="Prompt tokenizers by model.")
    models: list[ModelConfig] = Field(default_factory=list, description="Kind, context length and date of models.")
    nodes: list[NodeConfig] = Field(default_factory=list, description="The static node registry.")

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        toml = TomlConfigSettingsSource(settings_cls, toml_file=os.environ.get(CONFIG_ENV))
        return (init_settings, env_settings, toml)


def load_settings() -> Settings:
    """Settings from the file named by ATOMA_CONFIG (if any) and the environment."""
    return Settings()
