"""An alias served by a pool of model servers (``[[models.NAME.replicas]]``).

One box rarely serves a whole company: the same open-weight model runs on several
servers (llama.cpp's server, vLLM, Ollama, other ``ownlight serve`` instances), and the
gateway in front must keep them busy, survive one of them dying or being upgraded, and
send each conversation where its prompt is already cached. llama.cpp and vLLM keep the
prefix they have evaluated in their KV cache, so the next turn of a conversation (or the
next request with the same long system prompt) costs its prefill again on any other
server: round-robin pays it once per server, affinity once per pool.

``ReplicaPool`` wraps one backend of the alias's kind per replica (an
``OpenAICompatBackend`` or ``AnthropicBackend``: the HTTP code is theirs) and is itself a
backend, so the pipeline, failover and egress protection see one alias:

- **Choice.** ``affinity`` (the default) hashes the first ``affinity_chars`` characters of
  the request's system text and first user turn (the part every turn of a conversation
  shares) and ranks the replicas by rendezvous hashing (highest random weight, weighted:
  ``-weight / ln(u)``), so a prefix always ranks the same replica first and removing a
  replica moves only the prefixes it held. The load is bounded ("consistent hashing with
  bounded loads", Mirrokni et al. 2018): a replica with more than ``(1+ε)`` × its weighted
  share of the requests in flight is passed over for the next in the ranking, so one hot
  prefix cannot swamp one server. A request with no text to hash (embeddings) and
  ``least_outstanding`` take the replica with the fewest requests in flight per unit of
  weight (ties: the fewest served per unit of weight, so idle traffic follows the
  weights too); ``round_robin`` is there as a baseline (bench/pools.py).
- **Health.** A request that fails on a replica for availability (connection refused or
  dropped, timeout, 5xx, 429) before any byte of its answer arrived is sent to another
  replica, within the request's deadline; once a stream has begun, a failure ends it.
  ``eject_failures`` failures in a row (errors, failed probes, answers slower than
  ``eject_latency``) take a replica out of rotation; a background probe (GET
  ``probe_path`` every ``probe_interval`` s) brings it back. If every replica is ejected
  they are all tried anyway (a pool that refuses everything helps no one).
- **Draining.** ``drain`` stops new work to a replica and waits for its requests in
  flight to finish (rolling upgrades: ``ownlight models drain NAME REPLICA``).
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import itertools
import logging
import math
import time
from collections import OrderedDict
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

from ownlight.backends.base import Backend, BackendResult, ReplicaStats
from ownlight.backends.http import HttpBackend
from ownlight.config import Config, ModelEntry
from ownlight.config.settings import ReplicaSettings
from ownlight.errors import OwnlightError, RateLimited, UpstreamError, UpstreamUnavailable
from ownlight.protocol.model import Chunk, Request, Response
from ownlight.protocol.slots import text_slots

log = logging.getLogger("ownlight.replicas")

PROBE_TIMEOUT = 5.0  # most seconds one probe waits (less when probes come more often)
_REMEMBERED = 4096  # answers whose replica is kept until the gateway asks (replica_for)


def replica_name(url: str) -> str:
    """A replica's name: its URL's host:port (what ``x-ownlight-replica`` says)."""
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return f"{parts.hostname}:{port}"


class Replica:
    """One model server of the pool, its load and its health."""

    def __init__(self, settings: ReplicaSettings, backend: HttpBackend):
        self.url = settings.url
        self.name = replica_name(settings.url)
        self.weight = settings.weight
        self.max_concurrent = settings.max_concurrent
        self.backend = backend
        self.outstanding = 0
        self.served = self.failures = self.ejections = 0
        self.affinity_hits = self.affinity_spills = 0
        self.consecutive_failures = 0
        self.ejected = False
        self.draining = False
        self.last_error: str | None = None
        self.idle = asyncio.Event()
        self.idle.set()

    @property
    def state(self) -> str:
        return "draining" if self.draining else "ejected" if self.ejected else "up"

    @property
    def has_room(self) -> bool:
        return self.max_concurrent <= 0 or self.outstanding < self.max_concurrent

    def begin(self) -> None:
        self.outstanding += 1
        self.idle.clear()

    def end(self) -> None:
        self.outstanding -= 1
        if self.outstanding == 0:
            self.idle.set()

    def stats(self) -> ReplicaStats:
        return ReplicaStats(self.name, self.url, self.state, self.weight, self.outstanding,
                            self.served, self.failures, self.ejections, self.affinity_hits,
                            self.affinity_spills, self.last_error)


class ReplicaPool(Backend):
    """An alias whose requests go to one of several model servers of one kind."""

    kind = "pool"
    replica_class: type[HttpBackend]

    def __init__(self, entry: ModelEntry, config: Config):
        super().__init__(entry, config)
        s = entry.settings
        self.routing = s.replica_routing
        self.affinity_chars = s.affinity_chars
        self.load_bound = s.load_bound
        self.probe_path = s.probe_path or self.replica_class.probe_path
        self.probe_interval = s.probe_interval
        self.eject_failures = max(1, s.eject_failures)
        self.eject_latency = s.eject_latency
        self.replicas: list[Replica] = []
        for r in s.replicas:
            own = dataclasses.replace(entry, base_url=r.url, api_key=r.api_key or entry.api_key)
            self.replicas.append(Replica(r, self.replica_class(own, config)))
        names = [r.name for r in self.replicas]
        if len(set(names)) != len(names):
            raise ValueError(f"[models.{entry.alias}] lists a replica twice: {names}")
        self._turn = itertools.count()
        self._served: OrderedDict[int, tuple[BackendResult, str]] = OrderedDict()
        self._prober: asyncio.Task[None] | None = None

    # -- the backend interface ----------------------------------------------------------

    async def start(self) -> None:
        for replica in self.replicas:
            await replica.backend.start()
        if self.probe_interval > 0 and self._prober is None:
            self._prober = asyncio.create_task(self._probe_forever())

    async def close(self) -> None:
        if self._prober is not None:
            self._prober.cancel()
            await asyncio.gather(self._prober, return_exceptions=True)
            self._prober = None
        await asyncio.gather(*(r.backend.close() for r in self.replicas))

    @property
    def ready(self) -> bool:
        return any(r.state == "up" for r in self.replicas)

    @property
    def failure(self) -> str | None:
        if self.ready:
            return None
        return "no replica in rotation: " + ", ".join(
            f"{r.name} {r.state}" + (f" ({r.last_error})" if r.last_error else "")
            for r in self.replicas)

    def replica_stats(self) -> list[ReplicaStats]:
        return [r.stats() for r in self.replicas]

    def replica_for(self, result: BackendResult) -> str | None:
        kept = self._served.pop(id(result), None)
        return kept[1] if kept is not None and kept[0] is result else None

    async def execute(self, request: Request) -> BackendResult:
        key = self.affinity_key(request) if self.routing == "affinity" else None
        tried: set[str] = set()
        last: OwnlightError | None = None
        while (choice := self.choose(key, tried)) is not None:
            replica, home = choice
            tried.add(replica.name)
            try:
                result = await self._attempt(replica, request)
            except (UpstreamError, RateLimited) as exc:  # nothing was sent to the client
                self._failed(replica, exc.message)
                last = exc
                continue
            if key is not None:
                if home:
                    replica.affinity_hits += 1
                else:
                    replica.affinity_spills += 1
            return self._remember(result, replica)
        if last is not None:
            raise last
        if any(r.state == "up" for r in self.replicas):
            raise UpstreamUnavailable(
                f"every replica of {self.entry.alias!r} in rotation has its max_concurrent "
                "requests in flight")
        raise UpstreamUnavailable(
            f"no replica of {self.entry.alias!r} is in rotation "
            f"({', '.join(f'{r.name} {r.state}' for r in self.replicas)})")

    # -- choosing a replica -------------------------------------------------------------

    def affinity_key(self, request: Request) -> bytes | None:
        """The digest of what every turn of a conversation shares: the system text and the
        first user turn (or the prompt of a completion), cut at ``affinity_chars``."""
        parts: list[str] = []
        first_user = next((i for i, t in enumerate(request.turns) if t.role == "user"), None)
        for slot in text_slots(request):
            place = slot.path[0]
            if place == "instructions" or place == "prompts" and slot.path[1] == 0 or (
                    place == "turns" and first_user is not None
                    and isinstance(slot.path[1], int) and slot.path[1] <= first_user):
                parts.append(slot.text)
        text = "\x1e".join(parts)[: self.affinity_chars]
        if not text:
            return None
        return hashlib.blake2b(text.encode(), digest_size=16).digest()

    def choose(self, key: bytes | None, tried: set[str]) -> tuple[Replica, bool] | None:
        """The replica for the next attempt, and whether it is the key's first choice."""
        fresh = [r for r in self.replicas if r.name not in tried]
        serving = [r for r in fresh if not r.draining and not r.ejected and r.has_room]
        if not serving and not any(not r.ejected for r in self.replicas):
            serving = [r for r in fresh if not r.draining]  # all ejected: try them anyway
        if not serving:
            return None
        if self.routing == "round_robin":
            return serving[next(self._turn) % len(serving)], False
        if key is not None:
            ranked = sorted(self.replicas, key=lambda r: _rendezvous(key, r), reverse=True)
            live = [r for r in self.replicas if not r.draining and not r.ejected]
            total = sum(r.outstanding for r in live) + 1
            weights = sum(r.weight for r in live) or 1.0
            for replica in ranked:
                if replica not in serving:
                    continue
                bound = math.ceil((1 + self.load_bound) * total * replica.weight / weights)
                if replica.outstanding + 1 <= bound:
                    return replica, replica is ranked[0]
        least = min(serving, key=lambda r: (r.outstanding / r.weight, r.served / r.weight))
        return least, key is not None and least is self._home(key)

    def _home(self, key: bytes) -> Replica:
        return max(self.replicas, key=lambda r: _rendezvous(key, r))

    # -- one attempt, its stream, its outcome -------------------------------------------

    async def _attempt(self, replica: Replica, request: Request) -> BackendResult:
        """Call one replica; a stream is returned only once its first chunk has come, so
        a replica that fails before answering raises here and the next one is tried."""
        replica.begin()
        started = time.monotonic()
        try:
            result = await replica.backend.execute(request)
            if not isinstance(result, Response):
                result = await _first_chunk(result)
        except BaseException:
            replica.end()
            raise
        replica.served += 1
        if self.eject_latency > 0 and time.monotonic() - started > self.eject_latency:
            self._failed(replica, f"first byte after {time.monotonic() - started:.1f} s "
                                  f"(eject_latency {self.eject_latency:g} s)")
        else:
            replica.consecutive_failures = 0
        if isinstance(result, Response):
            replica.end()
            return result
        return self._tracked(replica, result)

    async def _tracked(self, replica: Replica,
                       chunks: AsyncIterator[Chunk]) -> AsyncIterator[Chunk]:
        """A stream that counts as in flight on its replica until it ends; one that
        breaks mid-answer counts against the replica (and is not retried elsewhere)."""
        try:
            async for chunk in chunks:
                yield chunk
        except UpstreamError as exc:
            self._failed(replica, exc.message)
            raise
        finally:
            await chunks.aclose()  # type: ignore[attr-defined]
            replica.end()

    def _failed(self, replica: Replica, why: str) -> None:
        replica.failures += 1
        replica.consecutive_failures += 1
        replica.last_error = why
        if not replica.ejected and replica.consecutive_failures >= self.eject_failures:
            replica.ejected = True
            replica.ejections += 1
            log.warning("replica %s of %s ejected after %d failures in a row: %s",
                        replica.name, self.entry.alias, replica.consecutive_failures, why)

    def _returned(self, replica: Replica) -> None:
        replica.consecutive_failures = 0
        if replica.ejected:
            replica.ejected = False
            log.warning("replica %s of %s is back in rotation", replica.name,
                        self.entry.alias)

    def _remember(self, result: BackendResult, replica: Replica) -> BackendResult:
        self._served[id(result)] = (result, replica.name)
        while len(self._served) > _REMEMBERED:
            self._served.popitem(last=False)
        return result

    # -- probes and draining ------------------------------------------------------------

    async def probe_all(self) -> None:
        """One round of health probes: a failed one counts towards ejection, a good one
        brings an ejected replica back."""
        timeout = min(PROBE_TIMEOUT, self.probe_interval or PROBE_TIMEOUT)

        async def one(replica: Replica) -> None:
            problem = await replica.backend.probe(self.probe_path, timeout)
            if problem is None:
                self._returned(replica)
            else:
                self._failed(replica, problem)

        await asyncio.gather(*(one(r) for r in self.replicas))

    async def _probe_forever(self) -> None:
        while True:
            await asyncio.sleep(self.probe_interval)
            try:
                await self.probe_all()
            except Exception:  # a probe bug must not end the probing
                log.exception("probing the replicas of %s failed", self.entry.alias)

    def replica(self, name: str) -> Replica:
        """A replica by host:port, URL or position (0 first)."""
        for i, replica in enumerate(self.replicas):
            if name in (replica.name, replica.url, replica.url.rstrip("/"), str(i)):
                return replica
        raise KeyError(f"{self.entry.alias} has no replica {name!r} (replicas: "
                       f"{', '.join(r.name for r in self.replicas)})")

    async def drain(self, name: str, wait: float) -> Replica:
        """Stop new work to a replica, then wait up to ``wait`` s for its requests."""
        replica = self.replica(name)
        replica.draining = True
        log.warning("replica %s of %s draining (%d in flight)", replica.name,
                    self.entry.alias, replica.outstanding)
        if wait > 0:
            try:
                async with asyncio.timeout(wait):
                    await replica.idle.wait()
            except TimeoutError:
                pass
        return replica

    def undrain(self, name: str) -> Replica:
        replica = self.replica(name)
        replica.draining = False
        return replica


