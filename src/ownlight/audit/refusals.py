"""Refused requests in the ledger, bounded: 401s (no key, an unknown or a revoked one) and
403s (a key without the right to its route).

A refusal is recorded with the first 12 hex digits of the presented key's sha256 (``none``
when no key came; the key itself is never kept: for a revoked key the digits are the start
of its ``api_keys.key_hash``), the client's address, the route and the reason. Each client
address gets ``PER_MINUTE`` records of its own per minute of the clock; its further
refusals in that minute are only counted, and one aggregate record per address, minute
and status says how many were folded, for which reasons, with the first few key hashes
and routes. The aggregate is written when its minute closes (a timer on the server's
event loop), at the next refusal after that, or when the ledger closes. A flood therefore
adds at most ``PER_MINUTE`` + 1 records per address and minute (+ 2 if it mixes 401s and
403s), and past ``MAX_SOURCES`` addresses in one minute the others are folded together
under the address ``*``: memory and records stay bounded whoever floods.

A valid key never reaches this module: the key check calls it only when it refuses.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from ownlight.audit.records import RefusalRecord

PER_MINUTE = 20  # records of its own a client address gets per minute
MAX_SOURCES = 1000  # addresses tracked per minute; beyond, folded together as "*"
NAMED = 8  # distinct key hashes and routes an aggregate names
HASH_DIGITS = 12
MAX_PATH = 200  # characters of the path kept (the rest is the client's to invent)
EVERYONE = "*"


def key_hash(digest: str | None) -> str:
    """How a presented key is named in the ledger: its sha256's first digits, or none."""
    return digest[:HASH_DIGITS] if digest else "none"


def client_of(origin: Mapping[str, Any] | None) -> str | None:
    """The client's address in an ASGI scope (the socket's peer: behind a proxy, the
    proxy's), without the port."""
    if origin is None:
        return None
    client = origin.get("client")
    return str(client[0]) if client else None


def endpoint_of(origin: Mapping[str, Any] | None) -> str:
    if origin is None:
        return "cli"
    return f"{origin.get('method', '-')} {str(origin.get('path', ''))[:MAX_PATH]}"


def _iso(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).isoformat(timespec="milliseconds")


@dataclass
class _Folded:
    """One address's refusals of one status beyond its own records, in one minute."""

    first: float
    last: float = 0.0
    reasons: Counter[str] = field(default_factory=Counter)
    keys: list[str] = field(default_factory=list)
    endpoints: Counter[str] = field(default_factory=Counter)

    def add(self, reason: str, key: str, endpoint: str, now: float) -> None:
        self.last = now
        self.reasons[reason] += 1
        if len(self.keys) < NAMED and key not in self.keys:
            self.keys.append(key)
        if endpoint in self.endpoints or len(self.endpoints) < NAMED:
            self.endpoints[endpoint] += 1
        else:
            self.endpoints["other"] += 1

    def record(self, status: int, address: str, minute: str) -> RefusalRecord:
        return RefusalRecord(
            status, "folded", self.keys[0] if len(self.keys) == 1 else "*", address, "*",
            count=sum(self.reasons.values()), minute=minute, reasons=dict(self.reasons),
            keys=self.keys, endpoints=dict(self.endpoints), first_at=_iso(self.first),
            at=self.last)


@dataclass
class _Source:
    """One address's refusals in one minute."""

    seen: int = 0
    folded: dict[int, _Folded] = field(default_factory=dict)  # by status


class RefusalLog:
    """Turns refused requests into ledger records, at most ``per_minute`` per address and
    minute plus one aggregate (see the module's text). ``put`` writes a record and must
    not raise (``Ledger.append``): the request is being refused either way."""

    def __init__(self, put: Callable[[RefusalRecord], None], per_minute: int = PER_MINUTE,
                 clock: Callable[[], float] = time.time):
        self.put = put
        self.per_minute = per_minute
        self.clock = clock
        self._lock = threading.Lock()
        self._minute = int(clock() // 60)
        self._sources: dict[str, _Source] = {}
        self._timer = False

    def __call__(self, status: int, reason: str, digest: str | None,
                 origin: Mapping[str, Any] | None, principal: str | None = None,
                 tenant: str | None = None, code: str | None = None) -> None:
        now = self.clock()
        client, endpoint, key = client_of(origin), endpoint_of(origin), key_hash(digest)
        later = False
        with self._lock:
            due = self._roll(now)
            source = self._source(client or "-")
            source.seen += 1
            own = source.seen <= self.per_minute
            if not own:
                folded = source.folded.get(status) or source.folded.setdefault(
                    status, _Folded(now))
                folded.add(reason, key, endpoint, now)
                later, self._timer = not self._timer, True
        for record in due:
            self.put(record)
        if own:
            self.put(RefusalRecord(status, reason, key, client, endpoint, principal, tenant,
                                   code, at=now))
        elif later:
            self._close_later(now)

    def _source(self, address: str) -> _Source:
        source = self._sources.get(address)
        if source is None:
            if len(self._sources) < MAX_SOURCES:
                source = self._sources[address] = _Source()
            else:  # folded from the first: no more own records, no more entries
                source = self._sources.setdefault(EVERYONE, _Source(seen=self.per_minute))
        return source

    def _roll(self, now: float) -> list[RefusalRecord]:
        """Close the minute if the clock has left it: its aggregates (under the lock)."""
        minute = int(now // 60)
        if minute == self._minute:
            return []
        due = self._aggregates()
        self._minute, self._sources, self._timer = minute, {}, False
        return due

    def _aggregates(self) -> list[RefusalRecord]:
        label = datetime.fromtimestamp(self._minute * 60, UTC).isoformat(timespec="minutes")
        return [folded.record(status, address, label)
                for address, source in self._sources.items()
                for status, folded in source.folded.items()]

    def _close_later(self, now: float) -> None:
        """Have the minute's aggregates written once it ends, on the server's event loop
        (a process without one writes them at its next refusal or at ``close``)."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        loop.call_later(max(0.0, (int(now // 60) + 1) * 60 - now) + 0.05, self.flush)

    def flush(self) -> None:
        """Write the aggregates of a minute that has closed (called at its end)."""
        now = self.clock()
        with self._lock:
            due = self._roll(now)
            early = not due and self._timer  # the loop's clock ran ahead of the wall's
        for record in due:
            self.put(record)
        if early:
            self._close_later(now)

    def close(self) -> None:
        """Write every aggregate, the open minute's included (the ledger is closing)."""
        with self._lock:
            due = self._aggregates()
            self._sources = {}
        for record in due:
            self.put(record)
