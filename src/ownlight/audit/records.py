"""The request log: one row per request, refusals included, never a sensitive value.

Rows are written by a background thread on its own connection, in batches gathered
for a few milliseconds, so recording costs the request path a queue put — not a disk
write, and never a wait on the lock other state queries (the key check) go through.
The hash-chained, tamper-evident ledger is the audit issue's work; it will build on
these same records.
"""

from __future__ import annotations

import json
import logging
import operator
import queue
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from ownlight.store.sqlite import StateStore, migration

log = logging.getLogger("ownlight.audit")


@migration("003_request_log")
def _request_log(db: Any) -> None:
    db.execute(
        """CREATE TABLE request_log (
            id INTEGER PRIMARY KEY,
            request_id TEXT NOT NULL,
            at TEXT NOT NULL,
            principal TEXT,
            tenant TEXT,
            operation TEXT NOT NULL,
            model TEXT,
            route TEXT,
            reason TEXT,
            inside_domain INTEGER,
            status INTEGER NOT NULL,
            error_code TEXT,
            sensitivity TEXT,
            found TEXT NOT NULL DEFAULT '{}',
            pseudonymized TEXT NOT NULL DEFAULT '{}',
            usage TEXT,
            cost_usd REAL NOT NULL DEFAULT 0,
            latency_ms REAL
        )"""
    )
    db.execute("CREATE INDEX request_log_request ON request_log (request_id)")


@migration("004_request_log_knowledge")
def _request_log_knowledge(db: Any) -> None:
    db.execute("ALTER TABLE request_log ADD COLUMN knowledge TEXT")


@dataclass
class RequestRecord:
    request_id: str
    operation: str
    status: int = 200
    principal: str | None = None
    tenant: str | None = None
    model: str | None = None
    route: str | None = None
    reason: str | None = None
    inside_domain: bool | None = None
    error_code: str | None = None
    sensitivity: str | None = None
    found: dict[str, int] = field(default_factory=dict)
    pseudonymized: dict[str, int] = field(default_factory=dict)
    knowledge: dict[str, Any] | None = None  # the documents a grounded answer drew on
    usage: dict[str, Any] | None = None
    cost_usd: float = 0.0
    latency_ms: float | None = None
    at: float = field(default_factory=time.time)  # written as ISO 8601 by the writer


_COLUMNS = tuple(RequestRecord.__dataclass_fields__)
_JSON_COLUMNS = ("found", "pseudonymized", "knowledge", "usage")
_values = operator.attrgetter(*_COLUMNS)
_INSERT = (f"INSERT INTO request_log ({', '.join(_COLUMNS)}) "
           f"VALUES ({', '.join('?' for _ in _COLUMNS)})")


class RequestLog:
    def __init__(self, path: Path | str, batch: int = 512, gather_seconds: float = 0.02):
        self.store = StateStore(path)  # a connection of its own, for the writer thread
        self.batch = batch
        self.gather_seconds = gather_seconds
        self._queue: queue.SimpleQueue[RequestRecord | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._writer, name="request-log", daemon=True)
        self._thread.start()

    def append(self, record: RequestRecord) -> None:
        self._queue.put(record)

    def flush(self) -> None:
        """Wait until everything appended so far is on disk."""
        done = threading.Event()
        self._queue.put(_Marker(done))  # type: ignore[arg-type]
        done.wait(10)

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join(10)
        self.store.close()

    def query(self, where: str = "1=1", params: tuple[object, ...] = ()) -> list[dict[str, Any]]:
        rows = self.store.query(f"SELECT {', '.join(_COLUMNS)} FROM request_log WHERE {where}"
                                " ORDER BY id", params)
        out = []
        for row in rows:
            item = dict(zip(_COLUMNS, row, strict=True))
            for key in _JSON_COLUMNS:
                item[key] = json.loads(str(item[key])) if item[key] is not None else None
            out.append(item)
        return out

    def _writer(self) -> None:
        stop = False
        while not stop:
            pending: list[RequestRecord] = []
            markers: list[_Marker] = []
            item = self._queue.get()
            deadline = time.monotonic() + self.gather_seconds
            while True:
                if item is None:
                    stop = True
                elif isinstance(item, _Marker):
                    markers.append(item)
                else:
                    pending.append(item)
                wait = deadline - time.monotonic()
                if stop or markers or len(pending) >= self.batch or wait <= 0:
                    break
                try:
                    item = self._queue.get(timeout=wait)
                except queue.Empty:
                    break
            self._write(pending)
            for marker in markers:
                marker.done.set()

    def _write(self, records: list[RequestRecord]) -> None:
        if not records:
            return
        json_at = [_COLUMNS.index(c) for c in _JSON_COLUMNS]
        at = _COLUMNS.index("at")
        rows = []
        for record in records:
            row = list(_values(record))
            for i in json_at:
                if row[i] is not None:
                    row[i] = orjson.dumps(row[i]).decode()
            row[at] = datetime.fromtimestamp(row[at], UTC).isoformat(timespec="milliseconds")
            rows.append(tuple(row))
        try:
            with self.store.transaction() as db:
                db.executemany(_INSERT, rows)
        except Exception:  # the log must never take a request down
            log.exception("could not write %d request records", len(rows))


@dataclass
class _Marker:
    done: threading.Event
