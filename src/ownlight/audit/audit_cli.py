"""``ownlight audit``: verify the chain, print a checkpoint, list, export, report egress."""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click

from ownlight.audit.queries import egress_report, select
from ownlight.audit.queries import since_iso as _since_iso
from ownlight.audit.shared import LedgerRows, PgLedgerStore
from ownlight.audit.verify import head, verify
from ownlight.config import load_config
from ownlight.errors import ConfigError, InvalidRequest
from ownlight.store.files import open_private
from ownlight.store.open import store_url
from ownlight.store.postgres import PostgresDatabase
from ownlight.store.sqlite import StateStore


def _store(ctx: click.Context) -> LedgerRows:
    """The ledger to read: the shared one in PostgreSQL when ``[store] url`` is set (from
    any machine), else this data dir's SQLite file."""
    root = ctx.find_root().obj
    try:
        config = load_config(root.get("config_path") if isinstance(root, dict) else None)
        url = store_url(config)
        if url is not None:
            rows = PgLedgerStore(PostgresDatabase(url, max_connections=2))
            ctx.call_on_close(rows.close)
            return rows
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from exc
    return StateStore(config.data_dir / "state.db")


def since_iso(value: str | None) -> str | None:
    try:
        return _since_iso(value)
    except InvalidRequest as exc:
        raise click.BadParameter(exc.message) from None


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
