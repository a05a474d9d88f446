"""docker-compose.yaml, the Dockerfile and deploy/, checked statically (no Docker engine runs here)."""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import REGISTRY, CollectorRegistry
from pydantic import BaseModel

from atoma_proxy.cli import build_parser
from atoma_proxy.config import NodeConfig, Settings
from atoma_proxy.core.nodes.registry import Node, NodeRegistry
from atoma_proxy.core.telemetry import metrics
from atoma_proxy.core.telemetry.node_metrics import node_collector

ROOT = Path(__file__).resolve().parents[1]
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yaml").read_text())
SERVICES: dict[str, Any] = COMPOSE["services"]
PROXY_SERVICES = [name for name, svc in SERVICES.items() if svc.get("image") == "atoma-proxy:local"]
CORES = [name for name in PROXY_SERVICES if SERVICES[name]["command"][0] == "core"]
PROFILES = ("local", "cloud")
DASHBOARD = ROOT / "deploy" / "grafana" / "dashboards" / "atoma-proxy.json"
PROM_QL_WORDS = {"sum", "by", "rate", "increase", "histogram_quantile", "max", "avg", "le", "or", "without"}


def _active(profile: str) -> dict[str, Any]:
    """The services `docker compose --profile PROFILE up` starts."""
    return {name: svc for name, svc in SERVICES.items() if profile in svc.get("profiles", [profile])}


def test_every_dependency_is_a_service_and_required_ones_are_active() -> None:
    for profile in PROFILES:
        active = _active(profile)
        for name, service in active.items():
            for dependency, condition in (service.get("depends_on") or {}).items():
                assert dependency in SERVICES, f"{name} depends on unknown {dependency}"
                if condition.get("required", True):
                    assert dependency in active, f"{profile}: {name} needs {dependency}, which is not started"


def test_each_profile_runs_the_whole_deployment() -> None:
    for profile in PROFILES:
        active = _active(profile)
        for needed in ("postgres", "redis", "migrate", "facade", "otel-collector", "prometheus", "grafana"):
            assert needed in active, (profile, needed)
        cores = [name for name in active if name in CORES]
        assert len(cores) == 1, (profile, cores)
        core = active[cores[0]]
        assert core["deploy"]["replicas"] == 3
        assert "core" in core["networks"]["default"]["aliases"]  # what the facade and Prometheus resolve
    assert {name for name in _active("local") if name.startswith("node-")} == {"node-a", "node-b"}
    assert not [name for name in _active("cloud") if name.startswith("node-")]


@pytest.mark.parametrize("name", PROXY_SERVICES)
def test_proxy_commands_parse(name: str) -> None:
    command = SERVICES[name]["command"]
    args = build_parser().parse_args(command)
    assert callable(args.run)


@pytest.mark.parametrize("name", PROXY_SERVICES)
def test_proxy_environment_names_real_settings(name: str) -> None:
    fields = Settings.model_fields
    for variable in SERVICES[name].get("environment") or {}:
        if variable == "ATOMA_CONFIG":
            continue
        section, _, key = variable.removeprefix("ATOMA_").lower().partition("__")
        assert section in fields, variable
        assert key in fields[section].annotation.model_fields, variable


def _unknown_keys(values: dict[str, Any], model: type[BaseModel], where: str = "") -> list[str]:
    """Keys of a TOML table the settings model does not have (nested models ignore them silently)."""
    unknown = []
    for key, value in values.items():
        field = model.model_fields.get(key)
        if field is None:
            unknown.append(where + key)
            continue
        annotation = field.annotation
        item = getattr(annotation, "__args__", (None,))[0]
        if isinstance(value, dict) and isinstance(annotation, type) and issubclass(annotation, BaseModel):
            unknown += _unknown_keys(value, annotation, f"{where}{key}.")
        elif isinstance(value, list) and isinstance(item, type) and issubclass(item, BaseModel):
            for index, entry in enumerate(value):
                unknown += _unknown_keys(entry, item, f"{where}{key}[{index}].")
    return unknown


