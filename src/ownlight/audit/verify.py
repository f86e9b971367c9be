"""Verification: recompute the chain and name the first record that was changed, deleted
or inserted; the checkpoints an operator kept elsewhere catch a chain rewritten whole."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import orjson

from ownlight.audit.record_hash import COLUMNS, GENESIS
from ownlight.audit.shared import LedgerRows, PgLedgerStore


@dataclass
class Verdict:
    ok: bool
    count: int
    head: str
    problem: str | None = None
    seq: int | None = None  # the first record that is wrong, when one is


def verify(store: LedgerRows, checkpoint: tuple[str, int] | None = None) -> Verdict:
    """Recompute the chain; the first record changed, deleted or inserted is reported."""
    shipped = _shipped(store)  # before the walk: every row counted here is in it
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
        columns = dict(zip(("seq", "at", *COLUMNS), row[:-2], strict=True))
        if isinstance(body.get("seq"), int) and body["seq"] != seq:
            how = "inserted" if body["seq"] < seq else "deleted"
            return Verdict(False, seq - 1, head,
                           f"record {seq} holds record {body['seq']}: a record was {how} "
                           "before it", seq)
        if body.get("at") != columns["at"] or any(
                body.get(c) != columns[c] for c in COLUMNS):  # True == 1
            return Verdict(False, seq - 1, head,
                           f"record {seq} was changed: its columns disagree with its content", seq)
        if body.get("prev") != prev:
            return Verdict(False, seq - 1, head,
                           f"record {seq} does not follow record {seq - 1}: a record was "
                           "changed, inserted or deleted there", seq)
        prev = head = digest
        expected += 1
    count = expected - 1
    if shipped is not None:
        problem = _against_shipped(store, count, shipped)
        if problem is not None:
            return Verdict(False, count, head, problem, count + 1 if shipped > count else count)
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


def _shipped(store: LedgerRows) -> int | None:
    """In the shared ledger, how many records the instances say they shipped (each
    instance's mark moves in the transaction that inserts its rows); None in SQLite."""
    if not isinstance(store, PgLedgerStore):
        return None
    return int(store.query("SELECT coalesce(sum(shipped), 0) FROM audit_sources")[0][0])


def _against_shipped(store: LedgerRows, count: int, before: int) -> str | None:
    """The last records deleted, or records appended that no instance shipped: the walk
    saw at least what was shipped before it and at most what was shipped after it."""
    if count < before:
        return (f"records after {count} were deleted: the instances shipped {before}")
    after = _shipped(store)
    if after is not None and count > after:
        return (f"{count - after} record(s) at the end were inserted: the instances "
                f"shipped {after}, the ledger holds {count}")
    return None


def _rows(store: LedgerRows) -> Iterator[tuple[Any, ...]]:
    last = 0
    while True:
        rows = store.query(
            "SELECT seq, at, kind, request_id, principal, tenant, target, inside_domain, "
            "status, record, hash FROM audit_log WHERE seq > ? ORDER BY seq LIMIT 2000", (last,))
        if not rows:
            return
        yield from rows
        last = int(str(rows[-1][0]))


def head(store: LedgerRows) -> tuple[str, int]:
    row = store.query("SELECT hash, seq FROM audit_log ORDER BY seq DESC LIMIT 1")
    return (str(row[0][0]), int(str(row[0][1]))) if row else (GENESIS, 0)
