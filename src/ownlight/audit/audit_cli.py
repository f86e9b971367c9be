"""``ownlight audit``: verify the chain, print a checkpoint, list, export, report egress."""

from __future__ import annotations

import json
import re
import sys
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import click

from ownlight.audit.verify import head, verify
from ownlight.config import load_config
from ownlight.errors import ConfigError
from ownlight.store.files import open_private
from ownlight.store.sqlite import StateStore

_SINCE = re.compile(r"^(\d+)([smhd])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


def _store(ctx: click.Context) -> StateStore:
    root = ctx.find_root().obj
    try:
        config = load_config(root.get("config_path") if isinstance(root, dict) else None)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from exc
    return StateStore(config.data_dir / "state.db")


def since_iso(value: str | None) -> str | None:
    """``30d``, ``12h``, ``15m`` or an ISO date -> the ISO time it means (UTC)."""
    if value is None:
        return None
    match = _SINCE.match(value.strip())
    if match:
        delta = timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})
        return (datetime.now(UTC) - delta).isoformat(timespec="milliseconds")
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(f"{value!r}: give 30d, 12h, 15m or an ISO date") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat(timespec="milliseconds")


def select(store: StateStore, *, since: str | None = None, until: str | None = None,
           principal: str | None = None, target: str | None = None, outside: bool = False,
           status: int | None = None, kind: str | None = None,
           limit: int | None = None) -> list[dict[str, Any]]:
    """Records matching the filters, oldest first; shared by the CLI and the admin API."""
    where, params = ["1=1"], []
    for clause, value in (("at >= ?", since), ("at <= ?", until), ("principal = ?", principal),
                          ("target = ?", target), ("status = ?", status), ("kind = ?", kind)):
        if value is not None:
            where.append(clause)
            params.append(value)
    if outside:
        where.append("inside_domain = 0")
    sql = f"SELECT record FROM audit_log WHERE {' AND '.join(where)} ORDER BY seq"
    if limit is not None:
        sql += f" LIMIT {int(limit)}"
    return [json.loads(str(row[0])) for row in store.query(sql, tuple(params))]


@click.group("audit")
def audit_group() -> None:
    """The tamper-evident ledger: verify, checkpoint, list, export, egress."""


@audit_group.command("verify")
@click.option("--checkpoint", "mark", metavar="HASH@COUNT",
              help="A checkpoint kept elsewhere: record COUNT must still have hash HASH.")
@click.pass_context
def verify_command(ctx: click.Context, mark: str | None) -> None:
    """Recompute the hash chain; exit 1 naming the first record changed, deleted or inserted."""
    checkpoint = None
    if mark:
        digest, _, count = mark.partition("@")
        if not count.isdigit():
            raise click.BadParameter("expected HASH@COUNT", param_hint="--checkpoint")
        checkpoint = (digest, int(count))
    verdict = verify(_store(ctx), checkpoint)
    if verdict.ok:
        click.echo(f"ok: {verdict.count} records, head {verdict.head}")
        return
    click.echo(f"BROKEN at record {verdict.seq}: {verdict.problem} "
               f"({verdict.count} records verified before it)")
    sys.exit(1)


@audit_group.command("checkpoint")
@click.pass_context
def checkpoint_command(ctx: click.Context) -> None:
    """Print the head hash and record count: keep it somewhere else, to check against later."""
    digest, count = head(_store(ctx))
    at = datetime.now(UTC).isoformat(timespec="seconds")
    click.echo(json.dumps({"head": digest, "count": count, "at": at,
                           "verify_with": f"{digest}@{count}"}))


def _filters(fn: Any) -> Any:
    for option in (
        click.option("--since", help="30d, 12h, 15m or an ISO date."),
        click.option("--until", help="An ISO date."),
        click.option("--principal", help="Key name."),
        click.option("--target", help="alias/model that served it."),
        click.option("--outside", is_flag=True, help="Only what went outside the domain."),
        click.option("--status", type=int),
        click.option("--kind", type=click.Choice(["request", "egress", "admin", "refusal"])),
    ):
        fn = option(fn)
    return fn