@pytest.mark.parametrize("name", ["config.toml", "config.cloud.toml"])
def test_deploy_configs_are_valid_and_use_only_real_keys(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    path = ROOT / "deploy" / name
    assert _unknown_keys(tomllib.loads(path.read_text()), Settings) == []
    monkeypatch.setenv("ATOMA_CONFIG", str(path))
    Settings()  # parses and validates


def test_local_nodes_are_services_of_the_local_profile(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ATOMA_CONFIG", str(ROOT / "deploy" / "config.toml"))
    settings = Settings()
    assert settings.nodes
    for node in settings.nodes:
        host = node.url.split("//")[1].split(":")[0]
        assert host in _active("local"), f"{node.id} points at {host}, which is not a service"


def test_every_mounted_file_exists() -> None:
    for name, service in SERVICES.items():
        for volume in service.get("volumes") or []:
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (ROOT / source).exists(), f"{name} mounts {source}, which does not exist"
    mounted = {v.split(":")[1]: v.split(":")[0] for s in CORES for v in SERVICES[s]["volumes"]}
    for core in CORES:
        config = SERVICES[core]["environment"]["ATOMA_CONFIG"]
        assert config in mounted, f"{core}: ATOMA_CONFIG {config} is not mounted"


def test_ports_and_targets_match_settings() -> None:
    facade = SERVICES["facade"]
    environment = facade["environment"]
    assert f"{environment['ATOMA_FACADE__PORT']}:8080" in facade["ports"]
    assert environment["ATOMA_FACADE__CORE_TARGET"] == "dns:///core:50051"
    for core in CORES:
        env = SERVICES[core]["environment"]
        assert env["ATOMA_CORE__LISTEN"].endswith(":50051")
        assert env["ATOMA_TELEMETRY__OTLP_ENDPOINT"] == "http://otel-collector:4317"
    prometheus = yaml.safe_load((ROOT / "deploy" / "prometheus.yml").read_text())
    jobs = {job["job_name"]: job for job in prometheus["scrape_configs"]}
    assert jobs["atoma-facade"]["static_configs"][0]["targets"] == [f"facade:{environment['ATOMA_FACADE__PORT']}"]
    core_sd = jobs["atoma-core"]["dns_sd_configs"][0]
    for core in CORES:
        assert SERVICES[core]["environment"]["ATOMA_CORE__METRICS_LISTEN"] == f"0.0.0.0:{core_sd['port']}"
        assert core_sd["names"] == ["core"]
    collector = yaml.safe_load((ROOT / "deploy" / "otel-collector.yaml").read_text())
    assert collector["receivers"]["otlp"]["protocols"]["grpc"]["endpoint"].endswith(":4317")
    pipeline = collector["service"]["pipelines"]["traces"]
    for kind in ("receivers", "processors", "exporters"):
        assert all(part in collector[kind] for part in pipeline[kind]), kind


def test_grafana_provisioning_points_at_the_dashboard_and_prometheus() -> None:
    grafana = SERVICES["grafana"]
    mounts = dict(v.split(":")[:2] for v in grafana["volumes"])
    providers = yaml.safe_load((ROOT / "deploy/grafana/provisioning/dashboards/atoma.yaml").read_text())["providers"]
    path = providers[0]["options"]["path"]
    assert mounts["./deploy/grafana/dashboards"] == path
    sources = yaml.safe_load((ROOT / "deploy/grafana/provisioning/datasources/prometheus.yaml").read_text())
    source = sources["datasources"][0]
    assert source["url"] == "http://prometheus:9090" and "9090:9090" in SERVICES["prometheus"]["ports"]
    dashboard = json.loads(DASHBOARD.read_text())
    assert {t["datasource"]["uid"] for p in dashboard["panels"] for t in p["targets"]} == {source["uid"]}


def _exported_names() -> set[str]:
    """Every sample name the proxy's registries can export: the process's metrics and the node collector's."""
    registry = NodeRegistry([Node.from_config(NodeConfig(id="n", url="http://n:1", models=["m"]))])
    registry.nodes()[0].model_stats("m")
    own = CollectorRegistry()
    own.register(node_collector(registry, 0.5, lambda: 0.0))
    names: set[str] = set()
    for source in (REGISTRY, own):
        for family in source.collect():
            suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_count", "_sum")}.get(family.type, ("",))
            names |= {family.name + suffix for suffix in suffixes}
    return names


def test_the_dashboard_queries_only_exported_metrics() -> None:
    assert metrics.LATENCY is not None  # the module's metrics are registered
    exported = _exported_names()
    dashboard = json.loads(DASHBOARD.read_text())
    queried = set()
    for panel in dashboard["panels"]:
        for target in panel["targets"]:
            expression = re.sub(r"\{[^}]*\}|\[[^\]]*\]|\"[^\"]*\"", "", target["expr"])
            words = set(re.findall(r"[a-zA-Z_][a-zA-Z0-9_]*", expression)) - PROM_QL_WORDS
            words -= {"kind", "reason", "model", "node", "outcome", "status", "route", "state"}  # `by` labels
            queried |= words
    assert queried, "the dashboard queries nothing"
    assert queried <= exported, f"not exported: {sorted(queried - exported)}"
    # And it shows what the issue asks for.
    for needed in (
        "atoma_node_breaker_state",
        "atoma_node_score",
        "atoma_node_healthy",
        "atoma_proxy_overhead_seconds_bucket",
    ):
        assert needed in queried


def test_dockerfile_installs_the_package_and_the_entry_point() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    for copied in ("src", "generated", "pyproject.toml"):
        assert f"COPY {copied}" in dockerfile or copied in dockerfile.split("COPY", 1)[1]
    assert 'ENTRYPOINT ["atoma-proxy"]' in dockerfile
    for line in dockerfile.splitlines():
        if line.startswith("COPY "):
            for source in line.split()[1:-1]:
                assert (ROOT / source).exists(), f"the Dockerfile copies {source}, which does not exist"
    for port in ("8080", "50051", "9464"):
        assert port in dockerfile.split("EXPOSE", 1)[1].splitlines()[0]


def test_dockerignore_keeps_the_build_context_small() -> None:
    ignored = [line for line in (ROOT / ".dockerignore").read_text().splitlines() if not line.startswith("#")]
    for entry in ("node_modules", "dist", ".venv", "build"):
        assert f"**/{entry}" in ignored, entry  # at any depth: src/clients/typescript/node_modules
    for needed in ("src", "generated", "pyproject.toml", "README.md"):
        assert needed not in ignored
