"""Smoke test of `python -m bench.confidential` with tiny settings: it runs against a real deployment (node
simulator, sidecar, core, facade on PostgreSQL) and writes a report with every expected row.

Structure only, never timing: the numbers are measured by the bench on a quiet machine, not asserted here.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from tests.support.databases import POSTGRES_ADMIN_URL

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def database_name() -> Iterator[str]:
    name = f"atoma_bench_conf_smoke_{uuid.uuid4().hex[:10]}"
    yield name
    with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as admin:
        admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def test_confidential_bench_writes_every_row(tmp_path: Path, database_name: str) -> None:
    command = [sys.executable, "-m", "bench.confidential", "--runs", "1", "--requests", "3"]
    command += ["--concurrency", "2", "--tokens", "3", "--iterations", "5", "--results", str(tmp_path)]
    env = {
        **os.environ,
        "BENCH_CONFIDENTIAL_DATABASE": database_name,
        "BENCH_POSTGRES_ADMIN_URL": POSTGRES_ADMIN_URL,
        "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""),
    }
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-4000:]

    text = (tmp_path / "confidential.md").read_text()
    for heading in ("## Primitives", "## End to end", "## Derived"):
        assert heading in text
    for operation in (
        "client: seal a request",
        "node: open a request",
        "node: seal a chunk",
        "client: open a chunk",
        "node: Ed25519 usage signature",
        "proxy: verify a usage signature",
    ):
        assert f"| {operation} |" in text
    for scenario in ("non-streamed", "streamed, 3 chunks", "streamed, 1 chunk"):
        for column in ("direct", "plain", "confidential"):
            assert f"| {scenario} | {column} |" in text
    for figure in (
        "confidentiality added per request, non-streamed p50",
        "confidentiality added per request, streamed (3 chunks) p50",
        "confidentiality added per chunk (stream of 3 vs 1, p50)",
        "proxy CPU per confidential request, non-streamed",
        "sidecar CPU per chunk (stream of 3 vs 1)",
    ):
        assert f"| {figure} |" in text

    results = json.loads((tmp_path / "confidential.json").read_text())
    rows = {(row["scenario"], row["column"]): row for row in results["rows"]}
    columns = ("direct", "plain", "confidential")
    assert set(rows) == {(s, c) for s in ("nonstream", "stream", "stream1") for c in columns}
    for (scenario, _column), row in rows.items():
        assert row["runs"] == 1
        assert row["p50_ms"] is not None and row["p50_ms"] <= row["p99_ms"]
        assert row["rps"] > 0
        if scenario == "nonstream":
            assert row["ttft_p50_ms"] is None
        else:  # every stream delivered content (the bench raises otherwise), so it has a first token
            assert row["ttft_p50_ms"] is not None and row["ttft_p50_ms"] <= row["p99_ms"]
    assert all(row["us"] > 0 for row in results["primitives"])
    assert all(value is not None for row in results["derived"] for key, value in row.items() if key != "what")
