"""One ledger for every instance: each instance's local chain shipped into PostgreSQL.

Why one chain with a single writer at a time, and not one chain per instance with signed
cross-checkpoints: a single chain is verified by the same code as a single machine's
(``verify``), an auditor has one head hash and count to keep, and a record deleted,
inserted or edited by any instance or directly in the database breaks the one sequence.
Per-instance chains would need a key per instance to sign checkpoints, and a verifier
that trusts those keys; a single writer costs one advisory lock per batch, which is
cheap because batches are large and never on the request path.

How a record gets there: the request path is unchanged (``Ledger.put`` journals the
record; the egress record is durable before anything leaves). The chainer, off the event
loop (a child process in the server), chains the journal into the instance's SQLite file
as before, then wakes its shipping thread (``ShippingThread``: a store that hangs delays
shipping, never the local chain), whose ``Shipper.ship`` copies what it has not shipped yet
into PostgreSQL: in one
transaction it takes ``pg_advisory_xact_lock(LEDGER_LOCK)``, reads the shared head,
re-chains the batch onto it (each record's canonical JSON gets the shared ``seq`` and
``prev``) and inserts it, and records how far this instance's chain has been shipped
(``audit_sources``). The mark moves in the same transaction as the rows, so a batch is
shipped exactly once even if the shipper dies between two statements.

After ``kill -9`` the chainer child chains and ships what the server journaled before it
exits; what it could not ship (PostgreSQL down, the machine gone) is shipped when the
instance restarts on the same data dir: the journal is replayed into the local chain and
the local chain shipped from its mark. Ownlight does not let a peer adopt another
instance's journal: the journal is a file on the instance's own disk.
"""

from __future__ import annotations

import hashlib
import logging
import os
import secrets
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any, Protocol

import orjson
import psycopg

from ownlight.audit.record_hash import COLUMNS, GENESIS, canonical
from ownlight.audit.summaries import count_appended
from ownlight.store.files import make_private_dir
from ownlight.store.postgres import connect
from ownlight.store.sqlite import StateStore

log = logging.getLogger("ownlight.audit")

# pg_advisory_xact_lock's key for appending to the shared ledger ("OWLL" in ASCII).
LEDGER_LOCK = 0x4F574C4C
BATCH = 2000  # local records shipped per transaction at most
RETRY_SECONDS = 1.0  # after a failure, passes chain locally and ship again after this
# A shipper never waits on the ledger's lock, or holds it, without end: a peer whose process
# hangs mid-batch would otherwise stop every instance's shipping. PostgreSQL aborts the
# statement or the idle transaction; the shipper logs it and ships again after RETRY_SECONDS.
SESSION_LIMITS = {"lock_timeout": "10s", "statement_timeout": "60s",
                  "idle_in_transaction_session_timeout": "60s"}
URL_ENV = "OWNLIGHT_LEDGER_STORE_URL"  # how the server hands the URL to its chainer child

_ROW = ("seq", "at", *COLUMNS, "record", "hash", "uid")
_INSERT = (f"INSERT INTO audit_log ({', '.join(_ROW)}) "
           f"VALUES ({', '.join(['%s'] * len(_ROW))})")


def source_id(data_dir: Path) -> str:
    """This data dir's name in ``audit_sources``: made once, kept beside the state file.

    The server and its chainer child may both make it at start: the name is written to a
    file of its own and linked into place, so whichever loses the race reads the winner's
    whole name, never an empty file (a shipper and ``behind`` under two names would count
    every record as not shipped for good)."""
    path = data_dir / "audit.source"
    if path.exists():
        return path.read_text().strip()
    make_private_dir(data_dir)
    draft = data_dir / f"audit.source.{os.getpid()}.{secrets.token_hex(4)}"
    fd = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(secrets.token_hex(16))
    try:
        os.link(draft, path)  # atomic, and fails if another process got there first
    except FileExistsError:
        pass
    finally:
        draft.unlink()
    return path.read_text().strip()


