"""Per-project token-bucket rate limit kept in Redis, so every ingest replica shares one budget."""

from __future__ import annotations

import time

# KEYS[1] bucket; ARGV: rate/s, burst, cost, now (s). Returns {allowed (0/1), retry_after_ms}.
_TOKEN_BUCKET = """
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local now = tonumber(ARGV[4])
local state = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(state[1]) or burst
local ts = tonumber(state[2]) or now
tokens = math.min(burst, tokens + math.max(0, now - ts) * rate)
local allowed = 0
local wait_ms = 0
if tokens >= cost then
  tokens = tokens - cost
  allowed = 1
else
  wait_ms = math.ceil((cost - tokens) / rate * 1000)
end
redis.call('HSET', KEYS[1], 'tokens', tokens, 'ts', now)
redis.call('PEXPIRE', KEYS[1], math.ceil(burst / rate * 1000) + 1000)
return {allowed, wait_ms}
"""


class RateLimiter:
    """``allow(project_id, n)`` -> (allowed, retry_after_seconds). A rate of 0 disables the limit."""

    def __init__(self, redis, rate_per_second: float, burst: float = 0.0):
        self.rate = rate_per_second
        self.burst = burst or rate_per_second
        self._script = redis.register_script(_TOKEN_BUCKET) if rate_per_second > 0 else None

    async def allow(self, project_id: str, n: int) -> tuple[bool, float]:
        if self._script is None or n <= 0:
            return True, 0.0
        if n > self.burst:  # could never fit: admit as a full bucket's worth would
            n = int(self.burst)
        allowed, wait_ms = await self._script(keys=[f"evalforge:rate:{project_id}"],
                                              args=[self.rate, self.burst, n, time.time()])
        return bool(allowed), max(int(wait_ms), 1) / 1000.0


class SyncRateLimiter:
    """The same token bucket for code running in a worker thread (a sync redis-py client)."""

    def __init__(self, redis, rate_per_second: float, burst: float = 0.0, prefix: str = "evalforge:rate:"):
        self.rate = rate_per_second
        self.burst = burst or rate_per_second
        self.prefix = prefix
        self._script = redis.register_script(_TOKEN_BUCKET) if rate_per_second > 0 else None

    def allow(self, key: str, n: int = 1) -> tuple[bool, float]:
        if self._script is None or n <= 0:
            return True, 0.0
        allowed, wait_ms = self._script(keys=[self.prefix + key], args=[self.rate, self.burst, min(n, self.burst), time.time()])
        return bool(allowed), max(int(wait_ms), 1) / 1000.0
