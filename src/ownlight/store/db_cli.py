"""``ownlight db``: the configured store's schema steps, applied or pending, and applying them.

Ownlight applies pending steps itself when it starts (on PostgreSQL under an advisory lock,
so instances started together apply each once); these commands let an operator see and do
it beforehand, for instance before a rolling upgrade, from any machine that reaches the
store.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager

import click

from ownlight.config import load_config
from ownlight.errors import ConfigError
from ownlight.store.base import Migrations
from ownlight.store.open import open_stores
from ownlight.store.sqlite import StateStore


@contextmanager
def _database(ctx: click.Context) -> Iterator[Migrations]:
    """The configured store's database, its schema left as it is."""
    root = ctx.find_root().obj
    try:
        config = load_config(root.get("config_path") if isinstance(root, dict) else None)
        state = StateStore(config.data_dir / "state.db", migrate=False)
        try:
            stores = open_stores(config, state, migrate=False)
            try:
                yield stores.database
            finally:
                stores.close()
        finally:
            state.close()
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from exc


@click.group("db")
def db_group() -> None:
    """The state store's schema: see and apply migrations."""


@db_group.command("status")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def db_status(ctx: click.Context, as_json: bool) -> None:
    """Show which migrations the configured store has applied and which are pending."""
    with _database(ctx) as database:
        where, steps = database.where, database.status()
    pending = [s.name for s in steps if not s.applied]
    if as_json:
        click.echo(json.dumps({"store": where, "applied": [s.name for s in steps if s.applied],
                               "pending": pending}))
        return
    click.echo(f"store: {where}")
    for step in steps:
        click.echo(f"  {'applied' if step.applied else 'pending'}  {step.name}")
    click.echo(f"{len(pending)} pending" if pending else "up to date")


@db_group.command("migrate")
@click.pass_context
def db_migrate(ctx: click.Context) -> None:
    """Apply the configured store's pending migrations, in order, each once."""
    with _database(ctx) as database:
        where, applied = database.where, database.migrate()
    if applied:
        click.echo(f"{where}: applied {', '.join(applied)}")
    else:
        click.echo(f"{where}: up to date, nothing to apply")
