"""The audit ledger: one append-only, hash-chained record per request, egress and admin act.

Each record is canonical JSON (sorted keys, no spaces) holding its own ``seq`` and the
``prev`` hash of the record before it; its ``hash`` is the sha256 of that text. The
other columns of ``audit_log`` are indexes over the JSON, checked against it by
``verify``, so an edit made directly in the SQLite file is found and located. A chain
can be rewritten from the edit onwards by someone who recomputes every hash; the
checkpoints (head hash and count, ``ownlight audit checkpoint``) that an operator keeps
elsewhere catch that, and ``verify --checkpoint`` checks against them.

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
import itertools
import logging
import mmap
import os
import secrets
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from ownlight.store.sqlite import StateStore

log = logging.getLogger("ownlight.audit")

GENESIS = "0" * 64
GATHER_SECONDS = 0.05
# The chainer process gives its core back (``os.sched_yield``) after each slice of this
# many records (about 0.1 ms of work), so a request never waits behind a whole pass:
# at one connection, passes of 50 ms of records raised p99 from 0.6 ms to 2.2 ms.
SLICE = 16
# The chainer process's niceness: it needs about a tenth of a core at full load, and
# catches up (the journal holds what it has not chained yet) when the server is busy.
NICE = 5
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
    uid: str = ""  # given when journaled (``_journal_line``)

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
    uid: str = ""


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
    uid: str = ""


Record = RequestRecord | EgressRecord | AdminRecord


class Journal:
    """This process's records, each made durable by one copy before it is chained.

    The journal is a file mapped into memory. Appending a record copies its line into
    the mapping: the mapped pages are the file's own pages in the kernel's cache, so once
    the copy is done the record survives the process being killed (``kill -9``, a crash,
    the OOM killer), exactly as after a ``write()``, and like one it is not flushed to
    the disk, so it does not survive the machine losing power (the ledger's SQLite file
    is not flushed on each commit either). Unlike a ``write()``, the copy is no system
    call and never lets go of the GIL. The file's blocks are allocated up front
    (``posix_fallocate``), so a full disk is an error here (fail closed), never a fault
    on a mapped page.

    A journal is a series of files, ``audit.journal.<pid>.<random>.<n>``: when one is
    full, an ``END`` line closes it and the next one is started. The chainer (a thread
    or a process of its own, see ``Ledger``) reads each file as it fills, chains what it
    holds and deletes it once it has chained it up to its ``END``. A journal left by a
    process that died is replayed into the chain by the next ledger opened on the same
    data dir: lines up to the first zero byte, a last line without its newline (cut by
    the kill, its request never answered) left out, and records already chained (by
    ``uid``) skipped.
    """

    PREFIX = "audit.journal."
    SIZE = 1 << 20
    END = b"END"
    _open: set[str] = set()  # name prefixes of ledgers open in this process (never orphans)

    def __init__(self, directory: Path):
        # pid plus a random part: a restarted container often gets the same pid, and
        # must not take its predecessor's journal for its own (and truncate it)
        self.directory = directory
        self.name = f"{self.PREFIX}{os.getpid()}.{secrets.token_hex(4)}"
        self.lock = threading.Lock()
        self.number = 0
        self._start()
        Journal._open.add(self.name)

    def _start(self) -> None:
        self.path = self.directory / f"{self.name}.{self.number:08d}"
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.posix_fallocate(fd, 0, self.SIZE)
            self.map = mmap.mmap(fd, self.SIZE)
        except OSError:
            os.close(fd)
            self.path.unlink(missing_ok=True)
            raise
        self.fd = fd
        self.size = self.SIZE
        self.end = 0

    def put(self, line: bytes) -> None:
        with self.lock:
            end = self.end + len(line)
            if end + len(self.END) + 1 > self.size:
                self._next(len(line))
                end = len(line)
            self.map[self.end:end] = line
            self.end = end

    def _next(self, needed: int) -> None:
        """Close this file with ``END`` and go on in the next one."""
        self._seal()
        self.number += 1
        self._start()
        if needed + len(self.END) + 1 > self.size:  # one record bigger than a file
            size = self.size * 2
            while size < needed + len(self.END) + 1:
                size *= 2
            os.posix_fallocate(self.fd, 0, size)
            self.map.resize(size)
            self.size = size

    def _seal(self) -> None:
        tail = self.END + b"\n"
        self.map[self.end:self.end + len(tail)] = tail
        self.end += len(tail)
        self.map.close()
        with contextlib.suppress(OSError):
            os.ftruncate(self.fd, self.end)
        os.close(self.fd)

    def close(self) -> None:
        """End the last file; the chainer deletes it once it has chained it."""
        with self.lock:
            self._seal()
        Journal._open.discard(self.name)

    @classmethod
    def lines(cls, raw: bytes) -> list[bytes]:
        """The complete records in a journal's bytes."""
        *complete, _cut = raw.split(b"\0", 1)[0].split(b"\n")
        return [line for line in complete if line.strip() and line != cls.END]

    @classmethod
    def orphans(cls, directory: Path) -> list[Path]:
        """Journals no open ledger is writing: their process is gone (or was this pid
        before a restart)."""
        found = []
        for path in sorted(directory.glob(cls.PREFIX + "*")):
            pid = path.name[len(cls.PREFIX):].split(".")[0]
            if not pid.isdigit() or any(path.name.startswith(n + ".") for n in cls._open):
                continue
            if int(pid) == os.getpid() or not _alive(int(pid)):
                found.append(path)
        return found


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class Chainer:
    """Chains one ledger's journal files into SQLite, in order, as they fill.

    Each pass reads what was added to each file since the last pass (complete lines up
    to the first zero byte), chains it in one transaction and deletes a file once its
    ``END`` is chained. A pass that fails is retried on the next one, skipping records
    already chained (by ``uid``), as is the first pass of a chainer that replaces one
    that died.
    """

    CHUNK = 1 << 18

    def __init__(self, db: Path, journal: str, checkpoint_every: int, replay: bool = False,
                 pause: Callable[[], Any] | None = None):
        self.store = StateStore(db)
        self.directory = Path(db).parent
        self.journal = journal
        self.checkpoint_every = checkpoint_every
        self.offsets: dict[str, int] = {}
        self.replay = replay
        self.pause = pause

    def run_pass(self) -> None:
        for path in sorted(self.directory.glob(self.journal + ".*")):
            self._chain_file(path)

    def _chain_file(self, path: Path) -> None:
        offset = self.offsets.get(path.name, 0)
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            self.offsets.pop(path.name, None)
            return
        try:
            parts: list[bytes] = []
            read = offset
            while True:
                chunk = os.pread(fd, self.CHUNK, read)
                read += len(chunk)
                zero = chunk.find(b"\0")
                if zero >= 0:
                    parts.append(chunk[:zero])
                    break
                parts.append(chunk)
                if len(chunk) < self.CHUNK:
                    break
        finally:
            os.close(fd)
        raw = b"".join(parts)
        cut = raw.rfind(b"\n") + 1
        if cut == 0:
            return
        lines = raw[:cut].split(b"\n")[:-1]
        ended = bool(lines) and lines[-1] == Journal.END
        records = []
        for i, line in enumerate(lines):
            if line.strip() and line != Journal.END:
                records.append(orjson.loads(line))
            if self.pause is not None and i % SLICE == SLICE - 1:
                self.pause()
        for start in range(0, len(records), 512):
            try:
                append_records(self.store, records[start:start + 512], self.checkpoint_every,
                               replay=self.replay, pause=self.pause)
            except Exception:
                log.exception("could not chain %d audit records from %s", len(records), path.name)
                self.replay = True  # some may be in: the retry skips them
                return  # the offset stays: the next pass tries again
        self.replay = False
        self.offsets[path.name] = offset + cut
        if ended:
            path.unlink(missing_ok=True)
            self.offsets.pop(path.name, None)

    def close(self) -> None:
        self.store.close()


