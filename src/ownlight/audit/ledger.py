"""The audit ledger: one append-only, hash-chained record per request, egress and admin act.

Each record is canonical JSON (sorted keys, no spaces) holding its own ``seq`` and the
``prev`` hash of the record before it; its ``hash`` is the sha256 of that text. The
other columns of ``audit_log`` are indexes over the JSON, checked against it by
``verify``, so an edit made directly in the SQLite file is found and located. A chain
can be rewritten from the edit onwards by someone who recomputes every hash; the
checkpoints (head hash and count, ``ownlight audit checkpoint``) that an operator keeps
elsewhere catch that, and ``verify --checkpoint`` checks against them.

Writes leave the request path to one writer thread with its own connection. Callers
that must not go on before their record is durable ``await write(...)``: the writer
commits whatever has queued up in one transaction (group commit) and then releases
them. A record is committed to the WAL before its request is answered, so a ``kill -9``
loses no record of an answered request. The head is read inside the same ``BEGIN
IMMEDIATE`` transaction that appends, so several processes (the server and the CLI)
extend one chain without forking it.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import os
import queue
import secrets
import threading
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from ownlight.store.sqlite import StateStore

log = logging.getLogger("ownlight.audit")

GENESIS = "0" * 64
BODY_MODES = ("none", "hashed", "full")
_COLUMNS = ("kind", "request_id", "principal", "tenant", "target", "inside_domain", "status")


@dataclass
class RequestRecord:
    """What happened to one request: who, what, where it went, why, and what was found."""

    request_id: str
    operation: str
    endpoint: str = ""
    status: int = 200
    principal: str | None = None
    tenant: str | None = None
    groups: list[str] = field(default_factory=list)
    model: str | None = None  # the alias asked for
    route: str | None = None  # the alias/model that served it
    reason: str | None = None
    inside_domain: bool | None = None
    error_code: str | None = None
    sensitivity: str | None = None
    found: dict[str, int] = field(default_factory=dict)
    pseudonymized: dict[str, int] = field(default_factory=dict)
    injection: dict[str, Any] | None = None  # the guard's verdicts (the guard issue)
    knowledge: dict[str, Any] | None = None  # documents a grounded answer drew on
    usage: dict[str, Any] | None = None
    cost_usd: float = 0.0
    latency_ms: float | None = None
    prompt: Any = None  # per audit.bodies: absent, a salted hash, or the text
    answer: Any = None
    kind: str = "request"
    at: float = field(default_factory=time.time)

    @property
    def target(self) -> str | None:
        return self.route


@dataclass
class EgressRecord:
    """What is about to leave the domain, written (durably) before the first byte is sent."""

    request_id: str
    target: str
    principal: str | None
    tenant: str | None
    pseudonymized: dict[str, int]
    payload_sha256: str  # salted: proves what was sent without revealing it
    payload_bytes: int
    kind: str = "egress"
    inside_domain: bool = False
    status: int | None = None
    at: float = field(default_factory=time.time)


@dataclass
class AdminRecord:
    """An operator's act: keys created or revoked, documents ingested, models switched."""

    action: str
    subject: str
    principal: str | None = None  # who did it ("cli" for the command line)
    tenant: str | None = None
    details: dict[str, Any] = field(default_factory=dict)
    kind: str = "admin"
    request_id: str | None = None
    status: int | None = None
    at: float = field(default_factory=time.time)


Record = RequestRecord | EgressRecord | AdminRecord


class _Waiter:
    """How the writer tells a caller its record is durable (or why it is not)."""

    def __init__(self, loop: asyncio.AbstractEventLoop | None):
        self.loop = loop
        self.future: asyncio.Future[int] | None = loop.create_future() if loop else None
        self.event = threading.Event()
        self.seq = 0
        self.error: BaseException | None = None

    def done(self, seq: int | None, error: BaseException | None = None) -> None:
        self.seq, self.error = seq or 0, error
        if self.loop is not None and self.future is not None:
            self.loop.call_soon_threadsafe(self._settle)
        self.event.set()

    def _settle(self) -> None:
        assert self.future is not None
        if self.future.done():
            return
        if self.error is not None:
            self.future.set_exception(self.error)
        else:
            self.future.set_result(self.seq)


