"""The one interface every backend implements.

A backend receives a canonical ``Request`` (ownlight.protocol) and renders it in its
own wire format; it returns a canonical ``Response``, or for a streaming request an
async iterator of ``Chunk``s. Capabilities are class attributes, so the gateway asks a
backend what it can do instead of branching on its kind. Closing a stream's iterator
(client gone) must stop the work behind it.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import ClassVar

from ownlight.config import Config, ModelEntry
from ownlight.models.files import Progress
from ownlight.protocol.model import Chunk, Json, Operation, Request, Response

BackendResult = Response | AsyncIterator[Chunk]

__all__ = ["Backend", "BackendResult", "Json", "Operation", "ReplicaStats", "ServingStats"]


@dataclass(frozen=True)
class ServingStats:
    """How a backend that schedules its own requests is coping, for ``/metrics``."""

    slots: int  # requests it can decode at once
    active: int  # requests being decoded
    queued: int  # requests waiting for a slot
    tokens_per_second: float  # tokens produced, all requests together, lately
    prompt_tokens_evaluated: int  # since start
    prompt_tokens_reused: int  # prompt tokens served from cached prefixes, since start


@dataclass(frozen=True)
class ReplicaStats:
    """One model server of a pool, for ``/metrics`` and an admin's ``/readyz``."""

    replica: str  # its URL's host:port
    url: str
    state: str  # up, draining, ejected
    weight: float
    outstanding: int  # requests in flight on it
    served: int  # answers it started, since start
    failures: int  # failed requests and probes, since start
    ejections: int  # times taken out of rotation, since start
    affinity_hits: int  # requests it served as their prefix's first choice
    affinity_spills: int  # requests it served as another replica's overflow
    last_error: str | None


class Backend(ABC):
    """Serves one model alias."""

    kind: ClassVar[str]
    operations: ClassVar[frozenset[Operation]]
    can_stream: ClassVar[bool] = True
    #: The wire protocol it speaks upstream ("openai", "anthropic"), or None in process: a
    #: request's unmodelled fields reach only a backend of the protocol they came in.
    wire_protocol: ClassVar[str | None] = None

    def __init__(self, entry: ModelEntry, config: Config):
        self.entry = entry
        self.config = config

    @property
    def model_name(self) -> str:
        """The model this backend really runs, as shown in ``x-ownlight-route``."""
        return self.entry.model or self.entry.alias

    @property
    def route_label(self) -> str:
        return f"{self.entry.alias}/{self.model_name}"

    @property
    def served_version(self) -> str | None:
        """The registry version this alias serves (``assistant@3``), for registry models."""
        return None

    def label_for(self, result: BackendResult) -> str:
        """The route label of one answer: a registry alias may switch versions while it
        runs, so the label comes from the answer, not from the alias's current state."""
        return self.route_label

    def prepare(self, progress: Progress | None = None) -> None:
        """Blocking one-time setup before start (e.g. assembling a model file)."""

    async def start(self) -> None:
        """Load weights or open connections. May be slow; the server stays up meanwhile."""

    async def close(self) -> None:
        """Release what ``start`` took."""

    @property
    def ready(self) -> bool:
        return True

    @property
    def failure(self) -> str | None:
        """Why this alias cannot serve at all (a refused model file), for /readyz."""
        return None

    @property
    def queue_length(self) -> int | None:
        """Requests waiting for this backend, where it queues them itself."""
        return None

    def serving_stats(self) -> ServingStats | None:
        """Slots, queue and throughput, where the backend schedules requests itself."""
        return None

    def replica_stats(self) -> list[ReplicaStats] | None:
        """Each model server's state and load, where the alias is served by a pool."""
        return None

    def replica_for(self, result: BackendResult) -> str | None:
        """The pool member (host:port) that produced ``result``, asked once per answer."""
        return None

    @property
    def max_prompt_chars(self) -> int | None:
        """Characters beyond which no prompt can fit this model (None: unknown)."""
        return None

    async def count_tokens(self, request: Request) -> int | None:
        """Exact prompt tokens of a request, where the backend can count them cheaply."""
        return None

    @abstractmethod
    async def execute(self, request: Request) -> BackendResult:
        """Run one request: a response, or an iterator of chunks when ``request.stream``."""
