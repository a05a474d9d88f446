"""`python -m bench.routing`: round_robin, cheapest and balanced on one pool, interleaved, medians."""

from __future__ import annotations

import argparse
import asyncio
import datetime
import os
import platform
from pathlib import Path

from bench.routing.load import LoadSpec, run_load
from bench.routing.pool import POOL, Core, Pool
from bench.routing.table import RunStats, markdown, run_stats

STRATEGIES = ("round_robin", "cheapest", "balanced")
RESULTS = Path(__file__).resolve().parent.parent / "results" / "routing.md"


def _header(spec: LoadSpec, repeats: int) -> str:
    nodes = "; ".join(
        f"{n.node_id} (TTFT {n.ttft_ms:.0f} ms, {n.tokens_per_second:.0f} tok/s, "
        f"capacity {n.max_concurrency or 'unlimited'}, errors {n.error_rate:.0%}, "
        f"{n.input_price:,}/{n.output_price:,} µUSD per M in/out)"
        for n in POOL
    )
    today = datetime.date.today().isoformat()
    return (
        f"## Routing strategies, {today} ({platform.machine()}, {os.cpu_count()} CPUs)\n\n"
        f"`python -m bench.routing --repeats {repeats} --requests {spec.requests} "
        f"--concurrency {spec.concurrency} --tokens {spec.tokens}`: medians of {repeats} runs per strategy, "
        f"each run a fresh core; {spec.requests} streamed requests of {spec.tokens} tokens at concurrency "
        f"{spec.concurrency} after {spec.warmup} warm-up requests.\n\nPool: {nodes}."
    )


async def _main(args: argparse.Namespace) -> None:
    spec = LoadSpec(concurrency=args.concurrency, requests=args.requests, warmup=args.concurrency, tokens=args.tokens)
    pool = Pool()
    pool.start()
    try:
        key = pool.api_key()
        stats: dict[str, list[RunStats]] = {s: [] for s in STRATEGIES}
        for repeat in range(args.repeats):
            for strategy in STRATEGIES:  # interleaved, so drift hits every strategy alike
                core = Core(pool, strategy)
                try:
                    await core.wait_ready()
                    run = await run_load(core.target, key, spec, strategy)
                finally:
                    core.stop()
                stats[strategy].append(run_stats(run))
                print(f"run {repeat + 1}/{args.repeats} {strategy}: {stats[strategy][-1]}", flush=True)
    finally:
        pool.stop()
    table = markdown(stats, _header(spec, args.repeats))
    print()
    print(table)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(table)
    print(f"written to {RESULTS}")


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.routing", description=__doc__)
    parser.add_argument("--repeats", type=int, default=3, help="runs per strategy (default 3)")
    parser.add_argument("--requests", type=int, default=240, help="measured requests per run (default 240)")
    parser.add_argument("--concurrency", type=int, default=24, help="requests in flight (default 24)")
    parser.add_argument("--tokens", type=int, default=64, help="tokens per reply (default 64)")
    asyncio.run(_main(parser.parse_args()))


if __name__ == "__main__":
    main()
