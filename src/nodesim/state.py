"""Everything one simulated node knows at runtime: config, counters, queue, request log, faults.

One `SimState` per app (never module globals), so several simulators can share a process.
"""

from __future__ import annotations

import enum
import hmac
import random
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from atoma_proxy.nodesim.atoma import AtomaNode
from atoma_proxy.nodesim.config import SimConfig, apply_runtime_update
from atoma_proxy.nodesim.hostile import lied_waiting
from atoma_proxy.nodesim.limiter import FifoLimiter
from atoma_proxy.nodesim.metrics import SimMetrics

__all__ = ["REQUEST_LOG_SIZE", "Fault", "SimState", "SimStats"]

REQUEST_LOG_SIZE = 100


class Fault(enum.Enum):
    ERROR = "error"
    HANG = "hang"
    DROP = "drop"


@dataclass
class SimStats:
    """Counters behind GET /sim/stats (in_flight and waiting come from the limiter)."""

    requests_total: int = 0  # inference requests received, valid or not
    completed: int = 0  # replies fully sent
    cancelled: int = 0  # the client went away first (queued, hung or mid-reply)
    errors_injected: int = 0
    dropped: int = 0
    hung: int = 0


class SimState:
    def __init__(self, config: SimConfig) -> None:
        self.config = config
        self.stats = SimStats()
        self.limiter = FifoLimiter(config.max_concurrency)
        self.rng = random.Random(config.seed)
        self.request_log: deque[dict[str, Any]] = deque(maxlen=REQUEST_LOG_SIZE)
        # model -> [running, waiting]; models a request named but we do not serve never get here.
        self.load: dict[str, list[int]] = {model: [0, 0] for model in config.all_models}
        self.metrics = SimMetrics(config.all_models, self._load_snapshot)
        self._expected_auth = f"Bearer {config.api_key}".encode() if config.api_key is not None else None
        self.atoma = AtomaNode(config) if config.protocol == "atoma" else None

    def _load_snapshot(self) -> tuple[Mapping[str, Sequence[float]], float]:
        running, limit = self.limiter.running, self.limiter.limit
        usage = running / limit if limit > 0 else 0.01 * running
        lie = lied_waiting(self.config)
        if lie is not None:
            return {model: [load[0], lie[0]] for model, load in self.load.items()}, lie[1]
        return self.load, min(1.0, usage)

    def authorized(self, authorization: bytes | None) -> bool:
        if self._expected_auth is None:
            return True
        return authorization is not None and hmac.compare_digest(authorization, self._expected_auth)

    def record(self, path: str, headers: dict[str, str], body: Any) -> None:
        self.request_log.append({"path": path, "headers": headers, "body": body})

    def draw_fault(self) -> Fault | None:
        """Independent draws in a fixed order: error, else hang, else drop (each only if its rate > 0)."""
        config = self.config
        for rate, fault in (
            (config.error_rate, Fault.ERROR),
            (config.hang_rate, Fault.HANG),
            (config.drop_rate, Fault.DROP),
        ):
            if rate > 0 and (rate >= 1 or self.rng.random() < rate):
                return fault
        return None

    def update_config(self, update: Any) -> None:
        apply_runtime_update(self.config, update)
        self.limiter.set_limit(self.config.max_concurrency)

    def stats_view(self) -> dict[str, Any]:
        stats = self.stats
        return {
            "node_id": self.config.node_id,
            "requests_total": stats.requests_total,
            "in_flight": self.limiter.running,
            "waiting": self.limiter.waiting,
            "completed": stats.completed,
            "cancelled": stats.cancelled,
            "errors_injected": stats.errors_injected,
            "dropped": stats.dropped,
            "hung": stats.hung,
        }
