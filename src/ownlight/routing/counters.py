"""Counters every instance shares, in Redis: budget reservations and circuit breakers.

Circuit breakers (``routing.health.SharedCircuit``) count an upstream's consecutive failures
in Redis, so failures seen by different instances add up and the circuit opens for all of
them at once; when the cooldown ends, one instance's probe is let through (``SET NX``), not
one per instance.

Budgets checked against spend that is counted only after a request let a burst through:
each of N instances (or each of many requests in flight on one) sees the same spend, lets
its request go, and together they overspend by many requests. Here a request reserves its
most possible cost before the call, in one Lua script that checks, for every budget that
applies, ``spent + reserved + most <= limit`` and only then adds the reservation to all of
them; after the call it settles (the reservation goes, the real cost is added). Redis runs
a script alone, so no two reservations interleave, whichever instance sent them.

A reservation carries an expiry (``[redis] reservation_seconds``): an instance that dies
between reserving and settling leaves money reserved only until then. Redis's spend sums are
seeded from the durable store (``store.base.SpendRows``) the first time a script finds one
missing (a new period, a Redis restarted empty), and the durable store keeps getting every
real cost, so Redis holds nothing that cannot be rebuilt.

The client is Redis's synchronous one, called on the event loop's thread as the store's
PostgreSQL calls are: one loopback round trip (about 0.1 ms). Once Redis is known to be
unreachable, calls fail at once with ``CountersUnavailable`` instead of each waiting for its
timeout, and a probe thread pings every second until it answers again.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import redis

from ownlight.errors import ConfigError, CountersUnavailable

log = logging.getLogger("ownlight.counters")

RETRY_AFTER = 5.0  # seconds a client is told to wait while Redis is unreachable
PROBE_EVERY = 1.0  # seconds between pings of a Redis known to be down
PREFIX = "ownlight:"
# Seconds Redis keeps a spend sum: longer than the longest period (a month); one that lapsed
# is seeded again from the durable store.
SUM_TTL = 40 * 86400

# KEYS: per budget i, 3 keys: spent_i, reserved_i (hash id -> usd), expiry_i (zset id -> t)
# ARGV: id, usd, lifetime (seconds), ttl, then per budget i: limit_i, seed_i ("" if unread)
# Times are Redis's own (TIME), so instances whose clocks differ agree on what has lapsed.
# Returns {"ok"}, {"seed", i} (read the durable spend of budget i and call again) or
# {"over", i} (budget i would be broken; nothing was reserved).
RESERVE = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1e6
local id, usd, ttl = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[4])
local expires = now + tonumber(ARGV[3])
local n = #KEYS / 3
for i = 1, n do
  local spent, reserved, expiry = KEYS[3*i-2], KEYS[3*i-1], KEYS[3*i]
  if redis.call('EXISTS', spent) == 0 then
    local seed = ARGV[4 + 2*i]
    if seed == '' then return {'seed', i} end
    redis.call('SET', spent, seed, 'EX', ttl, 'NX')
  end
  local lapsed = redis.call('ZRANGEBYSCORE', expiry, '-inf', now)
  for _, gone in ipairs(lapsed) do redis.call('HDEL', reserved, gone) end
  redis.call('ZREMRANGEBYSCORE', expiry, '-inf', now)
  local total = tonumber(redis.call('GET', spent))
  for _, amount in ipairs(redis.call('HVALS', reserved)) do total = total + tonumber(amount) end
  if total + usd > tonumber(ARGV[3 + 2*i]) then return {'over', i} end
end
for i = 1, n do
  redis.call('HSET', KEYS[3*i-1], id, usd)
  redis.call('ZADD', KEYS[3*i], expires, id)
  redis.call('EXPIRE', KEYS[3*i-1], ttl)
  redis.call('EXPIRE', KEYS[3*i], ttl)
end
return {'ok'}
"""

# KEYS as for RESERVE; ARGV: id, usd. The reservation goes, the real cost is added to every
# sum that exists (a missing one will be seeded from the durable store, which has it).
SETTLE = """
for i = 1, #KEYS / 3 do
  redis.call('HDEL', KEYS[3*i-1], ARGV[1])
  redis.call('ZREM', KEYS[3*i], ARGV[1])
  if tonumber(ARGV[2]) > 0 and redis.call('EXISTS', KEYS[3*i-2]) == 1 then
    redis.call('INCRBYFLOAT', KEYS[3*i-2], ARGV[2])
  end
end
return 1
"""


