"""Failover as a backend over ordered targets (pydantic-ai's ``FallbackModel`` is the
shape): each target is tried through the health tracker (its retries and circuit
breaker), the next one only when ``fallback_on`` says the error is about availability.

A stream fails over only before its first chunk: ``execute`` waits for that chunk, so a
backend that fails early raises here, before anything has reached the client.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from functools import partial
from typing import Protocol

from ownlight.backends.base import BackendResult, Json
from ownlight.errors import EndpointNotServed, OwnlightError, RateLimited, UpstreamError
from ownlight.protocol.model import Chunk, Request, Response
from ownlight.routing.decision import RouteDecision, Target
from ownlight.routing.health import HealthTracker


class Executes(Protocol):
    """What the fallback calls: a backend, or a wrapper with a backend's ``execute``."""

    @property
    def wire_protocol(self) -> str | None: ...

    def label_for(self, result: BackendResult) -> str: ...

    def replica_for(self, result: BackendResult) -> str | None: ...

    async def execute(self, request: Request) -> BackendResult: ...


def availability_error(exc: OwnlightError) -> bool:
    """Fail over when the target is unavailable, never when the request is at fault."""
    return isinstance(exc, UpstreamError | RateLimited | EndpointNotServed)


class Served:
    """What the answering target added: its label, the pool member that answered, its
    headers (in-process backends')."""

    def __init__(self) -> None:
        self.label: str | None = None
        self.replica: str | None = None
        self.headers: dict[str, str] = {}


class FallbackBackend:
    """The route's targets in order; the first that answers serves. ``route.served_by``
    names it and ``route.failures`` the ones skipped, for the reason header."""

    def __init__(self, route: RouteDecision, health: HealthTracker,
                 backend_for: Callable[[Target], Executes],
                 fallback_on: Callable[[OwnlightError], bool] = availability_error):
        self.route = route
        self.health = health
        self.backend_for = backend_for
        self.fallback_on = fallback_on
        self.served = Served()

    async def execute(self, request: Request) -> BackendResult:
        last_error: OwnlightError | None = None
        for target in self.route.targets:
            backend = self.backend_for(target)
            try:
                result = await self.health.call(
                    target.alias, target.health, partial(self._attempt, backend, request),
                    shared=target.remote)
            except OwnlightError as exc:
                if not self.fallback_on(exc):
                    raise
                last_error = exc
                self.route.failures.append(f"{target.alias} {exc.code}")
                continue
            self.route.served_by = target
            return result
        assert last_error is not None
        raise last_error

    async def _attempt(self, backend: Executes, request: Request) -> BackendResult:
        result = await backend.execute(request)
        label = backend.label_for(result)
        self.served.replica = backend.replica_for(result)
        own = self.served.headers if backend.wire_protocol is None else {}
        if isinstance(result, Response):
            own.update(_backend_headers(result.extra))
        else:
            result = await _started(result, own)
        self.served.label = label
        return result


def _backend_headers(extra: Json) -> dict[str, str]:
    """The ``x-ownlight-*`` headers an in-process backend put in an answer's ``extra``,
    taken out of it (``x-ownlight-max-tokens``: the answer's budget was lowered)."""
    return {k: str(extra.pop(k)) for k in [k for k in extra if k.startswith("x-ownlight-")]}


async def _started(chunks: AsyncIterator[Chunk],
                   headers: dict[str, str]) -> AsyncIterator[Chunk]:
    """Wait for a stream's first chunk, so early failures raise before any byte is sent;
    take the backend's headers from it."""
    try:
        first = await anext(chunks)
    except StopAsyncIteration:
        return _empty()
    headers.update(_backend_headers(first.extra))
    return _prepend(first, chunks)


async def _empty() -> AsyncIterator[Chunk]:
    return
    yield


async def _prepend(first: Chunk, rest: AsyncIterator[Chunk]) -> AsyncIterator[Chunk]:
    try:
        yield first
        async for chunk in rest:
            yield chunk
    finally:
        await rest.aclose()  # type: ignore[attr-defined]
