"""The egress export: every record of what left the domain in a window, as JSONL or CSV,
read a page at a time through the ledger's ``(inside_domain, seq)`` index so a large
export never holds the ledger in memory. Types and counts of what was pseudonymized,
never the values (the ledger never has them). A request's egress is usually folded into
its request's record; one chained on its own (its request unfinished, or chained in
another pass) is a row of kind ``egress`` with the same ``request_id``."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from typing import Any

import orjson

from ownlight.audit.shared import LedgerRows
from ownlight.audit.views import ledger_page
from ownlight.errors import InvalidRequest

FORMATS = ("jsonl", "csv")
COLUMNS = (
    "seq",
    "at",
    "request_id",
    "principal",
    "tenant",
    "target",
    "status",
    "pseudonymized",
    "hash_of_payload",
)


def _rows(store: LedgerRows, since: str | None, until: str | None) -> Iterator[dict[str, Any]]:
    before = None
    while True:
        page = ledger_page(
            store, before=before, limit=200, since=since, until=until, inside_domain=False
        )
        yield from page["records"]
        before = page["next"]
        if before is None:
            return


def export_egress(
    store: LedgerRows, fmt: str, since: str | None = None, until: str | None = None
) -> Iterator[str]:
    """Lines of the export, newest first."""
    if fmt not in FORMATS:
        raise InvalidRequest(f"format must be one of {', '.join(FORMATS)}", param="format")
    if fmt == "csv":
        yield ",".join(COLUMNS) + "\r\n"
    for record in _rows(store, since, until):
        payload = [e.get("payload_sha256") for e in record.get("egress") or []]
        if record.get("payload_sha256"):
            payload.append(record["payload_sha256"])
        row = {
            "seq": record.get("seq"),
            "at": record.get("at"),
            "kind": record.get("kind"),
            "request_id": record.get("request_id"),
            "principal": record.get("principal"),
            "tenant": record.get("tenant"),
            "target": record.get("target"),
            "status": record.get("status"),
            "pseudonymized": record.get("pseudonymized") or {},
            "hash_of_payload": payload,
        }
        if fmt == "jsonl":
            yield orjson.dumps(row).decode() + "\n"
        else:
            out = io.StringIO()
            csv.writer(out).writerow(
                [
                    orjson.dumps(row[c]).decode()
                    if isinstance(row[c], dict | list)
                    else ("" if row[c] is None else row[c])
                    for c in COLUMNS
                ]
            )
            yield out.getvalue()