class LedgerRows(Protocol):
    """What reading a ledger needs: the SQLite state file or ``PgLedgerStore``."""

    def query(self, sql: str, params: tuple[object, ...] = ()) -> list[tuple[Any, ...]]: ...


class PgLedgerStore:
    """The shared ledger read through the queries written for SQLite (``verify``,
    ``queries``): ``?`` placeholders become psycopg's ``%s``."""

    def __init__(self, database: Any):
        self.database = database

    def query(self, sql: str, params: tuple[object, ...] = ()) -> list[tuple[Any, ...]]:
        return list(self.database.query(sql.replace("?", "%s"), params))

    def close(self) -> None:
        self.database.close()


def rechain(rows: list[tuple[int, str]], seq: int, prev: str) -> list[tuple[Any, ...]]:
    """Local rows (seq, canonical record) as rows of the shared chain after ``seq``/``prev``."""
    out = []
    for _, text in rows:
        body = orjson.loads(text)
        seq += 1
        body["seq"], body["prev"] = seq, prev
        record = canonical(body)
        digest = hashlib.sha256(record.encode()).hexdigest()
        columns = [body.get(c) for c in COLUMNS]
        columns = [int(v) if isinstance(v, bool) else v for v in columns]
        out.append((seq, body["at"], *columns, record, digest, body.get("uid")))
        prev = digest
    return out


def append_shared(conn: psycopg.Connection[Any], source: str, rows: list[tuple[int, str]],
                  checkpoint_every: int = 1000) -> int:
    """Append local rows after this source's mark, under the ledger's lock, in the caller's
    transaction, with a checkpoint every ``checkpoint_every`` shared records; the new
    mark (the last local seq shipped)."""
    conn.execute("SELECT pg_advisory_xact_lock(%s)", (LEDGER_LOCK,))
    mark = conn.execute("SELECT shipped FROM audit_sources WHERE source = %s",
                        (source,)).fetchone()
    shipped = int(mark[0]) if mark else 0
    rows = [row for row in rows if row[0] > shipped]  # another shipper got there first
    if not rows:
        return shipped
    head = conn.execute("SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1").fetchone()
    seq, prev = (int(head[0]), str(head[1])) if head else (0, GENESIS)
    chained = rechain(rows, seq, prev)
    marks = [(row[0], row[-2], row[1]) for row in chained
             if checkpoint_every and row[0] % checkpoint_every == 0]
    with conn.cursor() as cur:
        cur.executemany(_INSERT, chained)
        if marks:
            cur.executemany("INSERT INTO audit_checkpoints (count, head, at) "
                            "VALUES (%s, %s, %s) ON CONFLICT (count) DO NOTHING", marks)
    count_appended(conn, chained[0][0], chained[-1][0],
                   (orjson.loads(row[-3]) for row in chained), pg=True)
    last = rows[-1][0]
    conn.execute("INSERT INTO audit_sources (source, shipped) VALUES (%s, %s) "
                 "ON CONFLICT (source) DO UPDATE SET shipped = excluded.shipped, "
                 "updated_at = now()", (source, last))
    return last


