"""Keeping work going when a target fails: retries with backoff and circuit breakers.

A target that fails ``failures`` times in a row is skipped for ``cooldown`` seconds;
then one request is let through as a probe, and its outcome closes or re-opens the
circuit. Only availability errors count (connection, timeout, 5xx, 429); a client's
own bad request is not the target's fault.

With shared counters (``[redis] url``), each circuit is a ``SharedCircuit``: the failures
and the open state live in Redis, so an upstream one instance sees failing is skipped by
every instance (only for upstreams: an in-process model's health is its own instance's).
Each keeps its local circuit counting too, and falls back to it while Redis
is unreachable (then each instance judges alone, as without Redis).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TypeVar

from ownlight.errors import CountersUnavailable, OwnlightError, RateLimited, UpstreamError
from ownlight.routing.counters import SharedCounters

T = TypeVar("T")

RETRYABLE = (UpstreamError, RateLimited)
# An upstream's Retry-After is honoured before a retry, up to this many seconds; a
# longer wait is not worth holding the client for: the 429 goes back with the header.
MAX_RETRY_AFTER = 10.0


@dataclass(frozen=True)
class HealthPolicy:
    retries: int = 1
    backoff: float = 0.2
    failures: int = 3
    cooldown: float = 30.0


@dataclass
class Circuit:
    policy: HealthPolicy
    clock: Callable[[], float] = time.monotonic
    consecutive_failures: int = 0
    open_until: float = 0.0
    probing: bool = field(default=False)

    @property
    def state(self) -> str:
        if self.consecutive_failures < self.policy.failures:
            return "closed"
        return "half-open" if self.clock() >= self.open_until else "open"

    def allow(self) -> bool:
        state = self.state
        if state == "closed":
            return True
        if state == "half-open" and not self.probing:
            self.probing = True
            return True
        return False

    def success(self) -> None:
        self.consecutive_failures = 0
        self.probing = False

    def failure(self) -> None:
        self.consecutive_failures += 1
        self.probing = False
        if self.consecutive_failures >= self.policy.failures:
            self.open_until = self.clock() + self.policy.cooldown


@dataclass
class SharedCircuit(Circuit):
    """A circuit whose failures and open state every instance shares through Redis, with
    the local circuit (kept counting all along) as the fallback while Redis is away."""

    alias: str = ""
    counters: SharedCounters | None = None

    def allow(self) -> bool:
        assert self.counters is not None
        try:
            return self.counters.circuit_allow(self.alias, self.policy.failures,
                                               self.policy.cooldown)
        except CountersUnavailable:
            return super().allow()

    def success(self) -> None:
        super().success()
        assert self.counters is not None
        try:
            self.counters.circuit_success(self.alias)
        except CountersUnavailable:
            pass

    def failure(self) -> None:
        super().failure()
        assert self.counters is not None
        try:
            self.counters.circuit_failure(self.alias, self.policy.failures,
                                          self.policy.cooldown)
        except CountersUnavailable:
            pass


class CircuitOpen(UpstreamError):
    code = "circuit_open"


class HealthTracker:
    """One circuit per target alias, shared by all requests of a gateway."""

    def __init__(self, clock: Callable[[], float] = time.monotonic,
                 counters: SharedCounters | None = None):
        self.clock = clock
        self.counters = counters
        self.circuits: dict[str, Circuit] = {}

    def circuit(self, alias: str, policy: HealthPolicy, shared: bool = True) -> Circuit:
        """``shared``: the target is one server all instances call (an upstream), so its
        circuit is shared when there are counters; an in-process model's is its own."""
        if alias not in self.circuits:
            self.circuits[alias] = Circuit(policy, self.clock) \
                if self.counters is None or not shared \
                else SharedCircuit(policy, self.clock, alias=alias, counters=self.counters)
        return self.circuits[alias]

    async def call(self, alias: str, policy: HealthPolicy,
                   attempt: Callable[[], Awaitable[T]], shared: bool = True) -> T:
        circuit = self.circuit(alias, policy, shared)
        if not circuit.allow():
            raise CircuitOpen(f"{alias} is cooling down after repeated failures")
        for tries in range(policy.retries + 1):
            try:
                result = await attempt()
            except RETRYABLE as exc:
                wait = policy.backoff * (2**tries)
                retry_after = getattr(exc, "retry_after", None)
                if retry_after is not None:
                    wait = max(wait, retry_after)
                if tries < policy.retries and circuit.state == "closed" \
                        and wait <= MAX_RETRY_AFTER:
                    await asyncio.sleep(wait)
                    continue
                circuit.failure()
                raise
            except OwnlightError:
                circuit.success()  # the target answered; the request was at fault
                raise
            circuit.success()
            return result
        raise AssertionError("unreachable")
