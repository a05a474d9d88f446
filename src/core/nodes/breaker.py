"""Outlier ejection: a circuit breaker per node.

    CLOSED ──(N consecutive failures, or error rate >= R over the window with >= M requests)──▶ OPEN
    OPEN ──(ejection time elapsed: base · 2^(k-1), capped, k = ejections in a row)──▶ HALF_OPEN
    HALF_OPEN ──(the one trial request succeeds)──▶ CLOSED (k reset)
    HALF_OPEN ──(the trial fails)──▶ OPEN (k + 1)

A node whose breaker is OPEN gets no requests; HALF_OPEN lets exactly one trial through at a
time. A trial abandoned without a verdict (the client left) frees the slot for another one.
Outcomes of requests dispatched before the node was ejected change nothing once it is: they
describe the past. The clock is injectable so the state machine is tested without sleeping.
"""

from __future__ import annotations

import enum
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["BreakerPolicy", "CircuitBreaker", "CircuitState", "Dispatch"]

Clock = Callable[[], float]


class CircuitState(enum.Enum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


@dataclass(frozen=True)
class BreakerPolicy:
    consecutive_failures: int = 3
    error_rate: float = 0.5
    min_requests: int = 10
    window: float = 30.0
    base_ejection: float = 1.0
    max_ejection: float = 60.0


class Dispatch(enum.Enum):
    """How a request was let through, to be handed back with its outcome."""

    NORMAL = "normal"
    TRIAL = "trial"


class CircuitBreaker:
    def __init__(self, policy: BreakerPolicy | None = None, clock: Clock = time.monotonic) -> None:
        self.policy = policy or BreakerPolicy()
        self._clock = clock
        self._state = CircuitState.CLOSED
        self._consecutive = 0
        self._outcomes: deque[tuple[float, bool]] = deque()
        self._ejections = 0  # in a row, for the backoff
        self._open_until = 0.0
        self._trial_in_flight = False

    @property
    def state(self) -> CircuitState:
        if self._state is CircuitState.OPEN and self._clock() >= self._open_until:
            return CircuitState.HALF_OPEN
        return self._state

    @property
    def open_until(self) -> float:
        """Monotonic time the current ejection ends (meaningful when OPEN)."""
        return self._open_until

    def ejected_for(self) -> float:
        """Seconds until the current ejection ends; 0 when the breaker is not OPEN."""
        return max(0.0, self._open_until - self._clock()) if self.state is CircuitState.OPEN else 0.0

    @property
    def ejections(self) -> int:
        return self._ejections

    def available(self) -> bool:
        """Whether a new request may go to the node now."""
        state = self.state
        if state is CircuitState.CLOSED:
            return True
        return state is CircuitState.HALF_OPEN and not self._trial_in_flight

    def dispatch(self) -> Dispatch:
        """Call when a request is sent; in HALF_OPEN it becomes the trial."""
        if self.state is CircuitState.HALF_OPEN:
            self._state = CircuitState.HALF_OPEN
            self._trial_in_flight = True
            return Dispatch.TRIAL
        return Dispatch.NORMAL

    def record_success(self, dispatch: Dispatch) -> None:
        if dispatch is Dispatch.TRIAL:
            self._close()
        elif self._state is CircuitState.CLOSED:
            self._consecutive = 0
            self._remember(True)

    def record_failure(self, dispatch: Dispatch) -> None:
        if dispatch is Dispatch.TRIAL:
            self._trial_in_flight = False
            self._open()
        elif self._state is CircuitState.CLOSED:
            self._consecutive += 1
            self._remember(False)
            if self._consecutive >= self.policy.consecutive_failures or self._rate_tripped():
                self._open()

    def record_abandoned(self, dispatch: Dispatch) -> None:
        """The request ended without a verdict on the node (the client left, the deadline passed)."""
        if dispatch is Dispatch.TRIAL:
            self._trial_in_flight = False

    def _remember(self, ok: bool) -> None:
        now = self._clock()
        self._outcomes.append((now, ok))
        horizon = now - self.policy.window
        while self._outcomes and self._outcomes[0][0] < horizon:
            self._outcomes.popleft()

    def _rate_tripped(self) -> bool:
        total = len(self._outcomes)
        if total < self.policy.min_requests:
            return False
        failures = sum(1 for _, ok in self._outcomes if not ok)
        return failures / total >= self.policy.error_rate

    def _open(self) -> None:
        self._ejections += 1
        ejection = min(self.policy.base_ejection * 2 ** (self._ejections - 1), self.policy.max_ejection)
        self._state = CircuitState.OPEN
        self._open_until = self._clock() + ejection
        self._consecutive = 0
        self._outcomes.clear()

    def _close(self) -> None:
        self._state = CircuitState.CLOSED
        self._trial_in_flight = False
        self._ejections = 0
        self._consecutive = 0
        self._outcomes.clear()
