"""`make bench`: the node direct, atoma-proxy and LiteLLM side by side, under the same load.

    python -m bench.run                      # defaults: ~10-15 min on 2 cores, LiteLLM included
    python -m bench.run --duration 2 --repeats 1 --skip-litellm      # a quick look
    python -m bench.run --profile-only       # py-spy profiles of core and facade, c=32 streaming

Order of work: start one node simulator (the `direct` column and the upstream of the proxies),
atoma-proxy in both topologies (`atoma1`: one `serve` process whose facade calls the core
in-process; `atoma`: core + facade processes; PostgreSQL, features on) and LiteLLM at equal process
counts (`litellm1`: 1 worker; `litellm`: `--litellm-workers`, 2); check that the client is not the
bottleneck; then for every (mode, concurrency) cell run the columns interleaved `--repeats` times,
each run in a fresh load-generator process; then write bench/results/latest.md and latest.json.
See bench/README.md for the method.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import platform
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bench import report, stacks
from bench.litellm_env import LITELLM_VERSION, LiteLLMUnavailable, ensure_litellm

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
LAUNCH_DELAY = 0.25  # seconds between a ready load-generator process and its first request
PROFILE_RATE = 100  # py-spy samples per second


TOPOLOGIES = ("one", "split")


def log(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def machine_busy_seconds() -> float:
    """CPU-seconds the whole machine has spent busy (all CPUs; from the first line of /proc/stat)."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def load_average() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def _sleep_until(instant: float) -> None:
    delay = instant - time.perf_counter()
    if delay > 0:
        time.sleep(delay)


class RssSampler(threading.Thread):
    """Polls VmRSS of the server processes; the fallback when VmHWM cannot be reset."""

    def __init__(self, processes: list[stacks.ServerProcess], interval: float = 0.1) -> None:
        super().__init__(daemon=True)
        self.processes = processes
        self.interval = interval
        self.peaks = {p.name: 0.0 for p in processes}
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.is_set():
            for process in self.processes:
                self.peaks[process.name] = max(self.peaks[process.name], process.rss_mb())
            self._halt.wait(self.interval)

    def stop(self) -> dict[str, float]:
        self._halt.set()
        self.join()
        return self.peaks


def loadgen_command(
    stack: stacks.Stack, mode: str, concurrency: int, duration: float, warmup: float, processes: int
) -> list[str]:
    command = [
        sys.executable,
        "-m",
        "bench.loadgen",
        "--url",
        stack.url,
        "--concurrency",
        str(concurrency),
        "--duration",
        str(duration),
        "--warmup",
        str(warmup),
        "--handshake",
        "--processes",
        str(processes),
    ]
    if mode == "stream":
        command.append("--stream")
    if stack.api_key:
        command += ["--api-key", stack.api_key]
    return command


