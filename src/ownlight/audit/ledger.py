"""The audit ledger: one append-only, hash-chained record per request, egress and admin act.

This module writes records and runs the chainer; the records themselves are in
``records``, the journal in ``journal``, chaining in ``chain`` and verification in
``verify``.

Records are canonical JSON chained by hash (``chain``). A chain can be rewritten from an
edit onwards by someone who recomputes every hash; the checkpoints (head hash and count,
``ownlight audit checkpoint``) that an operator keeps elsewhere catch that, and
``verify --checkpoint`` checks against them.

Writing and chaining are split. A caller that must not go on before its record is
durable calls ``put``: the record is journaled at once (``Journal``: one copy into
a memory-mapped file, which survives the process being killed) and nothing else happens
on the request path. A chainer reads the journal as it fills and chains what it finds
every ``GATHER_SECONDS``, in one transaction. The head is read inside
the same ``BEGIN IMMEDIATE`` transaction that appends, so several processes (the server,
the CLI) extend one chain without forking it.

The server's chainer is a child process (``Ledger(chainer="process")``, run as
``python -m ownlight.audit.ledger``): canonical JSON, SHA-256 and SQLite never take the
GIL from the event loop, and run on the other core. Its lifecycle:

- it starts with the ledger; its first pass replays the ledger's journal, skipping
  records already chained (by ``uid``), so a replacement picks up where one that died
  stopped;
- a byte on its stdin wakes it (``flush``, ``write_sync``: they then wait for the last
  record's ``uid`` to appear in the chain); stdin closing (``Ledger.close``) makes it
  chain the rest and exit, and the ledger waits for it; it ignores SIGINT and SIGTERM
  (Ctrl-C and service managers signal the whole process group), so a server stopped that
  way still has its last records chained before both are gone;
- if the server dies (``kill -9``) it notices that its parent changed, chains what the
  server journaled and exits: it never outlives the server by more than that pass. If the
  machine goes down first, the next ledger opened on the data dir chains the journals of
  processes that are gone before anything else (``recover``);
- if it dies on its own the server logs it and starts another; if that fails three
  times, every record is refused (``AuditUnavailableError``: requests fail closed with
  503 ``audit_unavailable``) and the log says so.

The CLI and the tests use ``chainer="thread"``: the same ``Chainer`` in a thread, no
process to start for one admin act.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import logging
import os
import secrets
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import orjson

from ownlight.audit.chain import Chainer, append_records
from ownlight.audit.journal import Journal
from ownlight.audit.records import AdminRecord, Record, journal_line
from ownlight.audit.shared import URL_ENV
from ownlight.audit.summaries import catch_up
from ownlight.store.files import make_private_dir
from ownlight.store.sqlite import StateStore

log = logging.getLogger("ownlight.audit")

GATHER_SECONDS = 0.05
# The chainer process's niceness: it needs about a tenth of a core at full load, and
# catches up (the journal holds what it has not chained yet) when the server is busy.
NICE = 5
BODY_MODES = ("none", "hashed", "full")


def run_chainer(db: Path, journal: str, checkpoint_every: int, wake: Any, owner: int,
                ship_to: str | None = None) -> None:
    """The chainer process: a pass every ``GATHER_SECONDS`` or when woken (a byte on
    stdin), a last pass and exit when stdin closes (the ledger closed) or the owner is
    gone (the server was killed: what it journaled is chained now, not at its restart)."""
    import select
    import signal

    # Ctrl-C or a service manager's SIGTERM reaches the whole process group: the chainer
    # stays to chain what the server journals until it closes or is gone
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    with contextlib.suppress(OSError):
        os.nice(NICE)  # the server's event loop comes first when the cores are busy
    chainer = Chainer(db, journal, checkpoint_every, replay=True, pause=os.sched_yield,
                      ship_to=ship_to)
    try:
        while True:
            ready, _, _ = select.select([wake], [], [], GATHER_SECONDS)
            closed = False
            if ready:
                closed = not os.read(wake.fileno(), 4096)
            if closed or os.getppid() != owner:
                chainer.replay = chainer.replay or not closed  # racing a restart's recovery
                chainer.run_pass()
                return
            chainer.run_pass()
    finally:
        chainer.close()


class Ledger:
    """Append records (``write``, ``put``, ``write_sync``), read them (``query``).

    ``chainer="process"`` (the server): a child process does all the chaining, so the
    server's own work per record is building it and one copy into the journal, and
    chaining never takes the GIL from its event loop. The child exits when the ledger
    closes or the server dies (after chaining what is journaled); if it dies on its own
    it is started again (and replays the journal); if it cannot be, records are
    refused (``AuditUnavailableError``: requests fail closed) and the log says why.
    ``chainer="thread"`` (the CLI, tests): a thread of this process does the same.
    """

    def __init__(self, path: Path | str, *, bodies: str = "hashed", checkpoint_every: int = 1000,
                 salt: bytes | None = None, chainer: str = "thread",
                 ship_to: str | None = None):
        if bodies not in BODY_MODES:
            raise ValueError(f"audit.bodies must be one of {BODY_MODES}")
        if chainer not in ("thread", "process"):
            raise ValueError("chainer must be 'thread' or 'process'")
        self.path = Path(path)
        self.store = StateStore(path)
        self.bodies = bodies
        self.ship_to = ship_to  # ``[store] url``: the shared ledger (``audit.shared``)
        self.checkpoint_every = checkpoint_every
        self.salt = salt if salt is not None else load_salt(self.path.parent)
        self._keyed = hmac.new(self.salt, digestmod=hashlib.sha256)
        self.recover()
        self.backfill()
        self.journal = Journal(self.path.parent)
        self._last_uid: str | None = None
        self._closing = False
        self._failed: str | None = None
        self._wake = threading.Event()
        self._proc: subprocess.Popen[bytes] | None = None
        if chainer == "process":
            self._start_process()
            self._thread = threading.Thread(target=self._watch, name="audit-watch", daemon=True)
        else:
            self._thread = threading.Thread(target=self._chain_here, name="audit-ledger",
                                            daemon=True)
        self._thread.start()

    # -- writing ----------------------------------------------------------------------

    def put(self, record: Record) -> str:
        """Make the record durable (journaled) now; it joins the chain moments later. Its
        ``uid``.

        Raises ``AuditUnavailableError`` when it cannot be made durable: callers fail
        closed.
        """
        if self._failed is not None:
            raise AuditUnavailableError(self._failed)
        try:
            self.journal.put(journal_line(record))
        except (OSError, ValueError) as exc:
            log.error("could not journal an audit record: %s", exc)
            raise AuditUnavailableError(str(exc)) from exc
        self._last_uid = record.uid
        return record.uid

    def write_sync(self, record: Record, timeout: float = 10.0) -> int:
        """Append and wait until the record is in the chain (the CLI, admin acts); its seq."""
        seq = self._chained(self.put(record), timeout)
        if seq is None:
            raise AuditUnavailableError("the audit ledger did not answer")
        return seq

    def append(self, record: Record) -> None:
        """Append without raising (a request already failing, or cancelled)."""
        try:
            self.put(record)
        except AuditUnavailableError:
            pass

    def flush(self) -> None:
        """Wait until everything appended so far is in the chain."""
        if self._last_uid is not None:
            self._chained(self._last_uid, 10.0)

    def unchained(self) -> int:
        """About how many records this process journaled that are not chained yet: uids
        count up per process (``journal_line``), and the chain keeps the journal's order."""
        last = self._last_uid
        if last is None:
            return 0
        if self.store.query("SELECT 1 FROM audit_log WHERE uid = ?", (last,)):
            return 0  # whatever order the chain took the journals' records in
        prefix, _, number = last.rpartition("-")
        row = self.store.query("SELECT uid FROM audit_log WHERE uid >= ? AND uid < ? "
                               "ORDER BY seq DESC LIMIT 1", (prefix + "-", prefix + "."))
        done = int(str(row[0][0]).rpartition("-")[2]) if row else 0
        return max(0, int(number) - done)

    def _chained(self, uid: str, timeout: float) -> int | None:
        deadline = time.monotonic() + timeout
        pause = 0.001
        while True:
            self._nudge()
            row = self.store.query("SELECT seq FROM audit_log WHERE uid = ?", (uid,))
            if row:
                return int(str(row[0][0]))
            if time.monotonic() > deadline:
                return None
            time.sleep(pause)
            pause = min(pause * 2, 0.02)

    def _nudge(self) -> None:
        if self._proc is None:
            self._wake.set()
            return
        with contextlib.suppress(OSError, ValueError):  # a full pipe is awake enough
            assert self._proc.stdin is not None
            os.write(self._proc.stdin.fileno(), b".")

    def close(self) -> None:
        self.journal.close()
        self._closing = True  # after the last END: the chainer's last pass sees it
        if self._proc is not None:
            self._stop_process()
        self._wake.set()
        self._thread.join(15)
        self.store.close()

    def seal(self, text: str) -> Any:
        """A prompt or answer as audit.bodies says to keep it."""
        if self.bodies == "none" or not text:
            return None
        if self.bodies == "full":
            return text
        return self.hashed(self.mac(text))

    @staticmethod
    def hashed(digest: str) -> dict[str, str]:
        """How a body is kept under ``audit.bodies = "hashed"``: its salted hash."""
        return {"hmac_sha256": digest}

    def mac(self, text: str) -> str:
        """HMAC-SHA256 of ``text`` under this installation's salt, from an HMAC keyed once:
        a copy of its state costs half of keying it again on every call."""
        keyed = self._keyed.copy()
        keyed.update(text.encode())
        return keyed.hexdigest()

    def recover(self) -> None:
        """Chain what dead processes journaled but never chained, then drop their journals."""
        for path in Journal.orphans(self.path.parent):
            try:
                raw = path.read_bytes()
            except FileNotFoundError:
                continue  # another process recovered it first
            records = [orjson.loads(line) for line in Journal.lines(raw)]
            if records:
                self._append(records, replay=True)
                log.warning("recovered %d audit records from %s", len(records), path.name)
            path.unlink(missing_ok=True)

    def backfill(self) -> int:
        """Count into the hourly summaries what a ledger made before them holds (once,
        a batch per transaction, so appends by other processes interleave)."""
        counted = 0
        while True:
            with self.store.transaction() as db:
                done = catch_up(db, batches=1)
            if not done:
                return counted
            counted += done

    def _append(self, records: list[dict[str, Any]], replay: bool = False) -> list[int]:
        return append_records(self.store, records, self.checkpoint_every, replay=replay)

    # -- the chainer --------------------------------------------------------------------

    def _chain_here(self) -> None:
        """The thread chainer: a pass every ``GATHER_SECONDS`` or when nudged; a last
        one after ``close``."""
        chainer = Chainer(self.path, self.journal.name, self.checkpoint_every,
                          ship_to=self.ship_to)
        try:
            while True:
                self._wake.wait(GATHER_SECONDS)
                self._wake.clear()
                closing = self._closing
                chainer.run_pass()
                if closing:
                    return
        finally:
            chainer.close()

    def _start_process(self) -> None:
        import ownlight

        source = str(Path(ownlight.__file__).resolve().parents[1])
        env = {**os.environ,
               "PYTHONPATH": os.pathsep.join(filter(None, [source,
                                                           os.environ.get("PYTHONPATH")]))}
        env.pop(URL_ENV, None)
        if self.ship_to:  # in its environment, never on a command line others can read
            env[URL_ENV] = self.ship_to
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "ownlight.audit.ledger", str(self.path), self.journal.name,
             str(self.checkpoint_every), str(os.getpid())],
            stdin=subprocess.PIPE, env=env, close_fds=True)
        assert self._proc.stdin is not None
        os.set_blocking(self._proc.stdin.fileno(), False)

    def _stop_process(self) -> None:
        assert self._proc is not None
        with contextlib.suppress(OSError):
            assert self._proc.stdin is not None
            self._proc.stdin.close()
        try:
            self._proc.wait(15)
        except subprocess.TimeoutExpired:
            log.error("the audit chainer did not finish in time: its journal is chained at "
                      "the next start")
            self._proc.kill()
            self._proc.wait(5)

    def _watch(self) -> None:
        """Start the chainer again if it dies; fail closed if it cannot be."""
        failures = 0
        while not self._closing:
            self._wake.wait(0.5)
            self._wake.clear()
            proc = self._proc
            if self._closing or proc is None or proc.poll() is None:
                continue
            log.error("the audit chainer exited (status %s); starting it again", proc.returncode)
            if proc.stdin is not None:
                with contextlib.suppress(OSError):
                    proc.stdin.close()
            try:
                self._start_process()  # its first pass replays
                failures = 0
            except OSError as exc:
                failures += 1
                if failures >= 3:
                    self._failed = f"the audit chainer cannot be started: {exc}"
                    log.error("%s; requests are refused until the server is restarted",
                              self._failed)
                    return


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


class AuditUnavailableError(RuntimeError):
    """The ledger could not make a record durable."""


def load_salt(data_dir: Path) -> bytes:
    """This installation's secret salt for content hashes, made once (mode 0600)."""
    path = data_dir / "audit.salt"
    if not path.exists():
        make_private_dir(data_dir)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(secrets.token_hex(32))
    return bytes.fromhex(path.read_text().strip())


def record_admin_act(state_db: Path | str, record: AdminRecord,
                     ship_to: str | None = None) -> None:
    """One admin act from a short-lived process (the CLI), durable before it returns (and
    shipped to the shared ledger, with ``ship_to``, as the ledger closes)."""
    ledger = Ledger(state_db, ship_to=ship_to)
    try:
        ledger.write_sync(record)
    finally:
        ledger.close()


if __name__ == "__main__":  # the chainer process (``Ledger(chainer="process")``)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    run_chainer(Path(sys.argv[1]), sys.argv[2], int(sys.argv[3]), sys.stdin.buffer,
                int(sys.argv[4]), os.environ.get(URL_ENV) or None)
