"""Everything a running gateway holds, built once from the config.

The server, the CLI and the tests all build a ``Runtime`` the same way, so there is
one place where backends are created, started and closed. Building one makes this
process's files private (``store.files``: umask 077, the data dir checked). The shared
state (keys, spend, stored responses) comes from ``store.open``, in the SQLite state file
or in PostgreSQL when ``[store] url`` is set; nothing built here knows which. With
``[redis] url`` set, budgets reserve through the counters every instance shares.
"""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ownlight.audit.ledger import Ledger
from ownlight.audit.metrics import Metrics
from ownlight.audit.refusals import RefusalLog
from ownlight.audit.shared import LedgerRows, PgLedgerStore, behind
from ownlight.auth import KeyStore
from ownlight.backends import Backend, backend_class
from ownlight.backends.base import ReplicaStats
from ownlight.backends.managed import Lifecycle, ManagedBackend, is_managed
from ownlight.backends.replicas import pool_of
from ownlight.config import Config, ModelEntry
from ownlight.config.settings import BACKEND_KINDS
from ownlight.errors import OwnlightError
from ownlight.guard.stage import InjectionGuard
from ownlight.knowledge.service import KnowledgeService
from ownlight.mcp.builtins import knowledge_search
from ownlight.mcp.hub import Builtin, ToolHub
from ownlight.mcp.oauth import OAuthBroker
from ownlight.mcp.pins import ToolPins
from ownlight.mcp.token_box import TokenBox, load_key
from ownlight.models.files import Progress
from ownlight.models.registry import REGISTRY_PREFIX
from ownlight.pipeline import Pipeline
from ownlight.privacy.stage import PrivacyShield
from ownlight.routing.budgets import BudgetBook, budgets_from
from ownlight.routing.counters import SharedCounters
from ownlight.routing.health import HealthTracker
from ownlight.routing.rate_limits import LocalWindows, RateLimits, SharedWindows
from ownlight.routing.router import Router
from ownlight.routing.scoring import LazyScorer
from ownlight.store.base import ResponseStore, SpendRows
from ownlight.store.files import secure_data_dir
from ownlight.store.mcp_tokens import StoredTokens
from ownlight.store.open import Stores, open_stores, store_url
from ownlight.store.sqlite import StateStore

if TYPE_CHECKING:
    from ownlight.audit.tracing import Tracing

log = logging.getLogger("ownlight")

YOUNG_COLLECTION_EVERY = 10_000  # allocations between young GC passes (default 700)


def state_path(config: Config) -> str:
    return str(config.data_dir / "state.db")


def open_state(config: Config) -> StateStore:
    """This instance's SQLite state file (the ledger, the registry; and the shared state
    too when no ``[store] url`` is set)."""
    return StateStore(state_path(config))


@contextmanager
def open_keys(config: Config) -> Iterator[KeyStore]:
    """The key store of the configured store, closed on leaving (for the CLI)."""
    state = open_state(config)
    try:
        stores = open_stores(config, state)
        try:
            yield KeyStore(stores.keys)
        finally:
            stores.close()
    finally:
        state.close()


def open_ledger(config: Config, chainer: str = "thread") -> Ledger:
    """``chainer="process"`` for the server: chaining runs in a child process (see
    ``ownlight.audit.ledger``)."""
    audit = config.settings.audit
    return Ledger(state_path(config), bodies=audit.bodies,
                  checkpoint_every=audit.checkpoint_every, chainer=chainer,
                  ship_to=store_url(config))


def build_guard(config: Config) -> InjectionGuard | None:
    settings = config.settings.guard
    return InjectionGuard(settings) if settings.enabled else None


def build_privacy(config: Config) -> PrivacyShield | None:
    settings = config.settings.privacy
    if not settings.enabled:
        return None
    shield = PrivacyShield(settings)
    shield.warm_up()  # NER models load now (about a second), not on a user's request
    return shield


def open_counters(config: Config) -> SharedCounters | None:
    """The shared counters of ``[redis] url`` (its secret read now), or None: each instance
    counts alone. An unreachable Redis at start-up is a ``ConfigError``."""
    settings = config.settings.redis
    url = settings.url.reveal().strip() if settings.url is not None else ""
    if not url:
        return None
    return SharedCounters(url, timeout=settings.timeout,
                          reservation_seconds=settings.reservation_seconds)


def build_limits(config: Config, counters: SharedCounters | None) -> RateLimits | None:
    """``[[limits]]`` over Redis when every instance shares it, else in this one's memory."""
    rules = config.settings.limits
    if not rules:
        return None
    windows = SharedWindows(counters) if counters is not None else LocalWindows()
    return RateLimits(rules, windows, config.settings.redis.reserve_output_tokens)


