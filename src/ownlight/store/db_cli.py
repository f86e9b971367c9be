"""``ownlight db``: the configured store's schema steps, applied or pending, and applying them;
moving a single machine's state onto PostgreSQL.

Ownlight applies pending steps itself when it starts (on PostgreSQL under an advisory lock,
so instances started together apply each once); these commands let an operator see and do
it beforehand, for instance before a rolling upgrade, from any machine that reaches the
store.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import click

from ownlight.config import Config, load_config
from ownlight.errors import ConfigError
from ownlight.knowledge.base import index_path
from ownlight.knowledge.copy import CopiedKnowledge, copy_knowledge
from ownlight.knowledge.postgres_store import PostgresKnowledgeStore
from ownlight.knowledge.sqlite_store import SQLiteKnowledgeStore
from ownlight.store.base import Migrations
from ownlight.store.copy import copy_state
from ownlight.store.open import open_database, store_url
from ownlight.store.postgres import PostgresDatabase
from ownlight.store.sqlite import StateStore


def _config(ctx: click.Context) -> Config:
    root = ctx.find_root().obj
    return load_config(root.get("config_path") if isinstance(root, dict) else None)


@contextmanager
def _database(ctx: click.Context) -> Iterator[Migrations]:
    """The configured store's database, its schema left as it is."""
    try:
        with open_database(_config(ctx)) as database:
            yield database
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


@db_group.command("copy")
@click.option("--from", "source", metavar="sqlite:PATH",
              help="The SQLite state file to copy from (default: the data dir's state.db).")
@click.option("--to", "target", metavar="postgresql://...",
              help="The PostgreSQL store to copy into (default: [store] url).")
@click.pass_context
def db_copy(ctx: click.Context, source: str | None, target: str | None) -> None:
    """Copy keys, spend, stored responses, the audit ledger, the model registry and the
    knowledge base from a SQLite state file (and the knowledge index beside it) into a
    PostgreSQL store that has no keys yet (keys keep their ids; into an empty shared
    ledger the chain keeps its hashes, so checkpoints kept elsewhere still hold)."""
    try:
        config = _config(ctx)
        path = config.data_dir / "state.db"
        if source is not None:
            if not source.startswith("sqlite:"):
                raise click.BadParameter("expected sqlite:PATH", param_hint="--from")
            path = Path(source.removeprefix("sqlite:")).expanduser()
        url = target or store_url(config)
        if not url:
            raise click.UsageError("no PostgreSQL store: give --to or set [store] url")
        if not path.is_file():
            raise click.ClickException(f"no state file at {path}")
        state = StateStore(path)
        try:
            database = PostgresDatabase(url)
            try:
                copied = copy_state(state, database)
            finally:
                database.close()
        finally:
            state.close()
        knowledge = _copy_knowledge(index_path(path.parent), url)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"copied {copied.keys} key(s), {copied.spend} spend total(s) and "
               f"{copied.responses} stored response(s); {copied.versions} model version(s), "
               f"{copied.switches} switch(es) and {copied.eval_runs} eval run(s); "
               f"{copied.audit} audit record(s) from {path} to {database.where}")
    if knowledge is not None:
        click.echo(f"copied {knowledge.sources} knowledge source(s): {knowledge.documents} "
                   f"document(s), {knowledge.chunks} chunk(s) and {knowledge.grants} grant(s); "
                   "their vectors are embedded again by the instances' background embedders")


def _copy_knowledge(index: Path, url: str) -> CopiedKnowledge | None:
    """The data dir's knowledge index, if it has one, into the PostgreSQL knowledge store."""
    if not index.is_file():
        return None
    source = SQLiteKnowledgeStore(index)
    target = PostgresKnowledgeStore.connect(url)
    try:
        return copy_knowledge(source, target)
    finally:
        target.close()
        source.close()