@audit_group.command("list")
@_filters
@click.option("--limit", type=int, default=50, show_default=True)
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def list_command(ctx: click.Context, since: str | None, until: str | None,
                 principal: str | None, target: str | None, outside: bool, status: int | None,
                 kind: str | None, limit: int, as_json: bool) -> None:
    """Records, oldest first, filtered."""
    records = select(_store(ctx), since=since_iso(since), until=since_iso(until),
                     principal=principal, target=target, outside=outside, status=status,
                     kind=kind, limit=limit)
    if as_json:
        click.echo(json.dumps(records))
        return
    for r in records:
        where, why = r.get("target") or "-", r.get("reason") or ""
        if r["kind"] == "refusal":  # the route, then who knocked with which key
            where = r.get("endpoint") or "-"
            why += f" key {r.get('key')} from {r.get('client') or '-'}"
            if r.get("count", 1) > 1:
                why += f" ({r['count']} refusals in {r.get('minute')})"
        click.echo(f"{r['seq']:>7} {r['at']} {r['kind']:<7} {r.get('status') or '':<4} "
                   f"{r.get('principal') or '-':<12} {where} {why}")


@audit_group.command("export")
@_filters
@click.option("--format", "fmt", type=click.Choice(["jsonl"]), default="jsonl")
@click.option("--output", "-o", type=click.Path(dir_okay=False, path_type=Path),
              help="Write to this file (made readable by you alone) instead of stdout.")
@click.pass_context
def export_command(ctx: click.Context, since: str | None, until: str | None,
                   principal: str | None, target: str | None, outside: bool,
                   status: int | None, kind: str | None, fmt: str, output: Path | None) -> None:
    """Every matching record as JSON Lines (with its seq and hashes), for a SIEM."""
    store = _store(ctx)
    records = select(store, since=since_iso(since), until=since_iso(until),
                     principal=principal, target=target, outside=outside, status=status,
                     kind=kind)
    lines = (json.dumps(record, sort_keys=True) + "\n" for record in records)
    if output is None:
        for line in lines:
            click.echo(line, nl=False)
        return
    with open_private(output) as out:
        out.writelines(lines)
    click.echo(f"{len(records)} records written to {output}", err=True)


@audit_group.command("egress")
@click.option("--since", default="30d", show_default=True, help="30d, 12h or an ISO date.")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def egress_command(ctx: click.Context, since: str, as_json: bool) -> None:
    """What went outside the domain: per target and principal, and what was refused."""
    report = egress_report(_store(ctx), since_iso(since))
    if as_json:
        click.echo(json.dumps(report))
        return
    click.echo(f"Outside the domain since {report['since']}:")
    for row in report["sent"]:
        types = ", ".join(f"{t} {n}" for t, n in row["pseudonymized"].items()) or "none"
        click.echo(f"  {row['target']:<28} {row['principal'] or '-':<12} "
                   f"{row['requests']:>6} requests {row['tokens']:>9} tokens  "
                   f"pseudonymized: {types}")
    click.echo(f"Refused at the red line (nothing sent): {report['refused']}")


def egress_report(store: StateStore, since: str | None) -> dict[str, Any]:
    """Per (target, principal): requests, tokens, types pseudonymized; red-line refusals."""
    sent: dict[tuple[str, str], dict[str, Any]] = defaultdict(
        lambda: {"requests": 0, "tokens": 0, "bytes": 0, "pseudonymized": Counter()})
    refused = 0
    for r in select(store, since=since):
        if r["kind"] == "egress":
            row = sent[(r["target"], r.get("principal") or "")]
            row["bytes"] += r.get("payload_bytes") or 0
        for folded in r.get("egress") or []:  # egress chained with its request's record
            row = sent[(folded["target"], r.get("principal") or "")]
            row["bytes"] += folded.get("payload_bytes") or 0
        if r["kind"] == "request" and r.get("inside_domain") is False:
            row = sent[(r["target"], r.get("principal") or "")]
            row["requests"] += 1
            row["tokens"] += sum((r.get("usage") or {}).get(k) or 0
                                 for k in ("prompt_tokens", "completion_tokens"))
            row["pseudonymized"].update(r.get("pseudonymized") or {})
        elif r["kind"] == "request" and r.get("error_code") == "policy_local_only":
            refused += 1
    return {
        "since": since,
        "sent": [{"target": t, "principal": p or None, **{
            k: dict(v) if isinstance(v, Counter) else v for k, v in row.items()}}
            for (t, p), row in sorted(sent.items())],
        "refused": refused,
    }