def build_router(config: Config, backends: Mapping[str, Backend], spend: SpendRows,
                 counters: SharedCounters | None = None) -> Router:
    settings = config.settings.routing
    budgets = BudgetBook(spend, budgets_from(settings.budgets), counters=counters,
                         reserve_output_tokens=config.settings.redis.reserve_output_tokens)
    return Router(backends, settings, budgets, LazyScorer(settings.router_path))


@dataclass
class Runtime:
    config: Config
    keys: KeyStore
    backends: dict[str, Backend]
    pipeline: Pipeline
    responses: ResponseStore
    lifecycle: Lifecycle | None = None
    load_errors: dict[str, str] = field(default_factory=dict)
    tracing: Tracing | None = None  # audit.otlp_endpoint
    refusals: RefusalLog | None = None  # 401s and 403s, into the ledger
    stores: Stores | None = None  # the shared state, closed with the runtime
    state_file: StateStore | None = None  # this instance's SQLite file
    counters: SharedCounters | None = None  # [redis] url: shared budgets and circuits
    mcp: ToolHub | None = None  # the MCP gateway's tools ([mcp]), served at /mcp
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)

    @classmethod
    def build(cls, config: Config, chainer: str = "thread") -> Runtime:
        """Everything, from the config. The process's umask becomes 077 first (what it
        creates is its owner's alone) and the data dir is checked: a ``ConfigError`` if
        others may write there, a logged warning if they may read (``store.files``)."""
        secure_data_dir(config.data_dir, strict=config.settings.server.strict_permissions,
                        warn=log.warning)
        state = open_state(config)
        stores = open_stores(config, state, cache_keys=True)
        endpoint = config.settings.audit.otlp_endpoint
        tracing: Tracing | None = None
        if endpoint:
            from ownlight.audit.tracing import TimedKeyStore, Tracing  # the SDK only if asked

            tracing = Tracing(endpoint)
            keys: KeyStore = TimedKeyStore(stores.keys)
        else:
            keys = KeyStore(stores.keys)
        lifecycle = Lifecycle.from_config(config, stores.registry, stores.shared)
        backends = build_backends(config.models, config, lifecycle)
        counters = open_counters(config)
        router = build_router(config, backends, stores.spend, counters)
        pipeline = Pipeline(keys, router, router.budgets, build_privacy(config),
                            open_ledger(config, chainer), HealthTracker(counters=counters),
                            knowledge=KnowledgeService.from_config(config),
                            deadline=config.settings.upstream.deadline,
                            metrics=Metrics(), guard=build_guard(config),
                            limits=build_limits(config, counters))
        lifecycle.audit = pipeline.ledger.put
        runtime = cls(config, keys, backends, pipeline, stores.responses, lifecycle,
                      stores=stores, state_file=state, counters=counters)
        runtime.refusals = keys.refusals = RefusalLog(pipeline.ledger.append)
        runtime.mcp = build_hub(config, pipeline, stores)
        pipeline.metrics.watch(runtime.state)
        if tracing is not None:
            runtime.tracing = tracing
            tracing.instrument(pipeline)
        return runtime

    def state(self) -> dict[str, dict[str, object]]:
        """What the metrics' gauges show: circuits, model load state, queue lengths, the
        embedded model's slots and throughput, each pool's replicas, and (with a shared
        ledger) the records not yet shipped to it."""
        state: dict[str, dict[str, object]] = {
            "circuits": {a: c.state for a, c in self.pipeline.health.circuits.items()},
            "models": dict(self.readiness()),
            "queues": {a: b.queue_length for a, b in self.backends.items()
                       if b.queue_length is not None},
            "serving": {a: stats for a, b in self.backends.items()
                        if (stats := b.serving_stats()) is not None},
            "replicas": {a: list(s) for a, s in self.replica_stats().items()},
        }
        behind = self.audit_behind()
        if behind is not None:
            state["audit"] = {"behind": behind}
        return state

    def replica_stats(self) -> dict[str, list[ReplicaStats]]:
        """Each pooled alias's model servers: state, load, answers, failures."""
        return {a: stats for a, b in self.backends.items()
                if (stats := b.replica_stats()) is not None}

    @property
    def knowledge(self) -> KnowledgeService | None:
        return self.pipeline.knowledge

    def prepare(self, progress: Progress | None = None) -> None:
        """Blocking one-time work (assembling model files), before the server starts."""
        for alias, backend in self.backends.items():
            try:
                backend.prepare(progress)
            except Exception as exc:
                self.load_errors[alias] = str(exc)
                log.error("model %s cannot be prepared: %s", alias, exc)

    async def start(self) -> None:
        """Start every backend; a failed load is reported by /readyz, not fatal.

        Then the knowledge base's pending vectors are embedded in the background.
        """
        await asyncio.gather(*(self._start(a, b) for a, b in self.backends.items()))
        if self.knowledge is not None:
            self._tasks.append(asyncio.create_task(self.knowledge.run_embedder()))
        if self.mcp is not None:
            await self.mcp.start()

    async def _start(self, alias: str, backend: Backend) -> None:
        if alias in self.load_errors:
            return
        try:
            await backend.start()
        except Exception as exc:  # one broken model must not take the gateway down
            self.load_errors[alias] = str(exc)
            log.error("model %s failed to start: %s", alias, exc)

    async def close(self) -> None:
        if self.mcp is not None:
            await self.mcp.stop()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await asyncio.gather(*(b.close() for b in self.backends.values()))
        if self.lifecycle is not None:
            await self.lifecycle.close()
        if self.knowledge is not None:
            self.knowledge.close()
        if self.refusals is not None:
            self.refusals.close()  # the open minute's aggregates
        self.pipeline.ledger.close()
        if self.tracing is not None:
            self.tracing.close()
        if self.stores is not None:
            self.stores.close()
        if self.counters is not None:
            self.counters.close()
        if self.state_file is not None:
            self.state_file.close()

    def audit_rows(self) -> LedgerRows:
        """The ledger to read: the shared one in PostgreSQL with ``[store] url``, else this
        instance's SQLite file."""
        if self.stores is not None and self.stores.shared:
            return PgLedgerStore(self.stores.database)
        return self.pipeline.ledger.store

    def audit_behind(self) -> int | None:
        """Records this instance journaled that are not yet in the shared ledger (None
        without one, or while the store cannot say)."""
        if self.stores is None or not self.stores.shared:
            return None
        ledger = self.pipeline.ledger
        try:
            shipping = behind(ledger.store, self.stores.database, ledger.path.parent)
        except OwnlightError:
            return None
        return None if shipping is None else shipping + ledger.unchained()

    def readiness(self) -> dict[str, str]:
        status = {}
        for alias, backend in self.backends.items():
            failure = self.load_errors.get(alias) or backend.failure
            if failure:
                status[alias] = "failed: " + failure
            else:
                status[alias] = "ready" if backend.ready else "loading"
        return status


