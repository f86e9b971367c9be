"""Serving a registry name: the promoted version answers, and a switch fails no request.

An alias configured with ``path = "registry:NAME"`` is a :class:`ManagedBackend`. On
each request (and, with a shared registry, every second besides, ``FOLLOW_EVERY``, so an
idle instance follows too and reports what it cannot serve), it asks the
:class:`Lifecycle` which version NAME serves; that costs one read of a one-row counter,
and the registry table is read again only when a switch (``ownlight models promote`` or
``rollback``, from any process or, with ``[store] url``, any machine) has bumped it.
Polling that counter rather than a notice keeps one mechanism for SQLite and PostgreSQL,
and a missed notice can never leave an instance behind.

When the wanted version changes, the new version is loaded in the background (its
sha256 checked first) while the old one keeps answering; once it is loaded, new
requests go to it. Requests already running hold a lease on the old version's backend,
so they finish there. A version whose file fails its check is refused with the reason,
recorded in the audit ledger, and the old version keeps serving.

Several instances sharing the registry (PostgreSQL) must agree on what a name serves, so
there a version that cannot be loaded stops the old one too: an instance without the
promoted version's file (this machine never imported it) answers 503 for the alias and
reports it not ready in ``/readyz``, instead of quietly serving another version than its
peers; it serves again once the file is here (``ownlight models import`` of the same
file) or the name is rolled back.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from typing import Any, ClassVar

from ownlight.audit.records import AdminRecord
from ownlight.backends import backend_class
from ownlight.backends.base import Backend, BackendResult, Operation
from ownlight.backends.pool import Lease, ModelPool
from ownlight.config import Config, ModelEntry
from ownlight.errors import ModelNotReady, StoreUnavailable, UpstreamUnavailable
from ownlight.models.describe import MB, ModelFacts
from ownlight.models.registry import (
    REGISTRY_PREFIX,
    ModelVersion,
    Registry,
    RegistryError,
    file_problem,
)
from ownlight.protocol.model import Chunk, Request, Response
from ownlight.store.base import RegistryDatabase

log = logging.getLogger("ownlight.models")

Audit = Callable[[AdminRecord], object]
FOLLOW_EVERY = 1.0  # seconds between an idle instance's reads of the generation counter
NOT_READY_RETRY = 5.0  # seconds a client is told to wait when this instance lacks a file


def is_managed(entry: ModelEntry) -> bool:
    return bool(entry.path and entry.path.startswith(REGISTRY_PREFIX))


def memory_needed(version: ModelVersion, n_ctx: int) -> int:
    return ModelFacts(**version.facts).memory_needed(n_ctx)


async def load_version(entry: ModelEntry, config: Config, version: ModelVersion) -> Backend:
    """A started backend for one version, after its file passes the sha256 check."""
    problem = await asyncio.to_thread(file_problem, version)
    if problem:
        raise RegistryError(problem)
    return await start_version(entry, config, version)


async def start_version(entry: ModelEntry, config: Config, version: ModelVersion) -> Backend:
    """A started backend for one version whose file was checked already."""
    inner = replace(entry, path=str(version.path), sha256=None, model=version.ref)
    backend = backend_class(entry.backend)(inner, config)
    await asyncio.to_thread(backend.prepare)
    try:
        await backend.start()
    except BaseException:
        await backend.close()
        raise
    return backend


def memory_pool(config: Config) -> ModelPool:
    """The pool registry versions load into, under ``lifecycle.memory_budget_mb``."""
    return ModelPool(config.settings.lifecycle.memory_budget_mb * MB)


class Lifecycle:
    """The registry as a running gateway sees it, shared by its managed aliases."""

    def __init__(self, registry: Registry, pool: ModelPool, audit: Audit | None = None):
        self.registry = registry
        self.pool = pool
        self.audit = audit
        self.generation = -1  # the registry's switch counter, as last read
        self._served: dict[str, int] = {}

    @classmethod
    def from_config(cls, config: Config, store: RegistryDatabase,
                    shared: bool = False) -> Lifecycle:
        return cls(Registry(store, config.data_dir, shared), memory_pool(config))

    def wanted(self, name: str) -> int | None:
        """The version ``name`` should serve now (re-read only after a switch). While the
        shared store is unreachable, what it said last: the key check fails closed anyway,
        and ``/readyz`` reports the store, not a traceback."""
        try:
            generation = self.registry.generation()
        except StoreUnavailable:
            return self._served.get(name)
        if generation != self.generation:
            self._served = self.registry.served()
            self.generation = generation
        return self._served.get(name)

    def record(self, action: str, subject: str, details: dict[str, Any]) -> None:
        if self.audit is not None:
            self.audit(AdminRecord(action, subject, "server", details=details))

    async def close(self) -> None:
        await self.pool.close()


class ManagedBackend(Backend):
    kind = "registry"
    operations: ClassVar[frozenset[Operation]] = frozenset({Operation.CHAT,
                                                            Operation.COMPLETION})

    def __init__(self, entry: ModelEntry, config: Config, lifecycle: Lifecycle):
        super().__init__(entry, config)
        self.name = (entry.path or "").removeprefix(REGISTRY_PREFIX)
        self.lifecycle = lifecycle
        self.serving: ModelVersion | None = None
        self.refused: dict[int, str] = {}  # versions whose load failed, and why
        self._refused_at = -1  # the generation they were refused in; a new switch retries
        self._switch: asyncio.Task[None] | None = None
        self._follower: asyncio.Task[None] | None = None
        self._absent: set[int] = set()  # refused because this machine lacks the file
        self._started = False

    @property
    def model_name(self) -> str:
        return self.serving.ref if self.serving else self.name

    @property
    def served_version(self) -> str | None:
        return self.serving.ref if self.serving else None

    @property
    def ready(self) -> bool:
        """Started, and serving a version (or none is promoted yet: nothing to load)."""
        return self._started and (self.serving is not None
                                  or self.lifecycle.wanted(self.name) is None)

    @property
    def failure(self) -> str | None:
        """Set when no version serves because the wanted one was refused."""
        wanted = self.lifecycle.wanted(self.name)
        if self.serving is None and wanted is not None and wanted in self.refused:
            return f"{self.name}@{wanted} refused: {self.refused[wanted]}"
        return None

    def label_for(self, result: BackendResult) -> str:
        model = result.model if isinstance(result, Response) else getattr(result, "model", None)
        return f"{self.entry.alias}/{model}" if model else self.route_label

    def status(self) -> dict[str, Any]:
        wanted = self.lifecycle.wanted(self.name)
        view: dict[str, Any] = {"version": self.served_version}
        if wanted is not None and wanted in self.refused:
            view["refused"] = {"version": f"{self.name}@{wanted}", "reason": self.refused[wanted]}
        return view

    async def start(self) -> None:
        await self._follow(wait=True)
        self._started = True
        if self.lifecycle.registry.shared:  # alone, the next request is soon enough
            self._follower = asyncio.create_task(self._keep_following())

    async def close(self) -> None:
        if self._follower is not None:
            self._follower.cancel()
            await asyncio.gather(self._follower, return_exceptions=True)
        await super().close()

    async def _keep_following(self) -> None:
        """Follow switches while no request comes (a new version is loaded before the
        first request for it), and notice a missing file that has arrived since."""
        while True:
            await asyncio.sleep(FOLLOW_EVERY)
            try:
                wanted = self.lifecycle.wanted(self.name)
                if wanted in self._absent and wanted is not None \
                        and self._missing(wanted) is None:
                    self._absent.discard(wanted)
                    self.refused.pop(wanted, None)
                await self._follow(wait=False)
            except Exception as exc:  # the store unreachable: try again next time
                log.warning("%s: cannot read the registry: %s", self.name, exc)

    async def execute(self, request: Request) -> BackendResult:
        await self._follow(wait=self.serving is None)
        version = self.serving
        if version is None:
            wanted = self.lifecycle.wanted(self.name)
            if self.lifecycle.registry.shared and wanted in self.refused:
                raise ModelNotReady(f"Model '{self.entry.alias}' is not ready on this "
                                    f"instance: {self.refused[wanted]}",
                                    retry_after=NOT_READY_RETRY)
            why = (self.refused.get(wanted, "") if wanted is not None else
                   f"no version is promoted (ownlight models promote {self.name}@N)")
            raise UpstreamUnavailable(f"Model '{self.entry.alias}' cannot serve: {why}")
        lease = await self._lease(version)
        try:
            result = await lease.backend.execute(request)
        except BaseException:
            lease.release()
            raise
        if isinstance(result, Response):
            lease.release()
            return result
        return LeasedStream(result, lease, version.ref)

    async def _lease(self, version: ModelVersion) -> Lease:
        try:
            return await self.lifecycle.pool.lease(
                version.ref, memory_needed(version, self.entry.n_ctx),
                lambda: load_version(self.entry, self.config, version))
        except RegistryError as exc:  # the serving version's file broke while unloaded
            raise UpstreamUnavailable(f"Model '{self.entry.alias}' cannot be loaded: "
                                      f"{exc}") from None

    async def _follow(self, wait: bool) -> None:
        """Start switching to the wanted version if it changed; ``wait`` for the switch."""
        wanted = self.lifecycle.wanted(self.name)
        if self.refused and self._refused_at != self.lifecycle.generation:
            self.refused.clear()
        current = self.serving.version if self.serving else None
        if wanted is None or wanted == current or wanted in self.refused:
            return
        if self.lifecycle.registry.shared:
            missing = self._missing(wanted)
            if missing is not None:  # refused at once: the old version must not answer
                self._absent.add(wanted)
                self._refuse(wanted, missing)
                return
        if self._switch is None or self._switch.done():
            self._switch = asyncio.create_task(self._switch_to(wanted))
        if wait:
            await asyncio.shield(self._switch)

    async def _switch_to(self, number: int) -> None:
        old = self.serving
        try:
            version = self.lifecycle.registry.get(self.name, number)
            lease = await self._lease(version)
        except Exception as exc:
            self._refuse(number, getattr(exc, "message", None) or str(exc))
            return
        lease.release()
        self.serving = version
        log.info("%s now serves %s (was %s)", self.entry.alias, version.ref,
                 old.ref if old else "nothing")
        self.lifecycle.record("model.switch", version.ref,
                              {"alias": self.entry.alias, "from": old.ref if old else None,
                               "sha256": version.sha256})


    def _missing(self, number: int) -> str | None:
        """Why this machine cannot serve version ``number`` at once: no file of the
        imported size where it should be (the sha256 is checked when it loads)."""
        try:
            version = self.lifecycle.registry.get(self.name, number)
        except RegistryError as exc:
            return str(exc)
        try:
            size = version.path.stat().st_size
        except OSError:
            return (f"this instance does not hold {version.ref}'s file (sha256 "
                    f"{version.sha256[:16]}…); import the same file here (ownlight models "
                    f"import PATH --name {self.name}) or share models/registry")
        if size != version.size:
            return f"{version.ref}: its file {version.path} is {size} bytes, not {version.size}"
        return None

    def _refuse(self, number: int, reason: str) -> None:
        """Record why ``number`` cannot serve. Alone, the old version keeps serving; with
        a shared registry, it stops too, so no instance serves what its peers do not."""
        old = self.serving
        if self.lifecycle.registry.shared:
            self.serving = None
        self.refused[number] = reason
        self._refused_at = self.lifecycle.generation
        keeps = old.ref if old and self.serving else "nothing"
        log.error("%s@%s refused; %s serves: %s", self.name, number, keeps, reason)
        self.lifecycle.record("model.load_refused", f"{self.name}@{number}",
                              {"alias": self.entry.alias, "reason": reason,
                               "serving": old.ref if old and self.serving else None})


class LeasedStream:
    """A streamed answer that holds its model version until the stream is closed."""

    def __init__(self, chunks: AsyncIterator[Chunk], lease: Lease, model: str):
        self._chunks = chunks
        self._lease = lease
        self.model = model

    def __aiter__(self) -> LeasedStream:
        return self

    async def __anext__(self) -> Chunk:
        try:
            return await anext(self._chunks)
        except BaseException:
            self._lease.release()
            raise

    async def aclose(self) -> None:
        try:
            await self._chunks.aclose()  # type: ignore[attr-defined]
        finally:
            self._lease.release()
