"""The Python clients join the application's trace when it installed a tracer provider."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_client_calls_join_the_applications_trace_through_the_core() -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    result = subprocess.run(
        [sys.executable, "-m", "tests.telemetry.client_trace_script"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["answered"]
    spans = report["spans"]
    app = next(s for s in spans if s["name"] == "app work")
    rpc = "/atoma.routing.v1.RoutingService/ChatCompletion"
    in_trace = [(s["name"], s["kind"]) for s in spans if s["trace"] == app["trace"]]
    assert in_trace.count((rpc, "CLIENT")) == 2  # the client's two calls
    assert in_trace.count((rpc, "SERVER")) == 2  # the core continued the trace
    assert ("node sim-1", "CLIENT") in in_trace
