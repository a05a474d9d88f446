"""Turning the raw runs into medians, the issue's target checks and a Markdown report.

Every run of a (mode, concurrency, stack) cell is repeated; the report shows the median over the
repeats of each number (throughput, p50, p99, TTFT), the largest peak RSS seen in any repeat, and the
differences against the `direct` column of the same cell ("added" latency). The raw runs go to the
JSON file next to the Markdown one, so any other statistic can be recomputed.
"""

from __future__ import annotations

import json
import statistics
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

MODES = ("nonstream", "stream")
MODE_TITLES = {"nonstream": "Non-streaming", "stream": "Streaming (stream_options.include_usage)"}
STACK_ORDER = ("direct", "atoma1", "atoma", "litellm1", "litellm")
# Each atoma-proxy topology and the LiteLLM column of as many processes it is compared with.
TOPOLOGY_PAIRS = (("atoma1", "litellm1"), ("atoma", "litellm"))

# The targets.
TARGET_VS_LITELLM = 10.0  # x LiteLLM's throughput at concurrency 32
TARGET_VS_DIRECT = 1 / 3  # of the node's direct throughput at concurrency 32
TARGET_ADDED_P50_MS = 2.0  # at concurrency 1
TARGET_ADDED_P99_MS = 5.0
TARGET_ADDED_TTFT_P50_MS = 2.0
TARGET_PEAK_RSS_MB = 200.0  # per process, 256 concurrent streams
TARGET_CPU_MS = {"nonstream": 1.0, "stream": 1.5}  # the proxy's own CPU per request, all its processes, c=32


