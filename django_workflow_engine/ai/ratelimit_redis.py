"""The Redis rate limiter (TRANSPORT "rq"): a sliding window log kept by one Lua script per request.

Per model, a sorted set of grant ids scored by grant time, a hash of their tokens and a running token total.
The script reads the clock of the Redis server (one clock for every worker machine), drops the grants that left
the window, and grants the request if the rest plus this one fit, atomically: Redis runs one script at a time.
One ``EVALSHA`` per request, and one more to correct the token estimate when the limit counts tokens. The keys
expire a window after their last use, so an idle model leaves nothing behind.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from .ratelimit import Grant, Limit

PREFIX = "dwe:ratelimit:"

ACQUIRE = """
local zkey, hkey, tkey = KEYS[1], KEYS[2], KEYS[3]
local window, rpm, tpm = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local tokens, id = tonumber(ARGV[4]), ARGV[5]
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
local cutoff = now - window
local expired = redis.call('ZRANGEBYSCORE', zkey, '-inf', cutoff)
if #expired > 0 then
  local freed = 0
  for i = 1, #expired, 500 do
    local chunk = {}
    for j = i, math.min(i + 499, #expired) do chunk[#chunk + 1] = expired[j] end
    local amounts = redis.call('HMGET', hkey, unpack(chunk))
    for _, amount in ipairs(amounts) do freed = freed + (tonumber(amount) or 0) end
    redis.call('HDEL', hkey, unpack(chunk))
  end
  redis.call('ZREMRANGEBYSCORE', zkey, '-inf', cutoff)
  redis.call('DECRBY', tkey, freed)
end
local count = redis.call('ZCARD', zkey)
local used = tonumber(redis.call('GET', tkey) or '0')
local wait_until = nil
if rpm > 0 and count + 1 > rpm then
  local entry = redis.call('ZRANGE', zkey, count - rpm, count - rpm, 'WITHSCORES')
  wait_until = tonumber(entry[2]) + window
end
if tpm > 0 and used > 0 and used + tokens > tpm then
  local entries = redis.call('ZRANGE', zkey, 0, -1, 'WITHSCORES')
  local freed, at = 0, now
  for i = 1, #entries, 2 do
    freed = freed + (tonumber(redis.call('HGET', hkey, entries[i])) or 0)
    at = tonumber(entries[i + 1])
    if used - freed + tokens <= tpm then break end
  end
  if wait_until == nil or at + window > wait_until then wait_until = at + window end
end
if wait_until ~= nil then
  return {0, tostring(math.max(wait_until - now, 0.001))}
end
redis.call('ZADD', zkey, now, id)
redis.call('HSET', hkey, id, tokens)
redis.call('INCRBY', tkey, tokens)
local ttl = math.ceil(window) + 1
redis.call('EXPIRE', zkey, ttl)
redis.call('EXPIRE', hkey, ttl)
redis.call('EXPIRE', tkey, ttl)
return {1, tostring(now)}
"""

CORRECT = """
local old = redis.call('HGET', KEYS[2], ARGV[1])
if old then
  redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
  redis.call('INCRBY', KEYS[3], tonumber(ARGV[2]) - tonumber(old))
end
return 1
"""


def keys(bucket: str) -> list[str]:
    # One hash tag: the three keys of a model live on one Redis Cluster slot.
    tag = "{" + bucket + "}"
    return [f"{PREFIX}{tag}:grants", f"{PREFIX}{tag}:tokens", f"{PREFIX}{tag}:total"]


class RedisRateLimiter:
    """:class:`~django_workflow_engine.ai.ratelimit.RateLimiter` on the RQ queue's Redis connection."""

    _scripts: dict[int, tuple[Any, Any]] = {}  # per connection: registered scripts cache their SHA

    def __init__(self, connection: Any = None):
        if connection is None:
            from ..adapters.rq import get_queue

            connection = get_queue().connection
        self.connection = connection
        scripts = self._scripts.get(id(connection))
        if scripts is None:
            scripts = (connection.register_script(ACQUIRE), connection.register_script(CORRECT))
            self._scripts[id(connection)] = scripts
        self._acquire, self._correct = scripts

    def acquire(self, bucket: str, limit: Limit, tokens: int, window: float) -> Grant:
        ticket = uuid.uuid4().hex
        granted, value = self._acquire(
            keys=keys(bucket), args=[window, limit.rpm or 0, limit.tpm or 0, int(tokens), ticket]
        )
        value = float(value.decode() if isinstance(value, bytes) else value)
        if int(granted) == 1:
            return Grant(True, at=datetime.fromtimestamp(value, tz=UTC), ticket=ticket)
        return Grant(False, wait_seconds=value)

    def correct(self, bucket: str, ticket: str, tokens: int, window: float) -> None:
        self._correct(keys=keys(bucket), args=[ticket, max(int(tokens), 0)])
