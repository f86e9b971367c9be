"""Requests and tokens per minute, per key (or per group or tenant), on one instance or
across all of them.

A limit read from each instance's own memory multiplies by the number of instances (LiteLLM
#40291). With ``[redis] url`` set, every instance admits through one Lua script in Redis,
which Redis runs alone, so N instances under a burst admit no more than the limit in total;
without it, this instance keeps the same windows in memory.

The window is a sliding minute, kept exactly: each admitted request is an entry with its
time and its tokens. A request reserves its most tokens on admission (its prompt's
estimate plus ``max_tokens``, or ``[redis] reserve_output_tokens``), and the real count
replaces the reservation when the answer is done. A request is refused when the minute's
requests are at the limit, or when its tokens would take the minute over the limit, unless
the minute is empty (a request larger than the whole allowance still runs, alone).

A principal no limit matches costs nothing here. A limited one is refused (503, recorded)
while Redis is unreachable: the limit fails closed.
"""

from __future__ import annotations

import math
import threading
import time
import uuid
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from typing import Protocol

from ownlight.config.settings import RateLimitSettings
from ownlight.errors import CountersUnavailable, RateLimited
from ownlight.principal import Principal
from ownlight.routing.counters import PREFIX, SharedCounters

WINDOW = 60.0  # seconds: limits are per minute


@dataclass(frozen=True)
class Bucket:
    """One allowance: the rule's key in the store and its limits (0: none)."""

    key: str
    requests: int
    tokens: int
    who: str = "*"


@dataclass
class Admission:
    """A request let in: what it holds in each bucket until settled, and what remains."""

    id: str
    buckets: tuple[Bucket, ...]
    tokens: int
    remaining_requests: int | None = None
    remaining_tokens: int | None = None
    reset_seconds: float = 0.0
    limit_requests: int | None = None
    limit_tokens: int | None = None
    settled: bool = False

    def headers(self) -> dict[str, str]:
        """The rate-limit headers OpenAI's API sends (its SDKs and tools read them), and
        Anthropic's, so either protocol's clients can pace themselves."""
        out: dict[str, str] = {}
        reset = _duration(self.reset_seconds)
        at = datetime.fromtimestamp(time.time() + self.reset_seconds, UTC).isoformat(
            timespec="seconds").replace("+00:00", "Z")
        for kind, limit, remaining in (("requests", self.limit_requests, self.remaining_requests),
                                       ("tokens", self.limit_tokens, self.remaining_tokens)):
            if limit is None or remaining is None:
                continue
            out[f"x-ratelimit-limit-{kind}"] = str(limit)
            out[f"x-ratelimit-remaining-{kind}"] = str(max(0, remaining))
            out[f"x-ratelimit-reset-{kind}"] = reset
            out[f"anthropic-ratelimit-{kind}-limit"] = str(limit)
            out[f"anthropic-ratelimit-{kind}-remaining"] = str(max(0, remaining))
            out[f"anthropic-ratelimit-{kind}-reset"] = at
        return out


def _duration(seconds: float) -> str:
    """OpenAI's reset format: ``1s``, ``6m0s``."""
    whole = max(1, math.ceil(seconds))
    return f"{whole // 60}m{whole % 60}s" if whole >= 60 else f"{whole}s"


def matches(who: str, principal: Principal) -> bool:
    """``*``, a key name, ``user:NAME``, ``group:G`` or ``tenant:T``."""
    if who == "*":
        return True
    if who.startswith("tenant:"):
        return who[7:] == principal.tenant
    return who == principal.name or who in principal.identities


def buckets_for(rules: Sequence[RateLimitSettings], principal: Principal) -> tuple[Bucket, ...]:
    """The allowances that apply: per key unless the rule is shared by all it matches."""
    found = []
    for index, rule in enumerate(rules):
        if matches(rule.who, principal):
            owner = "shared" if rule.shared else f"{principal.tenant}/{principal.name}"
            found.append(Bucket(f"{index}:{rule.who}:{owner}", rule.requests_per_minute or 0,
                                rule.tokens_per_minute or 0, rule.who))
    return tuple(found)


