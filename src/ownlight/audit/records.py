"""What the audit ledger records: one dataclass per kind of record, and its journal line.

A record is made on the request path and journaled at once (``ledger.Ledger.put``); the
chainer turns its journal line into the chained, canonical form (``chain``).
"""

from __future__ import annotations

import itertools
import secrets
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import orjson


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
    replica: str | None = None  # the pool member (host:port) that served it, if a pool
    reason: str | None = None
    inside_domain: bool | None = None
    error_code: str | None = None
    sensitivity: str | None = None
    found: dict[str, int] = field(default_factory=dict)
    pseudonymized: dict[str, int] = field(default_factory=dict)
    injection: dict[str, Any] | None = None  # the guard's verdicts (the guard issue)
    knowledge: dict[str, Any] | None = None  # documents a grounded answer drew on
    dropped: list[str] | None = None  # client fields the backend did not receive
    usage: dict[str, Any] | None = None
    cost_usd: float = 0.0
    latency_ms: float | None = None
    prompt: Any = None  # per audit.bodies: absent, a salted hash, or the text
    answer: Any = None
    kind: str = "request"
    at: float = field(default_factory=time.time)
    uid: str = ""  # given when journaled (``journal_line``)

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


@dataclass
class RefusalRecord:
    """A request refused at the door: no key, an unknown or a revoked one (401), or a key
    without the right to its route (403). Never the key: ``key`` is the first 12 hex
    digits of its sha256, or ``none``.

    With ``count`` above 1 it is an aggregate (``reason`` ``folded``): the refusals from
    ``client`` in ``minute`` beyond its per-minute records (``refusals.RefusalLog``), by
    reason, with the first few key hashes and routes; ``at`` is the last of them.
    """

    status: int
    reason: str  # missing_key, unknown_key, revoked_key, admin_only; folded
    key: str
    client: str | None  # the client's address (the socket's peer)
    endpoint: str  # "POST /v1/chat/completions"; "*" in an aggregate
    principal: str | None = None  # a revoked key's or a 403's principal
    tenant: str | None = None
    error_code: str | None = None  # what the client was told
    count: int = 1
    minute: str | None = None  # an aggregate's minute (UTC)
    reasons: dict[str, int] | None = None  # an aggregate's reasons
    keys: list[str] | None = None  # an aggregate's first key hashes
    endpoints: dict[str, int] | None = None  # an aggregate's first routes
    first_at: str | None = None  # an aggregate's first refusal (ISO, UTC)
    kind: str = "refusal"
    request_id: str | None = None
    at: float = field(default_factory=time.time)
    uid: str = ""


Record = RequestRecord | EgressRecord | AdminRecord | RefusalRecord


_UID_PREFIX = secrets.token_hex(8)  # this process's; the counter makes each uid unique
_uids = itertools.count(1)


def journal_line(record: Record) -> bytes:
    """A record's journal line, with a unique ``uid`` so a replayed journal never chains it
    twice. orjson writes the dataclass itself (no dict is built on the request path); a
    request's ``target`` (its ``route``) is added when it is chained (``_body``)."""
    record.uid = f"{_UID_PREFIX}-{next(_uids)}"
    return orjson.dumps(record, option=orjson.OPT_APPEND_NEWLINE)


def new_request_id() -> str:
    """``req_`` and 32 hex digits: the time in milliseconds, then 80 random bits.

    Time first, so ids arrive in nearly ascending order and the ledger's index on them
    grows at its right edge instead of splitting pages all over (a third of a record's
    insert cost with random ids).
    """
    return f"req_{time.time_ns() // 1_000_000:012x}{_random_bytes(10).hex()}"


class _RandomPool:
    """Random bytes from the OS, fetched 4 KiB at a time. ``os.urandom`` is a system call
    that lets go of the GIL; on the request path the event loop would then wait for the
    audit writer thread to give it back, once per request."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.pool = b""
        self.at = 0

    def __call__(self, n: int) -> bytes:
        with self.lock:
            if self.at + n > len(self.pool):
                self.pool, self.at = secrets.token_bytes(4096), 0
            self.at += n
            return self.pool[self.at - n:self.at]


_random_bytes = _RandomPool()