def run_chainer(db: Path, journal: str, checkpoint_every: int, wake: Any, owner: int) -> None:
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
    chainer = Chainer(db, journal, checkpoint_every, replay=True, pause=os.sched_yield)
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
                 salt: bytes | None = None, chainer: str = "thread"):
        if bodies not in BODY_MODES:
            raise ValueError(f"audit.bodies must be one of {BODY_MODES}")
        if chainer not in ("thread", "process"):
            raise ValueError("chainer must be 'thread' or 'process'")
        self.path = Path(path)
        self.store = StateStore(path)
        self.bodies = bodies
        self.checkpoint_every = checkpoint_every
        self.salt = salt if salt is not None else load_salt(self.path.parent)
        self._keyed = hmac.new(self.salt, digestmod=hashlib.sha256)
        self.recover()
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
            self.journal.put(_journal_line(record))
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
        return {"hmac_sha256": self.mac(text)}

    def mac(self, text: str) -> str:
        """``salted_hash(self.salt, text)``, from an HMAC keyed once: a copy of its state
        costs half of keying it again on every call."""
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

    def _append(self, records: list[dict[str, Any]], replay: bool = False) -> list[int]:
        return append_records(self.store, records, self.checkpoint_every, replay=replay)

    # -- the chainer --------------------------------------------------------------------

    def _chain_here(self) -> None:
        """The thread chainer: a pass every ``GATHER_SECONDS`` or when nudged; a last
        one after ``close``."""
        chainer = Chainer(self.path, self.journal.name, self.checkpoint_every)
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