def refusal(bucket: Bucket, kind: str, retry_after: float) -> RateLimited:
    limit = bucket.requests if kind == "requests" else bucket.tokens
    return RateLimited(
        f"Rate limit reached: {limit} {kind} per minute for {bucket.who}. "
        f"Try again in {max(1, math.ceil(retry_after))} s.",
        code="rate_limit_exceeded", retry_after=retry_after)


class Windows(Protocol):
    def admit(self, buckets: tuple[Bucket, ...], tokens: int) -> Admission: ...

    def settle(self, admission: Admission, tokens: int) -> None: ...


@dataclass
class _Window:
    entries: deque[tuple[float, str]] = field(default_factory=deque)
    tokens: dict[str, int] = field(default_factory=dict)

    def trim(self, now: float) -> None:
        while self.entries and self.entries[0][0] <= now - WINDOW:
            _, gone = self.entries.popleft()
            self.tokens.pop(gone, None)


class LocalWindows:
    """This instance's windows, in memory (one instance, or no Redis configured)."""

    def __init__(self) -> None:
        self._windows: dict[str, _Window] = {}
        self._lock = threading.Lock()

    def admit(self, buckets: tuple[Bucket, ...], tokens: int) -> Admission:
        now = time.monotonic()
        with self._lock:
            windows = [self._windows.setdefault(b.key, _Window()) for b in buckets]
            for bucket, window in zip(buckets, windows, strict=True):
                window.trim(now)
                oldest = window.entries[0][0] if window.entries else now
                retry = oldest + WINDOW - now
                if bucket.requests and len(window.entries) >= bucket.requests:
                    raise refusal(bucket, "requests", retry)
                used = sum(window.tokens.values())
                if bucket.tokens and window.entries and used + tokens > bucket.tokens:
                    raise refusal(bucket, "tokens", retry)
            admission = Admission(uuid.uuid4().hex, buckets, tokens)
            for window in windows:
                window.entries.append((now, admission.id))
                window.tokens[admission.id] = tokens
            _describe(admission, [(b, len(w.entries), sum(w.tokens.values()),
                                   w.entries[0][0] + WINDOW - now)
                                  for b, w in zip(buckets, windows, strict=True)])
        return admission

    def settle(self, admission: Admission, tokens: int) -> None:
        with self._lock:
            for bucket in admission.buckets:
                window = self._windows.get(bucket.key)
                if window is not None and admission.id in window.tokens:
                    window.tokens[admission.id] = tokens


def _describe(admission: Admission, state: list[tuple[Bucket, int, int, float]]) -> None:
    """What remains in the tightest of the buckets, for the response's headers."""
    for bucket, requests, tokens, reset in state:
        if bucket.requests and (admission.remaining_requests is None
                                or bucket.requests - requests < admission.remaining_requests):
            admission.remaining_requests = bucket.requests - requests
            admission.limit_requests = bucket.requests
        if bucket.tokens and (admission.remaining_tokens is None
                              or bucket.tokens - tokens < admission.remaining_tokens):
            admission.remaining_tokens = bucket.tokens - tokens
            admission.limit_tokens = bucket.tokens
        admission.reset_seconds = max(admission.reset_seconds, reset)


# KEYS: per bucket i, 2 keys: entries_i (zset id -> time), tokens_i (hash id -> tokens).
# ARGV: id, tokens, window, then per bucket i: requests_i, tokens_i (0: no limit).
# Returns {'over', i, kind, retry_ms} with nothing added, or {'ok', then per bucket i:
# count_i, tokens_i, reset_ms_i}. Times are Redis's own, so instances' clocks need not agree.
ADMIT = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
local id, want, window = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]) * 1000
local n = #KEYS / 2
local counts, sums, resets = {}, {}, {}
for i = 1, n do
  local entries, tokens = KEYS[2*i-1], KEYS[2*i]
  local gone = redis.call('ZRANGEBYSCORE', entries, '-inf', now - window)
  for _, old in ipairs(gone) do redis.call('HDEL', tokens, old) end
  redis.call('ZREMRANGEBYSCORE', entries, '-inf', now - window)
  local count = redis.call('ZCARD', entries)
  local used = 0
  for _, amount in ipairs(redis.call('HVALS', tokens)) do used = used + tonumber(amount) end
  local oldest = redis.call('ZRANGE', entries, 0, 0, 'WITHSCORES')
  local reset = window
  if oldest[2] then reset = tonumber(oldest[2]) + window - now end
  local max_requests, max_tokens = tonumber(ARGV[2+2*i]), tonumber(ARGV[3+2*i])
  if max_requests > 0 and count >= max_requests then return {'over', i, 'requests', reset} end
  if max_tokens > 0 and count > 0 and used + want > max_tokens then
    return {'over', i, 'tokens', reset}
  end
  counts[i], sums[i], resets[i] = count, used, reset
