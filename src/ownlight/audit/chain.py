"""The chain: journaled records made canonical, hashed and appended to ``audit_log``.

Each record is canonical JSON (sorted keys, no spaces) holding its own ``seq`` and the
``prev`` hash of the record before it; its ``hash`` is the sha256 of that text. The
other columns of ``audit_log`` are indexes over the JSON, checked against it by
``verify``. ``Chainer`` reads a ledger's journal files as they fill and appends what it
finds with ``append_records``, in one transaction per pass; with ``[store] url`` set it
then ships the pass into the shared ledger in PostgreSQL (``shared``).
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from ownlight.audit.journal import Journal
from ownlight.audit.record_hash import COLUMNS, GENESIS, canonical_bytes
from ownlight.audit.summaries import count_appended
from ownlight.store.sqlite import StateStore

if TYPE_CHECKING:
    from ownlight.audit.shared import ShippingThread

log = logging.getLogger("ownlight.audit")

# The chainer process gives its core back (``os.sched_yield``) after each slice of this
# many records (about 0.1 ms of work), so a request never waits behind a whole pass:
# at one connection, passes of 50 ms of records raised p99 from 0.6 ms to 2.2 ms.
SLICE = 16


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
                 pause: Callable[[], Any] | None = None, ship_to: str | None = None):
        self.store = StateStore(db)
        self.shipper: ShippingThread | None = None
        if ship_to:  # ``[store] url``: the local chain goes on into the shared ledger
            from ownlight.audit.shared import ShippingThread

            self.shipper = ShippingThread(ship_to, self.store, Path(db).parent,
                                          checkpoint_every)
        self.directory = Path(db).parent
        self.journal = journal
        self.checkpoint_every = checkpoint_every
        self.offsets: dict[str, int] = {}
        self.replay = replay
        self.pause = pause

    def run_pass(self) -> None:
        for path in sorted(self.directory.glob(self.journal + ".*")):
            self._chain_file(path)
        if self.shipper is not None:
            self.shipper.wake()

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
        if self.shipper is not None:
            self.shipper.close()
        self.store.close()


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
    bodies: list[dict[str, Any]] = []
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
            bodies.append(body)
            text = canonical_bytes(body)
            digest = hashlib.sha256(text).hexdigest()
            rows.append((seq, body["at"], *map(body.get, COLUMNS), text.decode(), digest,
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
        if bodies:
            count_appended(db, int(rows[0][0]), seq, bodies)
    return seqs


def _already_chained(db: Any, record: dict[str, Any]) -> bool:
    if db.execute("SELECT 1 FROM audit_log WHERE uid = ?", (record.get("uid"),)).fetchone():
        return True
    # an egress record folded into its request's record (``egress``)
    return record.get("kind") == "egress" and bool(db.execute(
        "SELECT 1 FROM audit_log WHERE request_id = ? AND kind = 'request' "
        "AND instr(record, ?)", (record.get("request_id"), f'"{record.get("uid")}"')).fetchone())


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




_ROW = ("seq", "at", *COLUMNS, "record", "hash", "uid")
_INSERT_ROW = (f"INSERT INTO audit_log ({', '.join(_ROW)}) "
               f"VALUES ({', '.join('?' * len(_ROW))})")  # a bool binds as 0 or 1