def build_hub(config: Config, pipeline: Pipeline, stores: Stores) -> ToolHub:
    """The MCP tool hub: the configured servers, Ownlight's own tools, and the pipeline's
    shield, guard, ledger and metrics around every call."""
    settings = config.settings
    builtins: list[Builtin] = []
    if settings.mcp.knowledge_search and pipeline.knowledge is not None:
        builtins.append(knowledge_search(pipeline.knowledge, settings.knowledge.k))
    return ToolHub(settings.mcp, pins=ToolPins(stores.registry), ledger=pipeline.ledger,
                   metrics=pipeline.metrics, privacy=pipeline.privacy, guard=pipeline.guard,
                   red_line=list(settings.routing.red_line), builtins=builtins,
                   oauth=build_oauth(config, stores, pipeline.ledger))


def build_oauth(config: Config, stores: Stores, ledger: Ledger) -> OAuthBroker | None:
    """Per-user tokens for the OAuth servers, sealed in the store; None without any."""
    mcp = config.settings.mcp
    if not any(s.oauth is not None for s in mcp.servers.values()):
        return None
    box = TokenBox(load_key(mcp.token_key, config.data_dir))
    return OAuthBroker(mcp.servers, StoredTokens(stores.registry), box, ledger)


def build_backends(
    models: Mapping[str, ModelEntry], config: Config, lifecycle: Lifecycle
) -> dict[str, Backend]:
    local_enabled = config.settings.local.enabled
    backends: dict[str, Backend] = {}
    for alias, entry in models.items():
        kind = BACKEND_KINDS.get(entry.backend)
        if kind is not None and kind.local and not local_enabled:
            continue
        if is_managed(entry):
            backends[alias] = ManagedBackend(entry, config, lifecycle)
        elif entry.settings.replicas:  # a pool of model servers of that kind
            backends[alias] = pool_of(backend_class(entry.backend))(entry, config)
        else:
            backends[alias] = backend_class(entry.backend)(entry, config)
    if local_enabled:
        # A name promoted in the registry is served under its own name, with no
        # [models.NAME] table to write; a table of that name, if any, wins.
        for name in lifecycle.registry.served():
            if name not in backends:
                entry = ModelEntry(alias=name, backend="llama", path=f"{REGISTRY_PREFIX}{name}")
                backends[name] = ManagedBackend(entry, config, lifecycle)
    return backends


def freeze_startup_objects() -> None:
    """Keep the garbage collector off the request path, as far as it can be.

    The language models, vocabularies and tables loaded at start-up are millions of
    long-lived objects: measured under load, each full collection walked all of them
    (about 37 ms, once per ~900 requests: 40 us a request, more than the audit ledger
    costs). Frozen, a full pass walks only what requests left behind. A request's own
    objects are freed by reference counting, so a young collection finds mostly the
    requests still in flight: the same work whether it runs every 700 allocations or
    every 10,000, and at 10,000 it runs a fourteenth as often (measured: 4,700 against
    3,550 requests/s at 32 connections with both changes).
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(YOUNG_COLLECTION_EVERY, *gc.get_threshold()[1:])