end
local out = {'ok'}
for i = 1, n do
  redis.call('ZADD', KEYS[2*i-1], now, id)
  redis.call('HSET', KEYS[2*i], id, want)
  redis.call('PEXPIRE', KEYS[2*i-1], window * 2)
  redis.call('PEXPIRE', KEYS[2*i], window * 2)
  table.insert(out, counts[i] + 1)
  table.insert(out, sums[i] + want)
  table.insert(out, resets[i])
end
return out
"""

# KEYS as for ADMIT; ARGV: id, tokens. The real count replaces the reservation, in every
# bucket that still holds the request (one whose minute has passed holds nothing).
SETTLE = """
for i = 1, #KEYS / 2 do
  if redis.call('HEXISTS', KEYS[2*i], ARGV[1]) == 1 then
    redis.call('HSET', KEYS[2*i], ARGV[1], ARGV[2])
  end
end
return 1
"""


class SharedWindows:
    """The same windows in Redis, shared by every instance (``[redis] url``)."""

    def __init__(self, counters: SharedCounters):
        self.counters = counters
        self._admit = counters.client.register_script(ADMIT)
        self._settle = counters.client.register_script(SETTLE)

    @staticmethod
    def _keys(buckets: Sequence[Bucket]) -> list[str]:
        return [f"{PREFIX}rate:{b.key}:{part}" for b in buckets for part in ("at", "tokens")]

    def admit(self, buckets: tuple[Bucket, ...], tokens: int) -> Admission:
        admission = Admission(uuid.uuid4().hex, buckets, tokens)
        args: list[str | int | float] = [admission.id, tokens, WINDOW]
        for bucket in buckets:
            args += [bucket.requests, bucket.tokens]
        try:
            result = self.counters.call(partial(self._admit, keys=self._keys(buckets),
                                                args=args))
        except CountersUnavailable as exc:
            raise CountersUnavailable(
                "Ownlight's shared counters (Redis) are unreachable, so a rate-limited key "
                "cannot be admitted (the limit fails closed). Try again shortly.",
                retry_after=exc.retry_after) from None
        if str(result[0]) == "over":
            raise refusal(buckets[int(result[1]) - 1], str(result[2]), int(result[3]) / 1000)
        values = [int(v) for v in result[1:]]
        _describe(admission, [(b, values[3 * i], values[3 * i + 1], values[3 * i + 2] / 1000)
                              for i, b in enumerate(buckets)])
        return admission

    def settle(self, admission: Admission, tokens: int) -> None:
        self.counters.call(partial(self._settle, keys=self._keys(admission.buckets),
                                   args=[admission.id, tokens]))


class RateLimits:
    """The configured limits (``[[limits]]``) over the windows that count them."""

    def __init__(self, rules: Sequence[RateLimitSettings], windows: Windows,
                 reserve_output_tokens: int):
        self.rules = list(rules)
        self.windows = windows
        self.reserve_output_tokens = reserve_output_tokens

    def admit(self, principal: Principal, prompt_chars: int,
              max_tokens: int | None) -> Admission | None:
        """Let the request in (its admission, None when no limit applies) or raise
        ``RateLimited`` (429, with when to retry) or ``CountersUnavailable`` (503)."""
        buckets = buckets_for(self.rules, principal)
        if not buckets:
            return None
        most = prompt_chars // 4 + (max_tokens or self.reserve_output_tokens)
        return self.windows.admit(buckets, most)

    def settle(self, admission: Admission, tokens: int | None) -> None:
        """Replace the reservation by the real count (once); a failed request that used no
        tokens holds none."""
        if admission.settled:
            return
        admission.settled = True
        self.windows.settle(admission, tokens or 0)