def _rendezvous(key: bytes, replica: Replica) -> float:
    """Weighted rendezvous score: the replica with the highest serves the key."""
    digest = hashlib.blake2b(key + replica.name.encode(), digest_size=8).digest()
    u = (int.from_bytes(digest, "big") + 1) / (2**64 + 2)  # in (0, 1)
    return -replica.weight / math.log(u)


async def _first_chunk(chunks: AsyncIterator[Chunk]) -> AsyncIterator[Chunk]:
    """Wait for a stream's first chunk (errors before it raise now), then relay it all."""
    try:
        first = await anext(chunks)
    except StopAsyncIteration:
        return _relay(None, chunks)
    except BaseException:
        await chunks.aclose()  # type: ignore[attr-defined]
        raise
    return _relay(first, chunks)


async def _relay(first: Chunk | None, rest: AsyncIterator[Chunk]) -> AsyncIterator[Chunk]:
    try:
        if first is not None:
            yield first
        async for chunk in rest:
            yield chunk
    finally:
        await rest.aclose()  # type: ignore[attr-defined]


def pool_of(kind: type[Backend]) -> type[ReplicaPool]:
    """The pool class for a kind of HTTP backend: it speaks the kind's protocol."""
    if not issubclass(kind, HttpBackend):
        raise ValueError(f"{kind.kind} backends cannot be pooled (replicas are HTTP servers)")
    return type(f"{kind.__name__}Pool", (ReplicaPool,), {
        "kind": kind.kind, "wire_protocol": kind.wire_protocol,
        "operations": kind.operations, "can_stream": kind.can_stream, "replica_class": kind})