def append_records(store: StateStore, records: list[dict[str, Any]], checkpoint_every: int,
                   replay: bool = False, pause: Callable[[], Any] | None = None) -> list[int]:
    """Chain records in one transaction; their seqs (0 for a replayed one already in).

    The head is read inside the same ``BEGIN IMMEDIATE`` transaction that appends, so
    several processes extend one chain without forking it. The rows are built in Python
    (canonical JSON, its hash) and inserted with ``executemany`` (a quarter less CPU than
    one ``INSERT`` over a JSON array, which SQLite has to parse again). ``pause`` is
    called between slices of ``SLICE`` records (see ``run_chainer``).
    """
    records = _fold_egress(records)
    seqs: list[int] = []
    rows: list[tuple[Any, ...]] = []
    marks: list[tuple[int, str, str]] = []
    with store.transaction() as db:
        row = db.execute("SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1").fetchone()
        seq, prev = (int(row[0]), str(row[1])) if row else (0, GENESIS)
        for record in records:
            if replay and _already_chained(db, record):
                seqs.append(0)
                continue  # chained before its process (or chainer) died
            seq += 1
            if pause is not None and seq % SLICE == 0:
                pause()
            body = _body(record, seq, prev)
            text = _canonical(body)
            digest = hashlib.sha256(text).hexdigest()
            rows.append((seq, body["at"], *map(body.get, _COLUMNS), text.decode(), digest,
                         body.get("uid")))
            if checkpoint_every and seq % checkpoint_every == 0:
                marks.append((seq, digest, body["at"]))
            prev = digest
            seqs.append(seq)
        step = SLICE if pause is not None else max(1, len(rows))
        for start in range(0, len(rows), step):
            if start and pause is not None:
                pause()
            db.executemany(_INSERT_ROW, rows[start:start + step])
        if marks:
            db.executemany("INSERT OR REPLACE INTO audit_checkpoints VALUES (?, ?, ?)", marks)
    return seqs


def _already_chained(db: Any, record: dict[str, Any]) -> bool:
    if db.execute("SELECT 1 FROM audit_log WHERE uid = ?", (record.get("uid"),)).fetchone():
        return True
    # an egress record folded into its request's record (``egress``)
    return record.get("kind") == "egress" and bool(db.execute(
        "SELECT 1 FROM audit_log WHERE request_id = ? AND kind = 'request' "
        "AND instr(record, ?)", (record.get("request_id"), f'"{record.get("uid")}"')).fetchone())


class AuditUnavailableError(RuntimeError):
    """The ledger could not make a record durable."""


