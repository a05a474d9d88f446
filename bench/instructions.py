"""Instructions per request: what the proxy's own processes execute, counted by valgrind (callgrind).

    .venv/bin/python -m bench.instructions                      # both topologies, both modes, c=1 and c=32
    .venv/bin/python -m bench.instructions --topologies one --modes nonstream --concurrency 32

CPU time per request on this shared VM moves by a third between runs of one day (README "Performance"); the
number of instructions a process executes for the same requests does not depend on who else uses the machine.
The proxy's server processes (`serve`, or `core` and `facade`) run under `valgrind --tool=callgrind` with
instrumentation off while they start and warm up, then on; the counters are zeroed, a fixed number of requests
is sent (`--requests`, by `--concurrency` callers, each waiting for its answer), and after `--settle` seconds (the
settlements that follow the answers are the cell's own) the instructions of every thread of every server process
(`callgrind_control -e Ir`) are divided by the requests. The node simulator,
PostgreSQL, Redis and the client run natively and are not counted. Same setup as `make bench`: every feature
on, PostgreSQL ledger, Redis rate limits, a zero-latency node, 16-token replies.

Under callgrind the proxy runs about 20 times slower than natively here, while the node, PostgreSQL and Redis
do not, and the proxy's own clocks keep wall time: a cache that expires every second natively (the API key
check) would expire every few dozen requests instead of every few hundred, and the periodic work (health
probes, metrics scrapes, the reservation sweeper) would fall on 20 times fewer requests each. `--dilation`
(20) stretches those intervals by as much (`DILATED`), so each request carries its native share of them.

The count moves a little between runs (how concurrent requests happen to share a ledger group or a Redis
pipeline, timers, the garbage collector), far less than CPU time: run it twice to see the spread. Under
callgrind everything in the proxy runs about 50 times slower, so the batching at c=32 is not exactly the
batching of a native run. Results: stdout, `bench/results/instructions.md` and `.json`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from bench import stacks

RESULTS = Path(__file__).resolve().parent / "results"
# The settings whose wall-clock intervals decide how much periodic or cached work a request carries, at their defaults.
DILATED = {
    "ATOMA_CORE__API_KEY_CACHE_TTL": 1.0,
    "ATOMA_CORE__HEALTH_INTERVAL": 5.0,
    "ATOMA_LEDGER__PRICE_CACHE_TTL": 5.0,
    "ATOMA_LEDGER__SWEEP_INTERVAL": 5.0,
    "ATOMA_ROUTING__METRICS_INTERVAL": 2.0,
}
_TOTALS = re.compile(r"^\s*Th\s+\d+\s+([\d,]+)\s*$", re.MULTILINE)


def _callgrind(action: list[str], pid: int) -> str:
    done = subprocess.run(["callgrind_control", *action, str(pid)], capture_output=True, text=True, timeout=120)
    if done.returncode != 0:
        raise RuntimeError(f"callgrind_control {' '.join(action)} {pid}: {done.stderr or done.stdout}")
    return done.stdout


def instructions(pid: int) -> int:
    """The instructions counted so far in every thread of the callgrind process `pid`."""
    return parse_totals(_callgrind(["-e", "Ir"], pid))


def parse_totals(report: str) -> int:
    """The sum of the per-thread `Ir` totals in what `callgrind_control -e Ir` printed."""
    return sum(int(count.replace(",", "")) for count in _TOTALS.findall(report))


def chat_body(stream: bool) -> dict[str, Any]:
    body: dict[str, Any] = {"model": stacks.MODEL, "messages": [{"role": "user", "content": "hello"}], "max_tokens": 16}
    if stream:
        body |= {"stream": True, "stream_options": {"include_usage": True}}
    return body


async def send(stack: stacks.Stack, requests: int, concurrency: int, stream: bool) -> None:
    """`requests` chat requests by `concurrency` callers; each answer read to its end and checked."""
    body = chat_body(stream)
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    headers = {"authorization": f"Bearer {stack.api_key}"}
    async with httpx.AsyncClient(base_url=stack.base_url, headers=headers, timeout=600, limits=limits) as http:

        async def caller(count: int) -> None:
            for _ in range(count):
                response = await http.post("/v1/chat/completions", json=body)
                if response.status_code != 200 or (stream and not response.text.rstrip().endswith("[DONE]")):
                    raise RuntimeError(f"request failed: {response.status_code} {response.text[:300]}")

        share, extra = divmod(requests, concurrency)
        await asyncio.gather(*(caller(share + (i < extra)) for i in range(concurrency)))


def measure_topology(
    topology: str, node_url: str, work: Path, args: argparse.Namespace, database_url: str | None
) -> tuple[list[dict[str, Any]], str]:
    launcher = ["valgrind", "--tool=callgrind", "--instr-atstart=no", f"--callgrind-out-file={work}/callgrind.%p.out"]
    started = time.monotonic()
    dilated = {name: repr(seconds * args.dilation) for name, seconds in DILATED.items()}
    stack, database_url = stacks.atoma_stack(
        node_url, work, dilated, one_process=topology == "one", database_url=database_url, launcher=launcher
    )
    rows: list[dict[str, Any]] = []
    try:
        log(f"{stack.label} up under callgrind in {time.monotonic() - started:.0f} s")
        for mode in args.modes:  # warm-up without instrumentation, then with (valgrind translates the code once)
            asyncio.run(send(stack, 64, 32, mode == "stream"))
        for process in stack.processes:
            _callgrind(["-i", "on"], process.pid)
        for mode in args.modes:
            asyncio.run(send(stack, 32, 32, mode == "stream"))
        for mode in args.modes:
            for concurrency in args.concurrency:
                for process in stack.processes:
                    _callgrind(["-z"], process.pid)
                began = time.monotonic()
                asyncio.run(send(stack, args.requests, concurrency, mode == "stream"))
                time.sleep(args.settle)  # the settlements after the answers (README "Metering") belong to this cell
                counts = {process.name: instructions(process.pid) for process in stack.processes}
                row = {
                    "topology": topology,
                    "label": stack.label,
                    "mode": mode,
                    "concurrency": concurrency,
                    "requests": args.requests,
                    "instructions_per_request": {name: round(count / args.requests) for name, count in counts.items()},
                    "total_per_request": round(sum(counts.values()) / args.requests),
                    "seconds": round(time.monotonic() - began, 1),
                }
                rows.append(row)
                log(f"{stack.label} {mode} c={concurrency}: {_per_request(row)} ({row['seconds']} s)")
    finally:
        stack.stop()
    return rows, database_url


def _per_request(row: dict[str, Any]) -> str:
    parts = [f"{name} {count / 1e6:.2f}M" for name, count in row["instructions_per_request"].items()]
    total = f" = {row['total_per_request'] / 1e6:.2f}M" if len(parts) > 1 else ""
    return " + ".join(parts) + total + " instructions per request"


def render(rows: list[dict[str, Any]], meta: dict[str, Any]) -> str:
    lines = [
        "# Instructions per request (callgrind)",
        "",
        f"- date: {meta['date']}; git {meta['git']}; command: `{meta['command']}`",
        f"- {meta['requests']} requests per cell after a warm-up; the proxy's server processes only (node, PostgreSQL,"
        " Redis and client not counted); every feature on, as `make bench`; wall-clock intervals (cache TTLs, health"
        f" probes, metrics scrapes, the sweeper) x{meta['dilation']:g}",
        "",
        "| topology | mode | concurrency | instructions per request (millions) |",
        "|---|---|---:|---|",
    ]
    for row in rows:
        lines.append(f"| {row['label']} | {row['mode']} | {row['concurrency']} | {_per_request(row)} |")
    return "\n".join(lines) + "\n"


def log(message: str) -> None:
    print(f"[instructions] {message}", file=sys.stderr, flush=True)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.instructions", description=__doc__.splitlines()[0])
    parser.add_argument("--topologies", default="one,split", help="one (serve), split (core + facade)")
    parser.add_argument("--modes", default="nonstream,stream")
    parser.add_argument("--concurrency", default="1,32", help="callers, comma-separated")
    parser.add_argument("--requests", type=int, default=320, help="requests counted per cell")
    parser.add_argument(
        "--settle", type=float, default=3.0, help="seconds waited after a cell's last answer before counting"
    )
    parser.add_argument("--dilation", type=float, default=20.0, help="factor on the wall-clock intervals (DILATED)")
    parser.add_argument("--results", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    args.topologies = args.topologies.split(",")
    args.modes = args.modes.split(",")
    args.concurrency = [int(c) for c in args.concurrency.split(",")]
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if shutil.which("valgrind") is None or shutil.which("callgrind_control") is None:
        raise SystemExit("valgrind is not installed (apt-get install valgrind)")
    work = Path(tempfile.mkdtemp(prefix="atoma-instructions-"))
    node = stacks.start_node(work)
    rows: list[dict[str, Any]] = []
    database_url: str | None = None
    try:
        for topology in args.topologies:
            measured, database_url = measure_topology(topology, node.url, work, args, database_url)
            rows += measured
    finally:
        node.stop()
    git = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    dirty = subprocess.run(["git", "status", "--porcelain", "src"], capture_output=True, text=True).stdout.strip()
    meta = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "git": git + (" (src modified)" if dirty else ""),
        "command": "python -m bench.instructions " + " ".join(sys.argv[1:] if argv is None else argv),
        "requests": args.requests,
        "dilation": args.dilation,
    }
    text = render(rows, meta)
    print(text)
    args.results.mkdir(parents=True, exist_ok=True)
    (args.results / "instructions.md").write_text(text)
    (args.results / "instructions.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
