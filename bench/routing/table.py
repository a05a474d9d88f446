"""Per-run numbers, medians over the repetitions, and the Markdown table."""

from __future__ import annotations

import statistics
from collections import Counter
from dataclasses import dataclass

from bench.routing.load import RunResult, cost_micro_usd
from bench.routing.pool import POOL


@dataclass(frozen=True)
class RunStats:
    tokens_per_second: float  # generated tokens per second of the run
    mean_ttft_ms: float
    p99_ttft_ms: float
    error_rate: float  # requests that failed at the client
    cost_per_1k_tokens_usd: float  # per 1,000 tokens, prompt and completion
    retried: float  # share of requests served on a second or later attempt
    shares: Counter[str]  # node -> requests served


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


def run_stats(run: RunResult) -> RunStats:
    served = [r for r in run.results if r.error is None]
    ttfts = [r.ttft * 1000 for r in served if r.ttft is not None]
    generated = sum(r.completion_tokens for r in served)
    tokens = sum(r.prompt_tokens + r.completion_tokens for r in served)
    cost = sum(cost_micro_usd(r) for r in served)
    return RunStats(
        tokens_per_second=generated / run.elapsed if run.elapsed > 0 else 0.0,
        mean_ttft_ms=statistics.fmean(ttfts) if ttfts else float("nan"),
        p99_ttft_ms=_percentile(ttfts, 0.99),
        error_rate=1 - len(served) / len(run.results) if run.results else 0.0,
        cost_per_1k_tokens_usd=cost / tokens * 1000 / 1_000_000 if tokens else 0.0,
        retried=sum(1 for r in served if r.attempts > 1) / len(served) if served else 0.0,
        shares=Counter(r.node for r in served),
    )


COLUMNS = (
    ("throughput (tok/s)", "tokens_per_second", "{:,.0f}"),
    ("mean TTFT (ms)", "mean_ttft_ms", "{:,.0f}"),
    ("p99 TTFT (ms)", "p99_ttft_ms", "{:,.0f}"),
    ("errors", "error_rate", "{:.1%}"),
    ("cost per 1k tokens (USD)", "cost_per_1k_tokens_usd", "{:.5f}"),
    ("retried", "retried", "{:.1%}"),
)


def medians(runs: list[RunStats]) -> dict[str, float]:
    return {attr: statistics.median(getattr(r, attr) for r in runs) for _, attr, _ in COLUMNS}


def markdown(by_strategy: dict[str, list[RunStats]], header: str) -> str:
    lines = [header, "", "| strategy | " + " | ".join(title for title, _, _ in COLUMNS) + " | requests per node |"]
    lines.append("|---|" + "---:|" * len(COLUMNS) + "---|")
    for strategy, runs in by_strategy.items():
        values = medians(runs)
        shares: Counter[str] = Counter()
        for run in runs:
            shares.update(run.shares)
        total = sum(shares.values()) or 1
        mix = ", ".join(f"{node.node_id} {shares[node.node_id] / total:.0%}" for node in POOL)
        cells = [fmt.format(values[attr]) for _, attr, fmt in COLUMNS]
        lines.append(f"| {strategy} | " + " | ".join(cells) + f" | {mix} |")
    return "\n".join(lines) + "\n"