def _fold_egress(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """An egress record whose request's own record is in the same batch becomes part of
    it (``egress``): half the rows for the common case. The egress record was already
    durable in the journal before anything was sent; if its request never finishes, it
    is chained on its own."""
    egress: dict[str, list[dict[str, Any]]] = {}
    finished = {r.get("request_id") for r in records if r.get("kind") == "request"}
    for record in records:
        if record.get("kind") == "egress" and record.get("request_id") in finished:
            egress.setdefault(record["request_id"], []).append(
                {k: record[k] for k in ("target", "payload_sha256", "payload_bytes", "at",
                                        "uid")})
    if not egress:
        return records
    out = []
    for record in records:
        if record.get("kind") == "egress" and record.get("request_id") in egress:
            continue
        if record.get("kind") == "request" and record.get("request_id") in egress:
            record = {**record, "egress": egress[record["request_id"]]}
        out.append(record)
    return out


_UID_PREFIX = secrets.token_hex(8)  # this process's; the counter makes each uid unique
_uids = itertools.count(1)


def _journal_line(record: Record) -> bytes:
    """A record's journal line, with a unique ``uid`` so a replayed journal never chains it
    twice. orjson writes the dataclass itself (no dict is built on the request path); a
    request's ``target`` (its ``route``) is added when it is chained (``_body``)."""
    record.uid = f"{_UID_PREFIX}-{next(_uids)}"
    return orjson.dumps(record, option=orjson.OPT_APPEND_NEWLINE)


def _plain(record: Record) -> dict[str, Any]:
    """A record as its journal holds it."""
    parsed: dict[str, Any] = orjson.loads(_journal_line(record))
    return parsed


def _body(record: dict[str, Any], seq: int, prev: str) -> dict[str, Any]:
    """The record as chained: its time in ISO form, its seq and the hash before it. The
    journal's parsed dict is changed in place (a retried batch sets the same fields)."""
    at = record["at"]
    if not isinstance(at, str):
        record["at"] = datetime.fromtimestamp(at, UTC).isoformat(timespec="milliseconds")
    if record.get("kind") == "request" and "target" not in record:
        record["target"] = record.get("route")
    record["seq"], record["prev"] = seq, prev
    return record


def canonical(value: Any) -> str:
    """Sorted keys, no insignificant spaces: the same record always hashes the same."""
    return _canonical(value).decode()


def _canonical(value: Any) -> bytes:
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)


_ROW = ("seq", "at", *_COLUMNS, "record", "hash", "uid")
_INSERT_ROW = (f"INSERT INTO audit_log ({', '.join(_ROW)}) "
               f"VALUES ({', '.join('?' * len(_ROW))})")  # a bool binds as 0 or 1


def salted_hash(salt: bytes, text: str) -> str:
    """HMAC-SHA256 of ``text`` under ``salt`` (OpenSSL's one-shot HMAC: no Python object
    per call)."""
    return hmac.digest(salt, text.encode(), "sha256").hex()


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
                body.get(c) != columns[c] for c in _COLUMNS):  # True == 1
            return Verdict(False, seq - 1, head,
                           f"record {seq} was changed: its columns disagree with its content", seq)
        if body.get("prev") != prev:
            return Verdict(False, seq - 1, head,
                           f"record {seq} does not follow record {seq - 1}: a record was "
                           "changed, inserted or deleted there", seq)
        prev = head = digest
        expected += 1
    count = expected - 1
    marks = [(str(h), int(str(n))) for n, h in store.query(
        "SELECT count, head FROM audit_checkpoints ORDER BY count")]
    if checkpoint is not None:
        marks.append(checkpoint)
    for mark_head, mark_count in marks:
        if mark_count > count:
            return Verdict(False, count, head, f"records after {count} were deleted: a "
                           f"checkpoint says there were at least {mark_count}", count + 1)
        marked = store.query("SELECT hash FROM audit_log WHERE seq = ?", (mark_count,))
        if not marked or str(marked[0][0]) != mark_head:
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


if __name__ == "__main__":  # the chainer process (``Ledger(chainer="process")``)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    run_chainer(Path(sys.argv[1]), sys.argv[2], int(sys.argv[3]), sys.stdin.buffer,
                int(sys.argv[4]))
