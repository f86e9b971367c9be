"""Local models loaded on demand under a memory budget, least recently used unloaded first.

An organisation may register more model versions than fit in memory at once. Each
load first makes room: while the models already loaded plus the new one's estimated
need exceed the budget (``lifecycle.memory_budget_mb``, or else the memory the system
has available), the least recently used model that no request is using is unloaded.
A model with requests in flight is never unloaded under them; if nothing can make
room, the load is refused with the numbers.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from ownlight.backends.base import Backend
from ownlight.errors import UpstreamUnavailable
from ownlight.models.describe import available_memory, human_bytes

log = logging.getLogger("ownlight.models")


@dataclass
class Loaded:
    key: str
    backend: Backend
    need: int
    last_used: float = field(default_factory=time.monotonic)
    leases: int = 0


class Lease:
    """One request's hold on a loaded model: it stays loaded until released."""

    def __init__(self, entry: Loaded):
        self.entry = entry
        self.backend = entry.backend
        self._released = False
        entry.leases += 1

    def release(self) -> None:
        if not self._released:
            self._released = True
            self.entry.leases -= 1
            self.entry.last_used = time.monotonic()


class ModelPool:
    def __init__(self, budget: int = 0, available: Callable[[], int] = available_memory):
        self.budget = budget  # bytes; 0: whatever the system has available
        self.available = available
        self._loaded: dict[str, Loaded] = {}
        # One load at a time: two loads checked against the same free memory would both
        # fit on paper and not in fact.
        self._lock = asyncio.Lock()
        self.unloaded: list[str] = []  # keys unloaded to make room, oldest first

    def loaded(self) -> list[str]:
        """Loaded keys, least recently used first."""
        return [e.key for e in sorted(self._loaded.values(), key=lambda e: e.last_used)]

    def used(self) -> int:
        return sum(e.need for e in self._loaded.values())

    async def lease(self, key: str, need: int,
                    load: Callable[[], Awaitable[Backend]]) -> Lease:
        """The loaded model ``key`` (loading it first, making room), held for one request."""
        entry = self._loaded.get(key)
        if entry is None:
            async with self._lock:
                entry = self._loaded.get(key)
                if entry is None:
                    await self._make_room(key, need)
                    entry = Loaded(key, await load(), need)
                    self._loaded[key] = entry
                    log.info("loaded %s (%s estimated)", key, human_bytes(need))
        entry.last_used = time.monotonic()
        return Lease(entry)

    async def _make_room(self, key: str, need: int) -> None:
        while not self._fits(need):
            idle = [e for e in self._loaded.values() if e.leases == 0]
            if not idle:
                raise UpstreamUnavailable(self._refusal(key, need))
            await self.unload(min(idle, key=lambda e: e.last_used).key)

    def _fits(self, need: int) -> bool:
        if self.budget:
            return self.used() + need <= self.budget
        return need <= self.available()

    def _refusal(self, key: str, need: int) -> str:
        room = (f"the budget is {human_bytes(self.budget)} (lifecycle.memory_budget_mb) and "
                f"{human_bytes(self.used())} is in use" if self.budget else
                f"{human_bytes(self.available())} is available")
        busy = ", ".join(self._loaded) or "none"
        return (f"Not enough memory to load {key}: it needs about {human_bytes(need)}, "
                f"{room}; models serving requests ({busy}) cannot be unloaded now.")

    async def unload(self, key: str) -> None:
        entry = self._loaded.pop(key, None)
        if entry is None:
            return
        self.unloaded.append(key)
        log.info("unloaded %s (least recently used) to make room", key)
        await entry.backend.close()

    async def close(self) -> None:
        for key in list(self._loaded):
            entry = self._loaded.pop(key)
            await entry.backend.close()
