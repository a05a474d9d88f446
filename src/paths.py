"""Where atoma-proxy keeps its files when the configuration names no place: one documented directory.

`$ATOMA_DATA_DIR`, else `$XDG_DATA_HOME/atoma-proxy`, else `~/.local/share/atoma-proxy`. The embedded
database (`atoma-proxy.db`) and the demo's secrets (`demo-secrets.json`) live there, so every command
finds the same database from any working directory.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["DATA_DIR_ENV", "data_dir", "default_database_url"]

DATA_DIR_ENV = "ATOMA_DATA_DIR"


def data_dir() -> Path:
    """The data directory (not created here)."""
    configured = os.environ.get(DATA_DIR_ENV)
    if configured:
        return Path(configured).expanduser().absolute()
    xdg = os.environ.get("XDG_DATA_HOME")
    base = Path(xdg).expanduser() if xdg and Path(xdg).is_absolute() else Path.home() / ".local" / "share"
    return base.absolute() / "atoma-proxy"


def default_database_url() -> str:
    """`sqlite:///<data dir>/atoma-proxy.db`."""
    return f"sqlite:///{data_dir() / 'atoma-proxy.db'}"
