"""Rate limits shared by every core instance through Redis: one Lua script call per admission.

Concurrent admissions go to Redis together (`script_batch.ScriptBatch`: one pipeline per round trip).

The script reads and updates all of a request's buckets atomically (Redis runs one script at a
time), so any number of core processes share one limit. Its clock is the Redis server's (`TIME`),
so the instances' clocks need not agree. Keys expire at their bucket's TAT by themselves.

When Redis cannot be reached, `fail_open` decides: admit without limits (the default: an outage
of the limiter is not an outage of the API) or refuse with RATE_LIMITED and a 1 s retry delay.
Either way a warning is logged at most every 10 s, and Redis is left alone for `outage_pause`
seconds after a failure so requests are not slowed by a connect timeout each.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from atoma_proxy.core.auth import Principal
from atoma_proxy.core.errors import RateLimited
from atoma_proxy.core.ratelimit.admission import Admission, refusal, too_large
from atoma_proxy.core.ratelimit.gcra import Bucket, Decision, buckets_for, state
from atoma_proxy.core.ratelimit.policy import LimitPolicy
from atoma_proxy.core.ratelimit.script_batch import ScriptBatch

__all__ = ["ADMIT_SCRIPT", "RedisRateLimiter", "decision_from_reply"]

log = logging.getLogger(__name__)

_WARN_EVERY = 10.0

# The arithmetic of gcra.take, in the same order (so the same floats). ARGV[1]: now in µs, or "" for
# the Redis clock; ARGV[2]: "limit cost limit cost ..." for KEYS in order (one string: redis-py's
# per-argument cost dominates a call). Returns one string: "<blocking bucket, 0 when admitted>
# <µs to wait> <µs until full, per bucket...>".
ADMIT_SCRIPT = """
local now = tonumber(ARGV[1])
if not now then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000000 + tonumber(t[2])
end
local spec = {}
for value in string.gmatch(ARGV[2], '%S+') do spec[#spec + 1] = tonumber(value) end
local period = 60000000
local bases, news = {}, {}
local blocking, retry = 0, 0
for i = 1, #KEYS do
  local limit, cost = spec[2 * i - 1], spec[2 * i]
  local tat = tonumber(redis.call('GET', KEYS[i]))
  local base = now
  if tat and tat > now then base = tat end
  local new = base + cost * period / limit
  if new - now > period + 0.5 then
    local wait = new - now - period
    if wait > retry then retry, blocking = wait, i end
  end
  bases[i], news[i] = base, new
end
local out = {tostring(blocking), string.format('%.17g', retry)}
for i = 1, #KEYS do
  local tat = bases[i]
  if blocking == 0 then
    tat = news[i]
    if tat > now then
      redis.call('SET', KEYS[i], string.format('%.17g', tat), 'PX', math.ceil((tat - now) / 1000) + 1)
    end
  end
  out[#out + 1] = string.format('%.17g', tat - now)
end
return table.concat(out, ' ')
"""

# gcra.corrected_tat for each token bucket. ARGV[1]: now or ""; ARGV[2]: tokens to add (negative:
# refund); ARGV[3]: "limit limit ..." for KEYS in order.
SETTLE_SCRIPT = """
local now = tonumber(ARGV[1])
if not now then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000000 + tonumber(t[2])
end
local limits = {}
for value in string.gmatch(ARGV[3], '%S+') do limits[#limits + 1] = tonumber(value) end
local period = 60000000
local delta = tonumber(ARGV[2])
for i = 1, #KEYS do
  local interval = period / limits[i]
  local tat = tonumber(redis.call('GET', KEYS[i]))
  local new = nil
  if delta > 0 then
    local base = now
    if tat and tat > now then base = tat end
    new = base + delta * interval
  elseif tat and tat > now then
    new = tat + delta * interval
  end
  if new and new > now then
    redis.call('SET', KEYS[i], string.format('%.17g', new), 'PX', math.ceil((new - now) / 1000) + 1)
  elseif tat then
    redis.call('DEL', KEYS[i])
  end
end
return 0
"""


class RedisRateLimiter:
    """GCRA buckets in Redis, shared by all core instances that use the same Redis and prefix.

    `clock` (seconds) replaces the Redis server's clock; tests use it to move time.
    """

    def __init__(
        self,
        client: aioredis.Redis,
        policy: LimitPolicy,
        *,
        prefix: str = "atoma:rl:",
        fail_open: bool = True,
        clock: Callable[[], float] | None = None,
        outage_pause: float = 1.0,
        owns_client: bool = False,
    ) -> None:
        self._client = client
        self._policy = policy
        self._prefix = prefix
        self._fail_open = fail_open
        self._clock = clock
        self._outage_pause = outage_pause
        self._owns_client = owns_client
        self._admit = ScriptBatch(client, ADMIT_SCRIPT)
        self._settle_script = client.register_script(SETTLE_SCRIPT)
        self._skip_redis_until = 0.0
        self._next_warning = 0.0
        self._corrections: _Corrections | None = None  # waiting to be sent
        self._correcting: asyncio.Task[None] | None = None

    @classmethod
    def from_url(
        cls,
        url: str,
        policy: LimitPolicy,
        *,
        timeout: float = 0.25,
        max_connections: int = 64,
        pool_timeout: float = 2.0,
        prefix: str = "atoma:rl:",
        fail_open: bool = True,
        clock: Callable[[], float] | None = None,
        outage_pause: float = 1.0,
    ) -> RedisRateLimiter:
        """A limiter with its own pool of `max_connections` connections.

        `timeout` bounds each Redis call (connect, send, reply); one immediate retry, since a pooled
        connection may be stale. A burst of admissions queues for a free connection for up to
        `pool_timeout`: that is congestion here, not Redis failing, and must not open the limits.
        """
        pool = aioredis.BlockingConnectionPool.from_url(
            url,
            max_connections=max_connections,
            timeout=pool_timeout,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            retry=Retry(NoBackoff(), 1),
        )
        return cls(
            aioredis.Redis.from_pool(pool),
            policy,
            prefix=prefix,
            fail_open=fail_open,
            clock=clock,
            outage_pause=outage_pause,
            owns_client=True,
        )

    def _now_argument(self) -> str:
        return "" if self._clock is None else repr(self._clock() * 1e6)

    async def admit(self, principal: Principal, estimated_tokens: int) -> Admission:
        buckets = buckets_for(principal, await self._policy.limits_for(principal))
        if not buckets:
            return Admission()
        estimated_tokens = max(0, estimated_tokens)
        error = too_large(buckets, estimated_tokens)
        if error is not None:
            raise error
        if time.monotonic() < self._skip_redis_until:
            return self._without_redis(None)
        spec = " ".join(f"{b.limit} {1 if b.kind == 'requests' else estimated_tokens}" for b in buckets)
        try:
            reply = await self._admit([self._prefix + b.name for b in buckets], [self._now_argument(), spec])
        except (RedisError, OSError) as failure:
            return self._without_redis(failure)
        decision = decision_from_reply(buckets, reply)
        if not decision.admitted:
            raise refusal(decision, estimated_tokens)
        token_buckets = [b for b in buckets if b.kind == "tokens"]

        async def correct(delta: int) -> None:
            await self._correct(token_buckets, delta)

        return Admission(decision.states, estimated_tokens, correct if token_buckets else None)

    async def _correct(self, buckets: Sequence[Bucket], delta: int) -> None:
        """Queue a correction and wait until it is applied.

        Corrections that arrive while others are being sent are summed per bucket set (refunds and
        extra charges apart: the script treats them differently) and sent together: under load a
        user's many corrections cost one script call per round trip, not one each.
        """
        group = self._corrections
        if group is None:
            group = self._corrections = _Corrections(asyncio.get_running_loop())
        key = (tuple(self._prefix + b.name for b in buckets), " ".join(str(b.limit) for b in buckets), delta > 0)
        group.deltas[key] = group.deltas.get(key, 0) + delta
        if self._correcting is None or self._correcting.done():
            self._correcting = asyncio.create_task(self._send_corrections(), name="ratelimit-corrections")
        await asyncio.shield(group.applied)

    async def _send_corrections(self) -> None:
        while (group := self._corrections) is not None:
            self._corrections = None
            try:
                for (keys, limits, _), delta in group.deltas.items():
                    if delta:
                        await self._settle_script(keys=list(keys), args=[self._now_argument(), delta, limits])
            except (RedisError, OSError) as failure:
                self._warn(failure)
            finally:
                group.applied.set_result(None)

    def _without_redis(self, failure: Exception | None) -> Admission:
        if failure is not None:
            self._skip_redis_until = time.monotonic() + self._outage_pause
            self._warn(failure)
        if self._fail_open:
            return Admission()
        raise RateLimited("Rate limits cannot be checked right now; please retry shortly.", retry_after=1.0)

    def _warn(self, failure: Exception) -> None:
        now = time.monotonic()
        if now < self._next_warning:
            return
        self._next_warning = now + _WARN_EVERY
        outcome = "admitted without limits" if self._fail_open else "refused"
        log.warning(
            "Redis is unavailable for rate limits (%s: %s): requests are %s until it is back "
            "(this warning repeats at most every %.0f s)",
            type(failure).__name__,
            failure,
            outcome,
            _WARN_EVERY,
        )

    async def aclose(self) -> None:
        await self._admit.aclose()
        if self._correcting is not None:
            await asyncio.gather(self._correcting, return_exceptions=True)
        if self._owns_client:
            await self._client.aclose()


class _Corrections:
    """Token corrections not sent yet: the summed delta per (keys, limits, sign)."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.deltas: dict[tuple[tuple[str, ...], str, bool], int] = {}
        self.applied: asyncio.Future[None] = loop.create_future()


def decision_from_reply(buckets: Sequence[Bucket], reply: bytes) -> Decision:
    """The Decision of an ADMIT_SCRIPT reply for `buckets` (its KEYS, in order)."""
    blocking, retry, *until_full = reply.split()
    index = int(blocking)
    return Decision(
        admitted=index == 0,
        states=tuple(state(bucket, float(us)) for bucket, us in zip(buckets, until_full, strict=True)),
        new_tats=(),
        retry_after=float(retry) / 1e6,
        blocking=buckets[index - 1] if index else None,
    )
