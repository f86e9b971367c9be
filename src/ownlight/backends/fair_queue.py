"""Waiting requests, served first in, first out per principal and in turns between them.

One team member who sends fifty requests at once must not make everyone else wait for
all fifty: each principal (the API key's name) has its own FIFO, and the next free
slot goes to the principal after the one served last, in the order they first came.
Thread-safe: the event loop pushes, the model's thread pops.
"""

from __future__ import annotations

import threading
from collections import OrderedDict, deque
from typing import Generic, TypeVar

T = TypeVar("T")


class FairQueue(Generic[T]):
    def __init__(self) -> None:
        self._lines: OrderedDict[str, deque[T]] = OrderedDict()
        self._size = 0
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return self._size

    def push(self, principal: str, item: T) -> None:
        with self._lock:
            self._lines.setdefault(principal, deque()).append(item)
            self._size += 1

    def pop(self) -> T | None:
        """The head of the next principal's line; that principal goes to the back."""
        with self._lock:
            if not self._lines:
                return None
            principal, line = next(iter(self._lines.items()))
            item = line.popleft()
            del self._lines[principal]
            if line:
                self._lines[principal] = line  # back of the round
            self._size -= 1
            return item

    def remove(self, item: T) -> bool:
        """Take back an item that is no longer wanted (its client left while waiting)."""
        with self._lock:
            for principal, line in self._lines.items():
                if item in line:
                    line.remove(item)
                    self._size -= 1
                    if not line:
                        del self._lines[principal]
                    return True
            return False

    def waiting_by_principal(self) -> dict[str, int]:
        with self._lock:
            return {p: len(line) for p, line in self._lines.items()}