def _median(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def _diff(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else a - b


def aggregate(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per (mode, concurrency, stack): medians over repeats, max peak memory, added latency."""
    cells: dict[tuple[str, int, str], list[dict[str, Any]]] = {}
    for run in runs:
        cells.setdefault((run["mode"], run["concurrency"], run["stack"]), []).append(run)
    rows: dict[tuple[str, int, str], dict[str, Any]] = {}
    for (mode, concurrency, stack), group in cells.items():
        load = [r["load"] for r in group]
        errors: dict[str, int] = {}
        for item in load:
            for kind, count in item["errors"].items():
                errors[kind] = errors.get(kind, 0) + count
        servers: dict[str, dict[str, Any]] = {}
        for name in group[0]["servers"]:
            peaks = [r["servers"][name]["peak_rss_mb"] for r in group]
            cpus = [r["servers"][name]["cpu_util"] for r in group]
            # CPU per request depends far less on other tenants of the machine than req/s does.
            per_request = [
                r["servers"][name]["cpu_util"] * r["load"]["window_s"] * 1000 / r["load"]["ok"]
                if r["load"]["ok"]
                else None
                for r in group
            ]
            servers[name] = {
                "peak_rss_mb": max(peaks),
                "cpu_util": _median(cpus),
                "cpu_ms_per_request": _median(per_request),
            }
        rows[(mode, concurrency, stack)] = {
            "mode": mode,
            "concurrency": concurrency,
            "stack": stack,
            "repeats": len(group),
            "rps": _median([x["rps"] for x in load]),
            "rps_all": [x["rps"] for x in load],
            "p50_ms": _median([x["p50_ms"] for x in load]),
            "p99_ms": _median([x["p99_ms"] for x in load]),
            "ttft_p50_ms": _median([x["ttft_p50_ms"] for x in load]),
            "ttft_p99_ms": _median([x["ttft_p99_ms"] for x in load]),
            "ok": sum(x["ok"] for x in load),
            "errors": errors,
            "client_cpu_util": _median([x["client_cpu_util"] for x in load]),
            "servers": servers,
            "peak_rss_total_mb": sum(s["peak_rss_mb"] for s in servers.values()),
        }
    for (mode, concurrency, stack), row in rows.items():
        base = rows.get((mode, concurrency, "direct"))
        if base is None or stack == "direct":
            continue
        row["added_p50_ms"] = _diff(row["p50_ms"], base["p50_ms"])
        row["added_p99_ms"] = _diff(row["p99_ms"], base["p99_ms"])
        row["added_ttft_p50_ms"] = _diff(row["ttft_p50_ms"], base["ttft_p50_ms"])
        row["vs_direct"] = row["rps"] / base["rps"] if row["rps"] and base["rps"] else None
    order = {name: i for i, name in enumerate(STACK_ORDER)}
    return sorted(rows.values(), key=lambda r: (MODES.index(r["mode"]), r["concurrency"], order.get(r["stack"], 99)))


@dataclass
class Check:
    name: str
    status: str  # PASS | MISS | N/A
    detail: str

    def line(self) -> str:
        return f"- **{self.status}** {self.name}: {self.detail}"


def _find(rows: list[dict[str, Any]], mode: str, concurrency: int, stack: str) -> dict[str, Any] | None:
    for row in rows:
        if (row["mode"], row["concurrency"], row["stack"]) == (mode, concurrency, stack):
            return row
    return None


def _status(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def _fmt(value: float | None, digits: int = 1) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def target_checks(rows: list[dict[str, Any]], skipped: dict[str, str]) -> list[Check]:
    """The issue's targets for each topology measured, each PASS, MISS or N/A (with the numbers)."""
    checks: list[Check] = []
    for atoma_key, litellm_key in TOPOLOGY_PAIRS:
        if any(row["stack"] == atoma_key for row in rows):
            checks += _topology_checks(rows, skipped, atoma_key, litellm_key)
    return checks


def _topology_checks(rows: list[dict[str, Any]], skipped: dict[str, str], key: str, peer: str) -> list[Check]:
    checks: list[Check] = []
    prefix = f"[{key}] "
    for mode in MODES:
        atoma, litellm, direct = (_find(rows, mode, 32, s) for s in (key, peer, "direct"))
        name = f"{prefix}{mode} throughput at c=32 >= {TARGET_VS_LITELLM:.0f}x LiteLLM ({peer}, as many processes)"
        if atoma is None or litellm is None or not atoma["rps"] or not litellm["rps"]:
            reason = skipped.get("litellm", "not measured")
            checks.append(Check(name, "N/A", f"LiteLLM column missing ({reason})"))
        else:
            ratio = atoma["rps"] / litellm["rps"]
            detail = f"{atoma['rps']:.0f} vs {litellm['rps']:.1f} req/s = {ratio:.1f}x"
            checks.append(Check(name, _status(ratio >= TARGET_VS_LITELLM), detail))
        name = f"{prefix}{mode} throughput at c=32 >= 1/3 of the node direct"
        if atoma is None or direct is None or not direct["rps"]:
            checks.append(Check(name, "N/A", "not measured"))
        else:
            share = (atoma["rps"] or 0) / direct["rps"]
            detail = f"{atoma['rps']:.0f} vs {direct['rps']:.0f} req/s = {share:.2f} of direct"
            checks.append(Check(name, _status(share >= TARGET_VS_DIRECT), detail))
        name = f"{prefix}{mode} proxy CPU at c=32 <= {TARGET_CPU_MS[mode]:g} ms per request (all its processes)"
        per_request = None if atoma is None else [s["cpu_ms_per_request"] for s in atoma["servers"].values()]
        if not per_request or any(value is None for value in per_request):
            checks.append(Check(name, "N/A", "not measured"))
        else:
            total = sum(per_request)
            checks.append(Check(name, _status(total <= TARGET_CPU_MS[mode]), f"{total:.2f} ms"))
    for mode in MODES:
        atoma = _find(rows, mode, 1, key)
        for field_name, target in (("added_p50_ms", TARGET_ADDED_P50_MS), ("added_p99_ms", TARGET_ADDED_P99_MS)):
            label = field_name.removeprefix("added_").removesuffix("_ms")
            name = f"{prefix}{mode} added latency at c=1 {label} <= {target:g} ms"
            value = None if atoma is None else atoma.get(field_name)
            if value is None:
                checks.append(Check(name, "N/A", "not measured"))
            else:
                checks.append(Check(name, _status(value <= target), f"+{value:.2f} ms"))
    atoma = _find(rows, "stream", 1, key)
    name = f"{prefix}stream added TTFT p50 at c=1 <= {TARGET_ADDED_TTFT_P50_MS:g} ms"
    value = None if atoma is None else atoma.get("added_ttft_p50_ms")
    if value is None:
        checks.append(Check(name, "N/A", "not measured"))
    else:
        checks.append(Check(name, _status(value <= TARGET_ADDED_TTFT_P50_MS), f"+{value:.2f} ms"))
    atoma = _find(rows, "stream", 256, key)
    name = f"{prefix}peak RSS at 256 concurrent streams <= {TARGET_PEAK_RSS_MB:g} MB per process"
    if atoma is None:
        checks.append(Check(name, "N/A", "not measured"))
    else:
        peaks = {n: s["peak_rss_mb"] for n, s in atoma["servers"].items()}
        worst = max(peaks.values())
        detail = ", ".join(f"{n} {v:.0f} MB" for n, v in peaks.items()) + f" (sum {sum(peaks.values()):.0f} MB)"
        checks.append(Check(name, _status(worst <= TARGET_PEAK_RSS_MB), detail))
    return checks


def _errors_text(errors: dict[str, int]) -> str:
    return ", ".join(f"{k} {v}" for k, v in sorted(errors.items())) if errors else "0"


def _servers_text(servers: dict[str, dict[str, Any]], key: str, fmt: str) -> str:
    parts = [f"{name} {fmt.format(s[key])}" for name, s in servers.items() if s[key] is not None]
    return " + ".join(parts) if parts else "n/a"


def _signed(value: float | None, digits: int = 2) -> str:
    return "" if value is None else f"{value:+.{digits}f}"


def markdown_table(rows: list[dict[str, Any]], labels: dict[str, str], mode: str) -> str:
    header = (
        "| conc | stack | req/s | x direct | p50 ms | p99 ms | added p50 | added p99 "
        + ("| TTFT p50 | added TTFT p50 " if mode == "stream" else "")
        + "| peak RSS MB | server CPU | CPU ms/req | client CPU | errors |"
    )
    lines = [header, "|" + "---|" * (header.count("|") - 1)]
    for row in rows:
        if row["mode"] != mode:
            continue
        servers = row["servers"]
        peak = _servers_text(servers, "peak_rss_mb", "{:.0f}")
        if len(servers) > 1:
            peak += f" = {row['peak_rss_total_mb']:.0f}"
        cells = [
            str(row["concurrency"]),
            labels.get(row["stack"], row["stack"]),
            _fmt(row["rps"], 1),
            _fmt(row.get("vs_direct"), 2) if row["stack"] != "direct" else "1",
            _fmt(row["p50_ms"], 2),
            _fmt(row["p99_ms"], 2),
            _signed(row.get("added_p50_ms")),
            _signed(row.get("added_p99_ms")),
        ]
        if mode == "stream":
            cells += [_fmt(row["ttft_p50_ms"], 2), _signed(row.get("added_ttft_p50_ms"))]
        cells += [
            peak,
            _servers_text(servers, "cpu_util", "{:.0%}"),
            _servers_text(servers, "cpu_ms_per_request", "{:.2f}"),
            _fmt(None if row["client_cpu_util"] is None else row["client_cpu_util"] * 100, 0) + "%",
            _errors_text(row["errors"]),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _background_line(results: dict[str, Any]) -> str:
    """How busy the machine was with processes that are not part of the bench (a shared machine)."""
    meta = results["meta"]
    other = [run["machine"]["other_cores"] for run in results["runs"] if "machine" in run]
    text = f"load average at start {meta.get('load_average_start', '?')}, at end {meta.get('load_average_end', '?')}"
    if other:
        text += (
            f"; CPU used by processes outside the bench during the windows: median {statistics.median(other):.2f},"
            f" max {max(other):.2f} cores of {meta['nproc']}"
        )
    return text


def _client_headroom(results: dict[str, Any]) -> str | None:
    """The fastest proxy cell next to what the client demonstrably drove against the node."""
    proxy = [row for row in results["rows"] if row["stack"] != "direct" and row["rps"]]
    direct = [row for row in results["rows"] if row["stack"] == "direct" and row["rps"]]
    if not proxy or not direct:
        return None
    best, fastest = max(proxy, key=lambda r: r["rps"]), max(direct, key=lambda r: r["rps"])
    ratio = fastest["rps"] / best["rps"]
    verdict = (
        "so the client did not limit the proxy columns"
        if ratio >= 2
        else "CAUTION: too close to say the client did not limit the proxy columns"
    )
    return (
        f"the fastest proxy cell ({best['stack']} {best['mode']} c={best['concurrency']}) ran at"
        f" {best['rps']:.0f} req/s; the same client drove the node at up to {fastest['rps']:.0f} req/s"
        f" ({fastest['mode']} c={fastest['concurrency']}), {ratio:.1f}x more, {verdict}"
    )


def render_markdown(results: dict[str, Any]) -> str:
    meta = results["meta"]
    rows = results["rows"]
    labels = {key: stack["label"] for key, stack in results["stacks"].items()}
    out = [
        "# atoma-proxy benchmark",
        "",
        f"- date: {meta['date']}",
        f"- command: `{meta['command']}`",
        f"- machine: {meta['nproc']} CPUs ({meta['cpu_model']}), {meta['memory_gb']:.0f} GiB, {meta['kernel']}",
        f"- Python {meta['python']}; git {meta['git_commit']}{' (work tree modified)' if meta['git_dirty'] else ''}",
        f"- per cell: {meta['repeats']} runs x {meta['duration']:g} s (+{meta['warmup']:g} s warm-up), columns"
        " interleaved; medians shown, peak RSS = max over runs; added = minus the `node direct` row",
        f"- client: bench/loadgen.py, {meta['event_loop']}, one keep-alive HTTP/1.1 connection per concurrent worker",
        f"- {_background_line(results)}",
        "",
        "## Stacks",
        "",
    ]
    for key, stack in results["stacks"].items():
        out.append(f"- **{stack['label']}** (`{key}`): processes {', '.join(stack['processes'])}")
        out += [f"  - on: {feature}" for feature in stack["features"]]
        out += [f"  - {note}" for note in stack["notes"]]
    for key, reason in results.get("skipped", {}).items():
        out.append(f"- **{key}**: SKIPPED — {reason}")
    for mode in MODES:
        if any(row["mode"] == mode for row in rows):
            out += ["", f"## {MODE_TITLES[mode]}", "", markdown_table(rows, labels, mode)]
    out += ["", "## Targets (issue 16; per topology, LiteLLM at as many processes)", ""]
    out += [check.line() for check in results["checks"]]
    check = results.get("client_check")
    if check:
        out += ["", "## Is the client the bottleneck?", ""]
        out += [f"- {line}" for line in check["lines"]]
        headroom = _client_headroom(results)
        if headroom:
            out.append(f"- {headroom}")
    db = results.get("database_rows")
    if db:
        out += ["", "## atoma-proxy database after the runs (rows per table)", ""]
        out.append("- " + ", ".join(f"{table} {count}" for table, count in sorted(db.items())))
    if results.get("warnings"):
        out += ["", "## Warnings", ""]
        out += [f"- {warning}" for warning in results["warnings"]]
    out += [
        "",
        "Columns: `req/s` completed requests per second in the window; `x direct` that over the node direct;"
        " p50/p99 end-to-end latency; TTFT = first SSE event with content; `peak RSS` VmHWM of each server"
        " process during the run (reset before it); `server CPU` each server's CPU use in the window (100% = a"
        " core); `CPU ms/req` that CPU time per completed request (less sensitive to other tenants of the machine"
        " than req/s); `client CPU` the load generator's.",
        "",
    ]
    return "\n".join(out)


def write(results: dict[str, Any], directory: Path) -> str:
    """Fill in rows and checks, write latest.md and latest.json; returns the Markdown."""
    results["rows"] = aggregate(results["runs"])
    checks = target_checks(results["rows"], results.get("skipped", {}))
    text = render_markdown({**results, "checks": checks})
    results["checks"] = [check.__dict__ for check in checks]
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "latest.json").write_text(json.dumps(results, indent=1, default=str) + "\n")
    (directory / "latest.md").write_text(text)
    return text


@dataclass
class FoldedProfile:
    """Sample counts of a py-spy `--format raw --threads` file."""

    total: int = 0
    threads: Counter[str] = field(default_factory=Counter)  # thread name -> samples
    own: Counter[str] = field(default_factory=Counter)  # leaf frame -> samples
    inclusive: Counter[str] = field(default_factory=Counter)  # frame anywhere on the stack -> samples


_TRUNK = ("(src/cli.py", "(src/runner.py", "(<frozen runpy>")


def read_folded(path: Path) -> FoldedProfile:
    profile = FoldedProfile()
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [f.strip() for f in stack.split(";") if f.strip()]
        if frames and frames[0].startswith("thread ("):
            profile.threads[frames[0].split(":", 1)[-1].strip()] += count
            frames = frames[1:]
        if not frames:
            continue
        profile.total += count
        profile.own[frames[-1]] += count
        for frame in set(frames):
            profile.inclusive[frame] += count
    return profile


def render_profile(profile: FoldedProfile, header: list[str], top: int = 30) -> str:
    """Self time, project-code inclusive time and overall inclusive time, as % of non-idle samples."""
    total = profile.total or 1

    def rows(items: list[tuple[str, int]]) -> list[str]:
        return [f"{count / total:7.1%}  {count:6d}  {frame}" for frame, count in items]

    project = [(f, c) for f, c in profile.inclusive.most_common() if "(src/" in f and not any(t in f for t in _TRUNK)]
    return "\n".join(
        [
            *header,
            f"# {profile.total} non-idle samples; by thread: "
            + ", ".join(f"{name} {count / total:.0%}" for name, count in profile.threads.most_common()),
            "",
            "## self time (leaf frame; C code is charged to the Python frame that called it)",
            *rows(profile.own.most_common(top)),
            "",
            "## inclusive time of the project's own functions (src/, outside the cli/runner trunk)",
            *rows(project[:top]),
            "",
            "## inclusive time, all frames",
            *rows(profile.inclusive.most_common(top)),
            "",
        ]
    )


def main() -> None:
    """Re-render latest.md from latest.json (e.g. after changing this module)."""
    directory = Path(__file__).resolve().parent / "results"
    results = json.loads((directory / "latest.json").read_text())
    print(write(results, directory))


if __name__ == "__main__":
    main()
