"""LiteLLM's proxy in a virtualenv of its own (`bench/.litellm-venv`, gitignored), made on demand.

The version is pinned exactly: 1.100.0 is the release measured in shared/reference (later ones need a
certifi this registry lacks, and 1.107.0 was a compromised release that must never be installed).
`ensure_litellm()` returns the `litellm` executable, or raises `LiteLLMUnavailable` with the reason,
so the harness can skip the column and say why instead of reporting anything it did not measure.

    python -m bench.litellm_env          # create/check the virtualenv only
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

LITELLM_VERSION = "1.100.0"
FORBIDDEN_VERSIONS = frozenset({"1.107.0"})
VENV = Path(__file__).resolve().parent / ".litellm-venv"
REQUIREMENT = f"litellm[proxy]=={LITELLM_VERSION}"

assert LITELLM_VERSION not in FORBIDDEN_VERSIONS


class LiteLLMUnavailable(RuntimeError):
    """The LiteLLM column cannot run; the message says why."""


def _installed_version(python: Path) -> str | None:
    if not python.exists():
        return None
    result = subprocess.run(
        [str(python), "-c", "import importlib.metadata as m; print(m.version('litellm'))"],
        capture_output=True,
        text=True,
    )
    return result.stdout.strip() if result.returncode == 0 else None


def ensure_litellm(venv: Path = VENV, log: Path | None = None) -> Path:
    """The path of a `litellm` executable at exactly LITELLM_VERSION, installing it if needed."""
    python, executable = venv / "bin" / "python", venv / "bin" / "litellm"
    version = _installed_version(python)
    if version in FORBIDDEN_VERSIONS:
        raise LiteLLMUnavailable(f"{venv} holds litellm {version}, a compromised release: delete that directory")
    if version == LITELLM_VERSION and executable.exists():
        return executable
    log = log or venv.with_name(".litellm-install.log")
    print(f"[bench] installing {REQUIREMENT} into {venv} (once; log: {log}) ...", file=sys.stderr, flush=True)
    steps = []
    if not python.exists():
        steps.append([sys.executable, "-m", "venv", str(venv)])
    steps.append([str(python), "-m", "pip", "install", "--disable-pip-version-check", REQUIREMENT])
    with log.open("w") as out:
        for step in steps:
            try:
                result = subprocess.run(step, stdout=out, stderr=subprocess.STDOUT, timeout=1800)
            except (OSError, subprocess.TimeoutExpired) as error:
                raise LiteLLMUnavailable(f"`{' '.join(step)}` failed: {error}") from error
            if result.returncode != 0:
                raise LiteLLMUnavailable(f"`{' '.join(step)}` exited with {result.returncode}; see {log}")
    version = _installed_version(python)
    if version != LITELLM_VERSION or not executable.exists():
        raise LiteLLMUnavailable(f"after installing, litellm is {version!r}, expected {LITELLM_VERSION}; see {log}")
    return executable


def main() -> None:
    try:
        print(ensure_litellm())
    except LiteLLMUnavailable as error:
        sys.exit(f"LiteLLM unavailable: {error}")


if __name__ == "__main__":
    main()
