"""The one interface every backend implements.

A backend receives an OpenAI-shaped request body (its ``model`` already mapped to the
backend's own model name) and returns an OpenAI-shaped response body, or for a
streaming call an async iterator of OpenAI-shaped chunks. Capabilities are class
attributes, so the gateway asks a backend what it can do instead of branching on
its kind. Closing a stream's iterator (client gone) must stop the work behind it.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncIterator
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, ClassVar

from ownlight.config import Config, ModelEntry
from ownlight.models.files import Progress

Json = dict[str, Any]


class Operation(StrEnum):
    CHAT = "chat"
    COMPLETION = "completion"
    EMBEDDING = "embedding"


@dataclass
class BackendCall:
    operation: Operation
    payload: Json
    stream: bool = False


BackendResult = Json | AsyncIterator[Json]


class Backend(ABC):
    """Serves one model alias."""

    kind: ClassVar[str]
    operations: ClassVar[frozenset[Operation]]
    can_stream: ClassVar[bool] = True

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

    def prepare(self, progress: Progress | None = None) -> None:
        """Blocking one-time setup before start (e.g. assembling a model file)."""

    async def start(self) -> None:
        """Load weights or open connections. May be slow; the server stays up meanwhile."""

    async def close(self) -> None:
        """Release what ``start`` took."""

    @property
    def ready(self) -> bool:
        return True

    @abstractmethod
    async def execute(self, call: BackendCall) -> BackendResult:
        """Run one call: a response body, or an iterator of chunks when ``call.stream``."""
