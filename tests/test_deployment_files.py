"""docker-compose.yaml and the Dockerfile, checked statically (no Docker engine runs here)."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
import yaml

from atoma_proxy.cli import build_parser
from atoma_proxy.config import Settings

ROOT = Path(__file__).resolve().parents[1]
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yaml").read_text())
PROXY_SERVICES = [name for name, svc in COMPOSE["services"].items() if svc.get("image") == "atoma-proxy:local"]


def test_every_dependency_is_a_service() -> None:
    for name, service in COMPOSE["services"].items():
        for dependency in service.get("depends_on", {}):
            assert dependency in COMPOSE["services"], f"{name} depends on unknown {dependency}"


@pytest.mark.parametrize("name", PROXY_SERVICES)
def test_proxy_commands_parse(name: str) -> None:
    command = COMPOSE["services"][name]["command"]
    args = build_parser().parse_args(command)
    assert callable(args.run)


@pytest.mark.parametrize("name", PROXY_SERVICES)
def test_proxy_environment_names_real_settings(name: str) -> None:
    fields = Settings.model_fields
    for variable in COMPOSE["services"][name].get("environment") or {}:
        if variable == "ATOMA_CONFIG":
            continue
        section, _, key = variable.removeprefix("ATOMA_").lower().partition("__")
        assert section in fields, variable
        assert key in fields[section].annotation.model_fields, variable


def test_deploy_config_is_valid_and_matches_services(monkeypatch: pytest.MonkeyPatch) -> None:
    path = ROOT / "deploy" / "config.toml"
    monkeypatch.setenv("ATOMA_CONFIG", str(path))
    settings = Settings()
    assert settings.nodes
    for node in settings.nodes:
        host = node.url.split("//")[1].split(":")[0]
        assert host in COMPOSE["services"], f"{node.id} points at {host}, which is not a service"
    assert tomllib.loads(path.read_text())


def test_published_ports_match_settings() -> None:
    facade = COMPOSE["services"]["facade"]
    assert f"{facade['environment']['ATOMA_FACADE__PORT']}:8080" in facade["ports"]
    core_listen = COMPOSE["services"]["core"]["environment"]["ATOMA_CORE__LISTEN"]
    assert f"{core_listen.rsplit(':', 1)[1]}:50051" in COMPOSE["services"]["core"]["ports"]
    assert facade["environment"]["ATOMA_FACADE__CORE_TARGET"] == "core:50051"


def test_dockerfile_installs_the_package_and_the_entry_point() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    for copied in ("src", "generated", "pyproject.toml"):
        assert f"COPY {copied}" in dockerfile or copied in dockerfile.split("COPY", 1)[1]
    assert 'ENTRYPOINT ["atoma-proxy"]' in dockerfile
