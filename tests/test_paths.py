"""The data directory and the embedded database's default place (issue 14)."""

from __future__ import annotations

from pathlib import Path

import pytest

from atoma_proxy.config import Settings
from atoma_proxy.facade.cors import CorsPolicy
from atoma_proxy.paths import data_dir, default_database_url


def test_atoma_data_dir_wins(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("ATOMA_DATA_DIR", str(tmp_path / "d"))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    assert data_dir() == tmp_path / "d"
    assert default_database_url() == f"sqlite:///{tmp_path / 'd' / 'atoma-proxy.db'}"


def test_xdg_then_home(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("ATOMA_DATA_DIR", raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    assert data_dir() == tmp_path / "xdg" / "atoma-proxy"
    monkeypatch.delenv("XDG_DATA_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert data_dir() == tmp_path / "home" / ".local" / "share" / "atoma-proxy"


def test_default_database_is_in_the_data_directory_not_the_working_directory(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("ATOMA_DATA_DIR", str(tmp_path))
    monkeypatch.delenv("ATOMA_DATABASE__URL", raising=False)
    monkeypatch.delenv("ATOMA_CONFIG", raising=False)
    assert Settings().database.url == f"sqlite:///{tmp_path}/atoma-proxy.db"


def test_cors_policy() -> None:
    off = CorsPolicy([])
    assert off.allowed_origin([(b"origin", b"https://a.example")]) is None
    policy = CorsPolicy(["https://a.example/"])
    assert policy.allowed_origin([(b"origin", b"https://a.example")]) == b"https://a.example"
    assert policy.allowed_origin([(b"origin", b"https://b.example")]) is None
    assert policy.preflight(b"https://a.example", [(b"origin", b"https://a.example")]) is None  # not a preflight
    headers = dict(policy.preflight(b"https://a.example", [(b"access-control-request-method", b"POST")]) or [])
    assert headers[b"access-control-allow-origin"] == b"https://a.example"
    assert b"authorization" in headers[b"access-control-allow-headers"]
    assert CorsPolicy(["*"]).allowed_origin([(b"origin", b"https://any.example")]) == b"https://any.example"
