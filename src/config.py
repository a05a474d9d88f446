"""Configuration: a TOML file with environment overrides.

The file is named by `--config` on the command line or the `ATOMA_CONFIG` environment variable.
Every setting can be overridden from the environment with the `ATOMA_` prefix and `__` between
sections, e.g. `ATOMA_DATABASE__URL=postgresql://...` or `ATOMA_FACADE__PORT=9090`.
"""

from __future__ import annotations

import os

from pydantic import BaseModel, Field
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

CONFIG_ENV = "ATOMA_CONFIG"


class NodeConfig(BaseModel):
    """One inference node of the static registry."""

    id: str = Field(description="Unique node identifier, shown in x-atoma-node.")
    url: str = Field(description="Base URL of the node's OpenAI-compatible API, without /v1.")
    models: list[str] = Field(min_length=1, description="Models the node serves.")
    input_price_per_million: int = Field(0, ge=0, description="Micro-USD per million prompt tokens.")
    output_price_per_million: int = Field(0, ge=0, description="Micro-USD per million generated tokens.")
    api_key: str | None = Field(None, description="Bearer key the node expects, if any.")


class DatabaseSettings(BaseModel):
    url: str = Field(
        "sqlite:///./atoma-proxy.db",
        description="SQLAlchemy URL: sqlite:///path (embedded) or postgresql://user@host/db (psycopg).",
    )
    pool_size: int = Field(10, ge=1, description="Connections per process (PostgreSQL).")


class CoreSettings(BaseModel):
    listen: str = Field("127.0.0.1:50051", description="gRPC listen address of the routing core.")
    max_concurrent_rpcs: int = Field(4096, ge=1, description="RPCs served at once before new ones are refused.")
    node_connect_timeout: float = Field(5.0, gt=0, description="Seconds to connect to a node.")
    node_read_timeout: float = Field(300.0, gt=0, description="Seconds a node may stay silent mid-response.")
    node_max_connections: int = Field(1024, ge=1, description="Pooled keep-alive connections to nodes, in all.")
    health_interval: float = Field(5.0, gt=0, description="Seconds between health probes of each node.")
    health_timeout: float = Field(2.0, gt=0, description="Seconds a health probe may take.")
    shutdown_grace: float = Field(10.0, ge=0, description="Seconds in-flight RPCs get to finish on shutdown.")
    api_key_cache_ttl: float = Field(
        1.0, ge=0, description="Seconds a verified API key is trusted before the database is asked again."
    )


class FacadeSettings(BaseModel):
    host: str = Field("127.0.0.1", description="Listen host of the OpenAI REST facade.")
    port: int = Field(8080, ge=0, le=65535, description="Listen port of the OpenAI REST facade.")
    core_target: str = Field("127.0.0.1:50051", description="gRPC address of the routing core.")
    request_timeout: float = Field(600.0, gt=0, description="Deadline given to the core for each request.")


class Settings(BaseSettings):
    """All settings of atoma-proxy."""

    model_config = SettingsConfigDict(env_prefix="ATOMA_", env_nested_delimiter="__", extra="forbid")

    database: DatabaseSettings = DatabaseSettings()
    core: CoreSettings = CoreSettings()
    facade: FacadeSettings = FacadeSettings()
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
