"""The circuit breaker's state machine, on an injected clock."""

from __future__ import annotations

from atoma_proxy.core.nodes.breaker import BreakerPolicy, CircuitBreaker, CircuitState, Dispatch
from tests.core.nodes.support import FakeClock

POLICY = BreakerPolicy(consecutive_failures=3, error_rate=0.5, min_requests=4, window=10.0, base_ejection=1.0)


def _breaker() -> tuple[CircuitBreaker, FakeClock]:
    clock = FakeClock()
    return CircuitBreaker(POLICY, clock), clock


def _fail(breaker: CircuitBreaker, times: int = 1) -> None:
    for _ in range(times):
        breaker.record_failure(breaker.dispatch())


def test_consecutive_failures_open_it_and_a_success_in_between_resets_the_count() -> None:
    breaker = CircuitBreaker(BreakerPolicy(consecutive_failures=3, min_requests=100), FakeClock())
    _fail(breaker, 2)
    breaker.record_success(breaker.dispatch())
    _fail(breaker, 2)
    assert breaker.state is CircuitState.CLOSED and breaker.available()
    _fail(breaker)
    assert breaker.state is CircuitState.OPEN and not breaker.available()


def test_an_error_rate_over_the_window_opens_it() -> None:
    breaker, clock = _breaker()
    for ok in (True, False, True, False):  # never 3 in a row, but 50% of 4 requests
        clock.advance(1)
        (breaker.record_success if ok else breaker.record_failure)(breaker.dispatch())
    assert breaker.state is CircuitState.OPEN


def test_old_outcomes_leave_the_window() -> None:
    breaker, clock = _breaker()
    _fail(breaker, 2)
    breaker.record_success(breaker.dispatch())
    clock.advance(30)  # the two failures are history
    breaker.record_success(breaker.dispatch())
    breaker.record_failure(breaker.dispatch())
    breaker.record_success(breaker.dispatch())
    assert breaker.state is CircuitState.CLOSED


def test_half_open_lets_one_trial_through_and_its_success_closes() -> None:
    breaker, clock = _breaker()
    _fail(breaker, 3)
    clock.advance(0.99)
    assert not breaker.available()
    clock.advance(0.02)
    assert breaker.state is CircuitState.HALF_OPEN and breaker.available()
    trial = breaker.dispatch()
    assert trial is Dispatch.TRIAL
    assert not breaker.available()  # one trial at a time
    breaker.record_success(trial)
    assert breaker.state is CircuitState.CLOSED and breaker.ejections == 0


def test_a_failed_trial_doubles_the_ejection_up_to_the_cap() -> None:
    breaker = CircuitBreaker(
        BreakerPolicy(consecutive_failures=1, base_ejection=1.0, max_ejection=3.0), clock := FakeClock()
    )
    durations = []
    _fail(breaker)
    for _ in range(4):
        durations.append(breaker.open_until - clock())
        clock.now = breaker.open_until
        breaker.record_failure(breaker.dispatch())  # the trial fails
    assert durations == [1.0, 2.0, 3.0, 3.0]


def test_an_abandoned_trial_frees_the_slot_and_stale_outcomes_change_nothing() -> None:
    breaker, clock = _breaker()
    before = breaker.dispatch()  # sent while closed
    _fail(breaker, 3)
    breaker.record_success(before)  # finishes during the ejection: describes the past
    assert breaker.state is CircuitState.OPEN
    clock.advance(1.0)
    trial = breaker.dispatch()
    breaker.record_abandoned(trial)  # the client left: no verdict
    assert breaker.state is CircuitState.HALF_OPEN and breaker.available()
    breaker.record_failure(before)  # another stale outcome
    assert breaker.available()
