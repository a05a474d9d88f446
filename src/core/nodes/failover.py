"""How many nodes a request may try, and how long a stream may wait for its first token on one."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["FailoverPolicy"]


@dataclass(frozen=True)
class FailoverPolicy:
    max_attempts: int = 3  # nodes tried per request, the first included
    first_token_timeout: float = 30.0  # seconds a stream may wait for its first token on one node
    same_node_pause: float = 0.05  # seconds before trying the only node again, times the attempt number