class Shipper:
    """Ships one data dir's local chain into the shared ledger, a batch at a time.

    It holds one connection of its own (opened lazily, opened again after a failure) and
    asks PostgreSQL for its mark only when it starts or after a failure, so a pass with
    nothing new costs one local SQLite query and no round trip.
    """

    def __init__(self, url: str, local: StateStore, data_dir: Path,
                 checkpoint_every: int = 1000):
        self.url = url
        self.local = local
        self.checkpoint_every = checkpoint_every
        self.source = source_id(data_dir)
        self.conn: psycopg.Connection[Any] | None = None
        self.shipped: int | None = None
        self.failing = False
        self.retry_at = 0.0

    def ship(self) -> int:
        """Ship everything chained locally so far; how many records went. A failure (the
        store down) is logged once and retried after ``RETRY_SECONDS``: meanwhile the
        chainer's passes go on chaining locally instead of each waiting for a connection."""
        sent = 0
        if self.failing and time.monotonic() < self.retry_at:
            return 0
        try:
            while True:
                conn = self._connect()
                if self.shipped is None:
                    mark = conn.execute("SELECT shipped FROM audit_sources WHERE source = %s",
                                        (self.source,)).fetchone()
                    self.shipped = int(mark[0]) if mark else 0
                rows = [(int(str(s)), str(r)) for s, r in self.local.query(
                    "SELECT seq, record FROM audit_log WHERE seq > ? ORDER BY seq LIMIT ?",
                    (self.shipped, BATCH))]
                if not rows:
                    break
                with conn.transaction():
                    self.shipped = append_shared(conn, self.source, rows,
                                                 self.checkpoint_every)
                sent += len(rows)
        except (psycopg.Error, sqlite3.Error) as exc:  # the store, or the local file, busy
            if not self.failing:
                log.error("could not ship audit records to the shared ledger (retrying): %s",
                          str(exc).strip())
            self.reset()
            return sent
        if self.failing:
            log.warning("shipping audit records to the shared ledger again")
        self.failing = False
        return sent

    def _connect(self) -> psycopg.Connection[Any]:
        if self.conn is None or self.conn.closed or self.conn.broken:
            self.conn = connect(self.url, connect_timeout=5, autocommit=True)
            for name, value in SESSION_LIMITS.items():
                self.conn.execute(f"SET {name} = '{value}'")
        return self.conn

    def _drop(self) -> None:
        if self.conn is not None:
            try:
                self.conn.close()
            except psycopg.Error:
                pass
            self.conn = None

    def reset(self) -> None:
        """After an unexpected failure: ask PostgreSQL for the mark again, on a new
        connection, after ``RETRY_SECONDS``."""
        self.failing = True
        self.retry_at = time.monotonic() + RETRY_SECONDS
        self.shipped = None
        self._drop()

    def close(self) -> None:
        self._drop()


class ShippingThread:
    """A ``Shipper`` in a thread of the chainer: chaining into the local file never waits
    for PostgreSQL (a store that hangs delays shipping, not the local chain). ``wake``
    after each chaining pass; ``close`` ships what is left, once more, and stops."""

    def __init__(self, url: str, local: StateStore, data_dir: Path,
                 checkpoint_every: int = 1000):
        self.shipper = Shipper(url, local, data_dir, checkpoint_every)
        self._wake = threading.Event()
        self._stop = False
        self._thread = threading.Thread(target=self._run, name="audit-shipper", daemon=True)
        self._thread.start()

    def wake(self) -> None:
        self._wake.set()

    def _run(self) -> None:
        while not self._stop:
            self._wake.wait(RETRY_SECONDS)
            self._wake.clear()
            if not self._stop:
                try:
                    self.shipper.ship()
                except Exception:  # a thread that dies would stop shipping for good
                    log.exception("shipping audit records failed; retrying")
                    self.shipper.reset()

    def close(self, timeout: float = 30.0) -> None:
        self._stop = True
        self._wake.set()
        self._thread.join(timeout)
        if not self._thread.is_alive():  # else a hung store holds it: the restart ships
            self.shipper.ship()
            self.shipper.close()


def behind(local: StateStore, database: Any, data_dir: Path) -> int | None:
    """Records chained on this instance but not yet in the shared ledger (None if the
    shared ledger cannot say: its table not made yet)."""
    top = local.query("SELECT max(seq) FROM audit_log")
    last = int(str(top[0][0])) if top and top[0][0] is not None else 0
    try:
        mark = database.query("SELECT shipped FROM audit_sources WHERE source = %s",
                              (source_id(data_dir),))
    except psycopg.Error:
        return None
    return max(0, last - (int(mark[0][0]) if mark else 0))