class Ledger:
    def __init__(self, path: Path | str, *, bodies: str = "hashed", checkpoint_every: int = 1000,
                 salt: bytes | None = None):
        if bodies not in BODY_MODES:
            raise ValueError(f"audit.bodies must be one of {BODY_MODES}")
        self.path = Path(path)
        self.store = StateStore(path)  # a connection of its own, for the writer thread
        self.bodies = bodies
        self.checkpoint_every = checkpoint_every
        self.salt = salt if salt is not None else load_salt(self.path.parent)
        self._queue: queue.SimpleQueue[tuple[Record, _Waiter | None] | None] = \
            queue.SimpleQueue()
        self._thread = threading.Thread(target=self._writer, name="audit-ledger", daemon=True)
        self._thread.start()

    # -- writing ----------------------------------------------------------------------

    async def write(self, record: Record) -> int:
        """Append and wait until the record is durable; returns its seq."""
        waiter = _Waiter(asyncio.get_running_loop())
        self._queue.put((record, waiter))
        assert waiter.future is not None
        return await asyncio.shield(waiter.future)

    def write_sync(self, record: Record, timeout: float = 10.0) -> int:
        """The same from synchronous code (the CLI, admin acts)."""
        waiter = _Waiter(None)
        self._queue.put((record, waiter))
        if not waiter.event.wait(timeout):
            raise TimeoutError("the audit ledger did not answer")
        if waiter.error is not None:
            raise waiter.error
        return waiter.seq

    def append(self, record: Record) -> None:
        """Append without waiting (a request already failing, or cancelled)."""
        self._queue.put((record, None))

    def flush(self) -> None:
        """Wait until everything appended so far is on disk."""
        done = threading.Event()
        self._queue.put((_Barrier(done), None))  # type: ignore[arg-type]
        done.wait(10)

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join(10)
        self.store.close()

    def seal(self, text: str) -> Any:
        """A prompt or answer as audit.bodies says to keep it."""
        if self.bodies == "none" or not text:
            return None
        if self.bodies == "full":
            return text
        return {"hmac_sha256": salted_hash(self.salt, text)}

    def _writer(self) -> None:
        stop = False
        while not stop:
            item = self._queue.get()
            batch: list[tuple[Record, _Waiter | None]] = []
            barriers: list[_Barrier] = []
            while True:
                if item is None:
                    stop = True
                elif isinstance(item[0], _Barrier):
                    barriers.append(item[0])
                else:
                    batch.append(item)
                if stop or len(batch) >= 512:
                    break
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
            self._commit(batch)
            for barrier in barriers:
                barrier.done.set()

    def _commit(self, batch: list[tuple[Record, _Waiter | None]]) -> None:
        if not batch:
            return
        try:
            seqs = self._append([record for record, _ in batch])
        except Exception as exc:  # callers that wait fail closed; the rest is logged
            log.exception("could not write %d audit records", len(batch))
            for _, waiter in batch:
                if waiter is not None:
                    waiter.done(None, AuditUnavailableError(str(exc)))
            return
        for (_, waiter), seq in zip(batch, seqs, strict=True):
            if waiter is not None:
                waiter.done(seq)

    def _append(self, records: list[Record]) -> list[int]:
        seqs = []
        with self.store.transaction() as db:
            row = db.execute("SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1"
                             ).fetchone()
            seq, prev = (int(row[0]), str(row[1])) if row else (0, GENESIS)
            for record in records:
                seq += 1
                body = _body(record, seq, prev)
                text = canonical(body)
                digest = hashlib.sha256(text.encode()).hexdigest()
                db.execute(
                    "INSERT INTO audit_log (seq, at, kind, request_id, principal, tenant, "
                    "target, inside_domain, status, record, hash) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (seq, body["at"], *(_column(body, c) for c in _COLUMNS), text, digest))
                if self.checkpoint_every and seq % self.checkpoint_every == 0:
                    db.execute("INSERT OR REPLACE INTO audit_checkpoints VALUES (?, ?, ?)",
                               (seq, digest, body["at"]))
                prev = digest
                seqs.append(seq)
        return seqs

    # -- reading ----------------------------------------------------------------------

    def query(self, where: str = "1=1", params: tuple[object, ...] = (),
              kind: str | None = "request") -> list[dict[str, Any]]:
        """Records matching an SQL condition over the indexed columns, oldest first."""
        sql = f"SELECT record FROM audit_log WHERE ({where})"
        if kind is not None:
            sql += " AND kind = ?"
            params = (*params, kind)
        return [orjson.loads(str(r[0])) for r in self.store.query(sql + " ORDER BY seq",
                                                                   params)]


@dataclass
class _Barrier:
    done: threading.Event


class AuditUnavailableError(RuntimeError):
    """The ledger could not make a record durable."""


def _body(record: Record, seq: int, prev: str) -> dict[str, Any]:
    body = asdict(record)
    body["at"] = datetime.fromtimestamp(body["at"], UTC).isoformat(timespec="milliseconds")
    body["seq"], body["prev"] = seq, prev
    if isinstance(record, RequestRecord):
        body["target"] = record.route
    return body


def _column(body: dict[str, Any], name: str) -> Any:
    value = body.get(name)
    return int(value) if isinstance(value, bool) else value


def canonical(value: Any) -> str:
    """Sorted keys, no insignificant spaces: the same record always hashes the same."""
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()


def salted_hash(salt: bytes, text: str) -> str:
    return hmac.new(salt, text.encode(), hashlib.sha256).hexdigest()


def load_salt(data_dir: Path) -> bytes:
    """This installation's secret salt for content hashes, made once (mode 0600)."""
    path = data_dir / "audit.salt"
    if not path.exists():
        data_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(secrets.token_hex(32))
    return bytes.fromhex(path.read_text().strip())


# -- verification -----------------------------------------------------------------------


@dataclass
class Verdict:
    ok: bool
    count: int
    head: str
    problem: str | None = None
    seq: int | None = None  # the first record that is wrong, when one is


def verify(store: StateStore, checkpoint: tuple[str, int] | None = None) -> Verdict:
    """Recompute the chain; the first record changed, deleted or inserted is reported."""
    prev, expected, head = GENESIS, 1, GENESIS
    for row in _rows(store):
        seq, text, digest = int(row[0]), str(row[-2]), str(row[-1])
        if seq != expected:
            return Verdict(False, expected - 1, head,
                           f"record {expected} is missing: deleted", expected)
        if hashlib.sha256(text.encode()).hexdigest() != digest:
            return Verdict(False, seq - 1, head,
                           f"record {seq} was changed: its content does not match its hash", seq)
        body = orjson.loads(text)
        columns = dict(zip(("seq", "at", *_COLUMNS), row[:-2], strict=True))
        if isinstance(body.get("seq"), int) and body["seq"] != seq:
            how = "inserted" if body["seq"] < seq else "deleted"
            return Verdict(False, seq - 1, head,
                           f"record {seq} holds record {body['seq']}: a record was {how} "
                           "before it", seq)
        if body.get("at") != columns["at"] or any(
                _column(body, c) != columns[c] for c in _COLUMNS):
            return Verdict(False, seq - 1, head,
                           f"record {seq} was changed: its columns disagree with its content", seq)
        if body.get("prev") != prev:
            return Verdict(False, seq - 1, head,
                           f"record {seq} does not follow record {seq - 1}: a record was "
                           "changed, inserted or deleted there", seq)
        prev = head = digest
        expected += 1
    count = expected - 1
    marks = [(str(h), int(n)) for n, h in store.query(
        "SELECT count, head FROM audit_checkpoints ORDER BY count")]
    if checkpoint is not None:
        marks.append(checkpoint)
    for mark_head, mark_count in marks:
        if mark_count > count:
            return Verdict(False, count, head, f"records after {count} were deleted: a "
                           f"checkpoint says there were at least {mark_count}", count + 1)
        row = store.query("SELECT hash FROM audit_log WHERE seq = ?", (mark_count,))
        if not row or str(row[0][0]) != mark_head:
            return Verdict(False, count, head, f"record {mark_count} differs from its "
                           "checkpoint: the chain was rewritten from there or before", mark_count)
    return Verdict(True, count, head)


def _rows(store: StateStore) -> Iterator[tuple[Any, ...]]:
    last = 0
    while True:
        rows = store.query(
            "SELECT seq, at, kind, request_id, principal, tenant, target, inside_domain, "
            "status, record, hash FROM audit_log WHERE seq > ? ORDER BY seq LIMIT 2000", (last,))
        if not rows:
            return
        yield from rows
        last = int(str(rows[-1][0]))


def head(store: StateStore) -> tuple[str, int]:
    row = store.query("SELECT hash, seq FROM audit_log ORDER BY seq DESC LIMIT 1")
    return (str(row[0][0]), int(str(row[0][1]))) if row else (GENESIS, 0)


def record_admin_act(state_db: Path | str, record: AdminRecord) -> None:
    """One admin act from a short-lived process (the CLI), durable before it returns."""
    ledger = Ledger(state_db)
    try:
        ledger.write_sync(record)
    finally:
        ledger.close()