# Circuits. KEYS: failures (consecutive, across instances), open (exists while cooling
# down), probe (exists while one instance's probe is out).
# ALLOW, ARGV: failures that open, probe_ms. 1: let the call through; 0: refuse it.
CIRCUIT_ALLOW = """
if redis.call('EXISTS', KEYS[2]) == 1 then return 0 end
local failures = tonumber(redis.call('GET', KEYS[1]) or '0')
if failures < tonumber(ARGV[1]) then return 1 end
if redis.call('SET', KEYS[3], '1', 'NX', 'PX', ARGV[2]) then return 1 end
return 0
"""
# FAILURE, ARGV: failures that open, cooldown_ms, ttl_ms of the failure count.
CIRCUIT_FAILURE = """
local failures = redis.call('INCR', KEYS[1])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
redis.call('DEL', KEYS[3])
if failures >= tonumber(ARGV[1]) then redis.call('SET', KEYS[2], '1', 'PX', ARGV[2]) end
return failures
"""


def without_password(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user, _, host = parts.netloc.rpartition("@")
    return urlunsplit(parts._replace(netloc=f"{user.partition(':')[0]}:****@{host}"))


@dataclass(frozen=True)
class Limit:
    """One budget as the counters see it: its entry ("scope/subject/period") and limit."""

    entry: str
    limit_usd: float


@dataclass
class Reservation:
    """Money held for one request until it is settled (once) or its expiry passes."""

    entries: tuple[str, ...]
    usd: float
    id: str = field(default_factory=lambda: uuid.uuid4().hex)
    settled: bool = False


class SharedCounters:
    """Budget reservations and circuit state in one Redis, for every instance."""

    def __init__(self, url: str, *, timeout: float = 0.5, reservation_seconds: float = 600.0):
        self.url = url
        self.reservation_seconds = reservation_seconds
        self._down = threading.Event()
        self._closing = threading.Event()
        self._lock = threading.Lock()
        self._probe: threading.Thread | None = None
        self.client = redis.Redis.from_url(
            url, socket_timeout=timeout, socket_connect_timeout=timeout,
            health_check_interval=0, decode_responses=True)
        try:
            self.client.ping()
        except redis.RedisError as exc:
            self.client.close()
            raise ConfigError(f"cannot reach Redis at {self.where}: {exc}") from None
        self._reserve = self.client.register_script(RESERVE)
        self._settle = self.client.register_script(SETTLE)
        self._circuit_allow = self.client.register_script(CIRCUIT_ALLOW)
        self._circuit_failure = self.client.register_script(CIRCUIT_FAILURE)

    @property
    def where(self) -> str:
        return without_password(self.url)

    @property
    def down(self) -> bool:
        return self._down.is_set()

    # -- budgets ----------------------------------------------------------------------------

    def reserve(self, limits: Sequence[Limit], usd: float,
                durable: Callable[[int], float]) -> Reservation | int:
        """Hold ``usd`` against every limit at once: the Reservation, or the index of the
        first limit it would break (nothing is held then). ``durable(i)`` reads limit i's
        spend from the durable store, asked only when Redis has no sum for it."""
        seeds: dict[int, float] = {}
        while True:
            reservation = Reservation(tuple(lim.entry for lim in limits), usd)
            args: list[str | float] = [reservation.id, usd, self.reservation_seconds, SUM_TTL]
            for i, lim in enumerate(limits):
                args += [lim.limit_usd, seeds.get(i, "")]
            keys = self._keys(reservation.entries)
            result = self._call(partial(self._reserve, keys=keys, args=args))
            status, index = str(result[0]), int(result[1]) - 1 if len(result) > 1 else -1
            if status == "ok":
                return reservation
            if status == "over":
                return index
            seeds[index] = durable(index)

    def settle(self, reservation: Reservation, usd: float) -> None:
        """Release the reservation and add the real cost (once; later calls do nothing)."""
        if reservation.settled:
            return
        reservation.settled = True
        keys = self._keys(reservation.entries)
        args: list[str | float] = [reservation.id, max(usd, 0.0)]
        self._call(lambda: self._settle(keys=keys, args=args))

    def spent(self, entry: str) -> float | None:
        """The sum Redis holds for an entry (settled costs only), or None if it has none."""
        value = self._call(lambda: self.client.get(self._key(entry)))
        return None if value is None else float(str(value))

    def reserved(self, entry: str) -> float:
        """Money reserved against an entry now (lapsed reservations included until the next
        script purges them)."""
        values = self._call(lambda: self.client.hvals(self._key(entry, "reserved")))
        return sum(float(v) for v in values)  # type: ignore[union-attr]

    @staticmethod
    def _key(entry: str, kind: str = "spent") -> str:
        return f"{PREFIX}budget:{{{entry}}}:{kind}"

    def _keys(self, entries: Sequence[str]) -> list[str]:
        return [self._key(e, kind) for e in entries for kind in ("spent", "reserved", "expiry")]

    # -- circuit breakers -------------------------------------------------------------------

    def circuit_allow(self, alias: str, failures: int, cooldown: float) -> bool:
        """Whether a call to ``alias`` may go: the circuit is closed, or it is half-open and
        this instance's probe is the one let through (for at most ``cooldown``)."""
        keys = self._circuit_keys(alias)
        args: list[str | float] = [failures, max(1, int(cooldown * 1000))]
        return bool(self._call(partial(self._circuit_allow, keys=keys, args=args)))

    def circuit_failure(self, alias: str, failures: int, cooldown: float) -> None:
        """One more consecutive failure; at ``failures`` the circuit opens for all."""
        keys = self._circuit_keys(alias)
        ms = max(1, int(cooldown * 1000))
        args: list[str | float] = [failures, ms, 10 * ms]
        self._call(partial(self._circuit_failure, keys=keys, args=args))

    def circuit_success(self, alias: str) -> None:
        """The upstream answered: the consecutive failures, and any probe, are over."""
        keys = self._circuit_keys(alias)
        self._call(partial(self.client.delete, keys[0], keys[2]))

    @staticmethod
    def _circuit_keys(alias: str) -> list[str]:
        return [f"{PREFIX}circuit:{{{alias}}}:{kind}" for kind in ("failures", "open", "probe")]

    # -- reachability -----------------------------------------------------------------------

    def check_up(self) -> None:
        """Fail at once while Redis is known to be unreachable."""
        if self._down.is_set():
            raise self._error()

    def reachable(self) -> bool:
        if self._down.is_set():
            return False
        try:
            self._call(self.client.ping)
        except CountersUnavailable:
            return False
        return True

    def call(self, call: Callable[[], Any]) -> Any:
        """Run one Redis call (a script of another component, e.g. ``rate_limits``):
        ``CountersUnavailable`` at once while Redis is known to be down."""
        return self._call(call)

    def _call(self, call: Callable[[], Any]) -> Any:
        self.check_up()
        try:
            return call()
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            raise self._unavailable(exc) from None

    def _error(self) -> CountersUnavailable:
        return CountersUnavailable(
            "Ownlight's shared counters (Redis) are unreachable, so no request that costs "
            "money can be let through; local models still answer. Try again shortly.",
            retry_after=RETRY_AFTER)

    def _unavailable(self, exc: Exception) -> CountersUnavailable:
        with self._lock:
            if not self._down.is_set() and not self._closing.is_set():
                log.error("Redis at %s is unreachable: %s", self.where, exc)
                self._down.set()
                self._probe = threading.Thread(target=self._watch, daemon=True,
                                               name="ownlight-redis-probe")
                self._probe.start()
        return self._error()

    def _watch(self) -> None:
        while not self._closing.wait(PROBE_EVERY):
            try:
                self.client.ping()
            except redis.RedisError:
                continue
            self._down.clear()
            log.warning("Redis at %s is reachable again", self.where)
            return

    def close(self) -> None:
        self._closing.set()
        if self._probe is not None:
            self._probe.join(5)
        self.client.close()