def measure(
    stack: stacks.Stack,
    mode: str,
    concurrency: int,
    *,
    duration: float,
    warmup: float,
    processes: int = 1,
    during_window: Any = None,
) -> dict[str, Any]:
    """One run: a load-generator process against `stack`, with the servers' memory and CPU sampled.

    `during_window(window_start)`, if given, is called in a thread once the warm-up is over
    (the profiler uses it).
    """
    command = loadgen_command(stack, mode, concurrency, duration, warmup, processes)
    reset = {p.name: p.reset_peak() for p in stack.processes}
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    client = subprocess.Popen(
        command, cwd=ROOT, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    assert client.stdin is not None and client.stdout is not None
    ready = client.stdout.readline().strip()  # the client is imported and waits for its start instant
    if ready != "READY":
        client.kill()
        raise RuntimeError(f"load generator did not start: {ready!r} {client.communicate()[1][-3000:]}")
    # Child processes (processes > 1) are spawned after the handshake and need longer to be ready.
    start_at = time.perf_counter() + (LAUNCH_DELAY if processes == 1 else 2.0)
    client.stdin.write(f"{start_at!r}\n")
    client.stdin.flush()
    sampler = RssSampler(stack.processes)
    sampler.start()
    window_start, window_end = start_at + warmup, start_at + warmup + duration
    helper = None
    _sleep_until(window_start)
    cpu_start = {p.name: p.cpu_seconds() for p in stack.processes}
    machine_start = machine_busy_seconds()
    if during_window is not None:
        helper = threading.Thread(target=during_window, args=(window_start,))
        helper.start()
    _sleep_until(window_end)
    cpu_end = {p.name: p.cpu_seconds() for p in stack.processes}
    machine_busy = (machine_busy_seconds() - machine_start) / duration
    try:
        out, err = client.communicate(timeout=duration + warmup + 120)
    except subprocess.TimeoutExpired:
        client.kill()
        out, err = client.communicate()
    sampled = sampler.stop()
    if helper is not None:
        helper.join()
    if client.returncode != 0 or not out.strip():
        raise RuntimeError(f"load generator failed ({client.returncode}): {' '.join(command)}\n{err[-3000:]}")
    load = json.loads(out.strip().splitlines()[-1])
    servers: dict[str, dict[str, Any]] = {}
    for process in stack.processes:
        hwm = process.peak_rss_mb() if reset[process.name] else 0.0
        servers[process.name] = {
            "pid": process.pid,
            "peak_rss_mb": round(max(hwm, sampled[process.name]), 1),
            "peak_source": "VmHWM (reset before the run)" if reset[process.name] else "VmRSS sampled every 0.1 s",
            "cpu_util": round((cpu_end[process.name] - cpu_start[process.name]) / duration, 3),
        }
    ours = sum(server["cpu_util"] for server in servers.values()) + (load["client_cpu_util"] or 0)
    machine = {"busy_cores": round(machine_busy, 3), "other_cores": round(max(0.0, machine_busy - ours), 3)}
    return {
        "stack": stack.key,
        "mode": mode,
        "concurrency": concurrency,
        "load": load,
        "servers": servers,
        "machine": machine,
    }


def _summary(run: dict[str, Any]) -> str:
    load = run["load"]
    text = f"{load['rps']:.1f} req/s p50 {load['p50_ms']} ms p99 {load['p99_ms']} ms"
    if load["ttft_p50_ms"] is not None:
        text += f" ttft50 {load['ttft_p50_ms']} ms"
    if load["errors"]:
        text += f" ERRORS {load['errors']}"
    return text


# ----------------------------------------------------------------------------------- client check


def wrk_cross_check(stack: stacks.Stack, duration: float, work: Path) -> str | None:
    """Non-streaming c=32 against the node with wrk, when wrk is installed (never required)."""
    wrk = shutil.which("wrk")
    if wrk is None:
        return None
    script = work / "post.lua"
    body = json.dumps({"model": stacks.MODEL, "messages": [{"role": "user", "content": "Say something."}]})
    script.write_text(
        f'wrk.method = "POST"\nwrk.body = {json.dumps(body)}\nwrk.headers["Content-Type"] = "application/json"\n'
    )
    result = subprocess.run(
        [wrk, "-t1", "-c32", f"-d{max(1, round(duration))}s", "--latency", "-s", str(script), stack.url],
        capture_output=True,
        text=True,
        timeout=duration + 60,
    )
    rps = [line.split()[-1] for line in result.stdout.splitlines() if line.startswith("Requests/sec")]
    p50 = [line.split()[-1] for line in result.stdout.splitlines() if line.strip().startswith("50%")]
    if not rps:
        return f"wrk failed: {result.stderr.strip()[-300:]}"
    return f"wrk -t1 -c32 (non-streaming) against the node: {rps[0]} req/s, p50 {p50[0] if p50 else '?'}"


def client_check(direct: stacks.Stack, duration: float, warmup: float, work: Path) -> dict[str, Any]:
    """The node direct at c=32 with one client process and with two, in ABBA order (medians).

    If two processes do not raise the rate much, the node, not the client, limits the `direct`
    column, which is the fastest one measured; the client's CPU per request tells the rest.
    """
    lines: list[str] = []
    runs = []
    for mode in report.MODES:
        by_processes: dict[int, list[dict[str, Any]]] = {1: [], 2: []}
        for processes in (1, 2, 2, 1):
            run = measure(direct, mode, 32, duration=duration, warmup=warmup, processes=processes)
            run["client_processes"] = processes
            by_processes[processes].append(run)
            runs.append(run)

        def med(processes: int, pick: Any, group: dict[int, list[dict[str, Any]]] = by_processes) -> float:
            return statistics.median(pick(run) for run in group[processes])

        one, two = med(1, lambda r: r["load"]["rps"]), med(2, lambda r: r["load"]["rps"])
        cpu = med(1, lambda r: r["load"]["client_cpu_util"])
        per_request = med(1, lambda r: r["load"]["client_cpu_us_per_request"] or 0)
        node_one = med(1, lambda r: r["servers"]["node"]["cpu_util"])
        node_two = med(2, lambda r: r["servers"]["node"]["cpu_util"])
        lines.append(
            f"{mode}, node direct, c=32 (medians of 2 runs each): 1 client process {one:.0f} req/s using"
            f" {cpu:.0%} of a core ({per_request:.0f} us CPU per request); 2 client processes {two:.0f} req/s"
            f" ({(two / one - 1) * 100 if one else 0:+.0f}%); node CPU {node_one:.0%} vs {node_two:.0%}"
        )
        log(lines[-1])
    cross = wrk_cross_check(direct, duration, work)
    if cross:
        lines.append(cross)
        log(cross)
    return {"lines": lines, "runs": runs}


# ---------------------------------------------------------------------------------------- profile


def _py_spy() -> str | None:
    local = Path(sys.executable).parent / "py-spy"
    return str(local) if local.exists() else shutil.which("py-spy")


@contextlib.contextmanager
def pinned_apart(pids: list[int]) -> Iterator[str]:
    """While the block runs: the threads of `pids` on the machine's last CPU, every other process (the harness,
    the load generator it starts, the node, PostgreSQL, Redis) on the others, so that a profile sees the proxy's
    CPU, not the moments it was preempted by the processes its writes woke up (bench/README.md, "Profiles").
    Every affinity changed is put back afterwards, including for the processes started meanwhile."""
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        yield "not pinned: one CPU"
        return
    mine, others = {cpus[-1]}, set(cpus[:-1])
    before: dict[int, set[int]] = {}

    def pin(task: int, where: set[int]) -> None:
        with contextlib.suppress(OSError):
            before.setdefault(task, os.sched_getaffinity(task))
            os.sched_setaffinity(task, where)

    servers = {int(task.name) for pid in pids for task in Path(f"/proc/{pid}/task").iterdir()}
    for entry in Path("/proc").glob("[0-9]*/task/[0-9]*"):
        pin(int(entry.name), mine if int(entry.name) in servers else others)
    try:
        yield f"pinned: the proxy on CPU {cpus[-1]}, everything else on CPU {','.join(map(str, sorted(others)))}"
    finally:
        everything = set(cpus)
        for entry in Path("/proc").glob("[0-9]*/task/[0-9]*"):
            with contextlib.suppress(OSError):
                os.sched_setaffinity(int(entry.name), before.get(int(entry.name), everything))


def profile_stack(
    stack: stacks.Stack, duration: float, out_dir: Path, mode: str = "stream", *, pin: bool = False
) -> list[str]:
    """py-spy on every server process of `stack` under c=32 load of `mode`; writes text summaries.

    `pin`: the proxy on a CPU of its own while profiled (`pinned_apart`).
    """
    py_spy = _py_spy()
    if py_spy is None:
        return ["py-spy not installed: `.venv/bin/pip install py-spy` (not a project dependency)"]
    servers = [pid for process in stack.processes for pid in stacks.process_tree(process.pid)]
    with pinned_apart(servers) if pin else contextlib.nullcontext("not pinned") as pinning:
        return _profile(stack, max(1, int(duration)), out_dir, mode, py_spy, pinning)


def _profile(stack: stacks.Stack, spy_seconds: int, out_dir: Path, mode: str, py_spy: str, pinning: str) -> list[str]:
    out_dir.mkdir(parents=True, exist_ok=True)
    results: dict[str, subprocess.CompletedProcess[str]] = {}

    def record(window_start: float) -> None:
        threads = []
        for process in stack.processes:
            folded = out_dir / f"{stack.key}-{process.name}-{mode}-c32.folded"

            def spy(process: stacks.ServerProcess = process, folded: Path = folded) -> None:
                command = [py_spy, "record", "--pid", str(process.pid), "--duration", str(spy_seconds)]
                command += ["--rate", str(PROFILE_RATE), "--format", "raw", "--threads", "--function"]
                command += ["--output", str(folded)]
                results[process.name] = subprocess.run(
                    command, capture_output=True, text=True, timeout=spy_seconds + 60
                )

            threads.append(threading.Thread(target=spy))
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    run = measure(stack, mode, 32, duration=spy_seconds + 1, warmup=2.0, during_window=record)
    lines = [f"load while profiling: {_summary(run)} ({pinning})"]
    for process in stack.processes:
        folded = out_dir / f"{stack.key}-{process.name}-{mode}-c32.folded"
        result = results.get(process.name)
        if result is None or result.returncode != 0 or not folded.exists():
            detail = result.stderr.strip()[-500:] if result else "not run"
            lines.append(f"{process.name}: py-spy failed: {detail}")
            continue
        profile = report.read_folded(folded)
        cpu = run["servers"][process.name]["cpu_util"]
        header = [
            f"# py-spy profile of {stack.label} {process.name} (pid {process.pid})",
            f"# load: c=32 {mode} ({run['load']['rps']:.1f} req/s while profiled)",
            f"# {spy_seconds} s at {PROFILE_RATE} Hz (py-spy record --threads --function, idle samples excluded);"
            f" process CPU {cpu:.0%} of a core (from /proc); {pinning}",
            f"# raw stacks (folded, for flamegraph tools): {folded.name}",
        ]
        path = out_dir / f"{stack.key}-{process.name}-{mode}-c32.txt"
        path.write_text(report.render_profile(profile, header))
        lines.append(f"{process.name}: {path} ({profile.total} samples, CPU {cpu:.0%})")
        lines += [f"  self {count / profile.total:5.1%}  {frame}" for frame, count in profile.own.most_common(8)]
    for line in lines:
        log(line)
    return lines


# ------------------------------------------------------------------------------------------ main


def machine_facts(args: argparse.Namespace) -> dict[str, Any]:
    def git(*command: str) -> str:
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            return subprocess.run(["git", *command], cwd=ROOT, capture_output=True, text=True).stdout.strip()
        return ""

    cpu_model = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    memory_gb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    from bench.loadgen import event_loop_name

    command = "python -m bench.run" + ("" if not sys.argv[1:] else " " + shlex.join(sys.argv[1:]))
    if os.environ.get("MAKELEVEL"):
        command = f"make bench  # {command}"
    return {
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "command": command,
        "nproc": os.cpu_count(),
        "cpu_model": cpu_model,
        "memory_gb": memory_gb,
        "kernel": platform.platform(),
        "python": platform.python_version(),
        "git_commit": git("rev-parse", "--short", "HEAD") or "unknown",
        "git_dirty": bool(git("status", "--porcelain", "--untracked-files=no")),
        "duration": args.duration,
        "warmup": args.warmup,
        "repeats": args.repeats,
        "concurrency": args.concurrency,
        "modes": args.modes,
        "event_loop": event_loop_name(),
        "litellm_version": LITELLM_VERSION,
        "litellm_workers": args.litellm_workers,
        "load_average_start": load_average(),
    }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=5.0, help="measurement window of each run, s (5)")
    parser.add_argument("--warmup", type=float, default=1.0, help="warm-up before each window, s (1)")
    parser.add_argument("--repeats", type=int, default=3, help="runs per cell; medians are reported (3)")
    parser.add_argument("--concurrency", type=lambda s: [int(x) for x in s.split(",")], default=[1, 32, 256])
    parser.add_argument(
        "--modes", type=lambda s: s.split(","), default=list(report.MODES), help="nonstream,stream (both)"
    )
    parser.add_argument("--skip-litellm", action="store_true", help="leave the LiteLLM column out")
    parser.add_argument(
        "--litellm-workers",
        type=int,
        default=2,
        help="LiteLLM workers of the column compared with core + facade (2: as many processes); a 1-worker"
        " LiteLLM column is compared with the one-process topology",
    )
    parser.add_argument(
        "--topologies",
        type=lambda s: s.split(","),
        default=list(TOPOLOGIES),
        help="one (serve: core + facade in one process), split (core + facade processes); both by default",
    )
    parser.add_argument("--no-client-check", action="store_true", help="skip the 1-vs-2 client process check")
    parser.add_argument("--profile", action="store_true", help="also py-spy the core and facade (c=32 stream)")
    parser.add_argument("--profile-only", action="store_true", help="only the py-spy profiles")
    parser.add_argument("--profile-duration", type=float, default=15.0, help="seconds of profiling (15)")
    parser.add_argument("--profile-mode", default="stream", help="the load while profiling: stream or nonstream")
    parser.add_argument(
        "--profile-pin", action="store_true", help="profile the proxy on a CPU of its own, everything else on the rest"
    )
    parser.add_argument(
        "--proxy-env", action="append", default=[], metavar="KEY=VALUE", help="extra env for core and facade"
    )
    parser.add_argument("--results", type=Path, default=RESULTS, help="output directory (bench/results)")
    args = parser.parse_args(argv)
    if set(args.topologies) - set(TOPOLOGIES) or not args.topologies:
        parser.error(f"--topologies takes {','.join(TOPOLOGIES)}")
    unknown = set(args.modes) - set(report.MODES)
    if unknown:
        parser.error(f"unknown modes {sorted(unknown)}; use {','.join(report.MODES)}")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="atoma-bench-"))
    log(f"logs and configs in {work}")
    extra_env = dict(item.split("=", 1) for item in args.proxy_env)
    results: dict[str, Any] = {
        "meta": machine_facts(args),
        "stacks": {},
        "skipped": {},
        "runs": [],
        "warnings": [],
    }
    running: list[stacks.Stack] = []
    node = stacks.start_node(work)
    try:
        direct = stacks.direct_stack(node)
        columns = [direct]
        database_url: str | None = None
        for topology in args.topologies:  # "one" first when both: it creates the database
            one = topology == "one"
            stack, database_url = stacks.atoma_stack(
                node.url, work, extra_env, one_process=one, database_url=database_url
            )
            running.append(stack)
            columns.append(stack)
            log(f"{stack.label} up: " + ", ".join(f"{p.name} pid {p.pid}" for p in stack.processes))
            for line in stack.features + stack.notes:
                log(f"  {stack.key}: {line}")
        atoma = columns[-1]  # the profiles are of core + facade when it runs
        if args.profile_only:
            results["profile"] = profile_stack(
                atoma, args.profile_duration, args.results / "profiles", args.profile_mode, pin=args.profile_pin
            )
            return
        if args.skip_litellm:
            results["skipped"]["litellm"] = "--skip-litellm"
        else:
            try:
                # At equal process counts: 1 worker against one process, N against core + facade.
                wanted = {"one": ("litellm1", 1), "split": ("litellm", args.litellm_workers)}
                for key, workers in dict(wanted[t] for t in args.topologies).items():
                    litellm = stacks.litellm_stack(node.url, work, ensure_litellm(), workers, key=key)
                    running.append(litellm)
                    columns.append(litellm)
                    log(f"LiteLLM {LITELLM_VERSION} ({workers} workers) up: pid {litellm.processes[0].pid}")
            except (LiteLLMUnavailable, RuntimeError) as error:
                results["skipped"]["litellm"] = f"LiteLLM could not run: {str(error).splitlines()[0]}"
                log(f"SKIPPING the LiteLLM column: {error}")
        results["stacks"] = {stack.key: stack.describe() for stack in columns}
        if not args.no_client_check:
            results["client_check"] = client_check(direct, args.duration, args.warmup, work)
        total = len(args.modes) * len(args.concurrency) * args.repeats * len(columns)
        done = 0
        for mode in args.modes:
            for concurrency in args.concurrency:
                for repeat in range(args.repeats):
                    for stack in columns:  # interleaved: noise hits every column alike
                        done += 1
                        run = measure(stack, mode, concurrency, duration=args.duration, warmup=args.warmup)
                        run["repeat"] = repeat
                        results["runs"].append(run)
                        log(f"[{done}/{total}] {mode} c={concurrency} #{repeat + 1} {stack.key}: {_summary(run)}")
                        if run["load"]["late_start_s"] > args.warmup / 2:
                            results["warnings"].append(
                                f"{mode} c={concurrency} {stack.key}: client started"
                                f" {run['load']['late_start_s']:.2f} s late"
                            )
        with contextlib.suppress(Exception):
            assert database_url is not None
            results["database_rows"] = stacks.table_row_counts(database_url)
        results["meta"]["load_average_end"] = load_average()
        if args.profile:
            results["profile"] = profile_stack(
                atoma, args.profile_duration, args.results / "profiles", args.profile_mode, pin=args.profile_pin
            )
        text = report.write(results, args.results)
        print(text)
        log(f"wrote {args.results / 'latest.md'} and latest.json")
    finally:
        for stack in reversed(running):
            stack.stop()
        node.stop()


if __name__ == "__main__":
    main()
