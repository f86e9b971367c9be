"""Ingestion: files -> documents -> chunks in the store, incremental and crash-safe.

Each file is one transaction (``replace_source``), and a file's hash is recorded in the
same transaction as its documents, so a killed run leaves every file either fully in
or untouched, and the next run redoes exactly the files that did not commit. Files are
indexed lexically at once; vectors follow in ``embed_pending`` batches.

Files are hostile until parsed: the walk stays inside what it was given (``files``), and
each file is read and parsed within ``IngestLimits`` (``limits``), in a worker process
that is killed when a file takes too long (``worker``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from ownlight.errors import InvalidRequest
from ownlight.guard.chunk_head import shared_head
from ownlight.knowledge.access import normalize_list
from ownlight.knowledge.files import discover, read
from ownlight.knowledge.limits import IngestLimits, LoadError
from ownlight.knowledge.store import KnowledgeStore, PreparedDocument
from ownlight.knowledge.worker import ParseWorker

if TYPE_CHECKING:
    from ownlight.knowledge.embedder import Embedder

#: progress(files_done, files_total, current_path)
IngestProgress = Callable[[int, int, str], None]
#: progress(chunks_embedded, chunks_total)
EmbedProgress = Callable[[int, int], None]


@dataclass
class IngestReport:
    files_seen: int = 0
    files_unchanged: int = 0
    documents_added: int = 0
    documents_updated: int = 0
    documents_removed: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)

    def to_dict(self) -> dict[str, object]:
        return {**self.__dict__, "failed": [{"path": p, "error": e} for p, e in self.failed]}


def _source_hash(raw: bytes, allow: tuple[str, ...], owner: str | None) -> str:
    digest = hashlib.sha256(raw)
    digest.update(json.dumps([list(allow), owner]).encode())
    return digest.hexdigest()


def ingest_path(
    store: KnowledgeStore,
    path: str | Path,
    collection: str,
    allow: tuple[str, ...] | list[str] = (),
    owner: str | None = None,
    tenant: str = "default",
    prune: bool = False,
    progress: IngestProgress | None = None,
    limits: IngestLimits | None = None,
    follow_links: bool = False,
    protected: Sequence[Path] = (),
) -> IngestReport:
    """Index new and changed files under ``path``; with ``prune``, forget vanished ones.

    Each file is parsed within ``limits`` in a worker process; links out of ``path`` are
    followed only with ``follow_links``, and nothing under ``protected`` (Ownlight's data
    directory) is read. A file that is refused or over a bound is reported in ``failed``;
    whatever it held before stays as it was.
    """
    root = Path(path).expanduser().resolve()
    if not root.exists():
        raise FileNotFoundError(f"no such file or directory: {path}")
    limits = limits or IngestLimits.default()
    default_allow = normalize_list(list(allow))
    files, refused = discover(root, follow_links, protected)
    report = IngestReport(files_seen=len(files) + len(refused),
                          failed=[(str(r.path), r.reason) for r in refused])
    with ParseWorker(limits) as worker:
        for done, file in enumerate(files, 1):
            source = str(file.path)
            try:
                raw = read(file, limits)
                digest = _source_hash(raw, default_allow, owner)
                if store.source_hash(tenant, collection, source) == digest:
                    report.files_unchanged += 1
                else:
                    documents = [_relative(doc, file.path, root)
                                 for doc in worker.prepare(source, raw, default_allow)]
                    change = store.replace_source(
                        tenant, collection, source, digest, owner, documents
                    )
                    report.documents_added += change.added
                    report.documents_updated += change.updated
                    report.documents_removed += change.removed
            except (OSError, LoadError, ValueError, InvalidRequest) as exc:
                report.failed.append((source, str(exc)))
            if progress:
                progress(done, len(files), source)
    if prune:
        report.documents_removed += store.prune(
            tenant, collection, str(root), {str(f.path) for f in files}
        )
    return report


def _relative(doc: PreparedDocument, file: Path, root: Path) -> PreparedDocument:
    """A document id names the file relative to the ingested root, never the server's
    absolute path (ingesting one file: its name)."""
    name = file.relative_to(root).as_posix() if root.is_dir() else file.name
    if doc.key.startswith(str(file)):
        return dataclasses.replace(doc, key=name + doc.key[len(str(file)):])
    return doc


def embed_pending(
    store: KnowledgeStore,
    embedder: Embedder,
    batch_size: int = 16,
    max_chunks: int | None = None,
    progress: EmbedProgress | None = None,
    guard_scores: bool = True,
) -> int:
    """Embed chunks that have no vector yet, batch by batch, then score the embedded chunks
    that have no guard score (a migration cleared the scores of a replaced head); safe to
    stop and resume. Returns how many chunks were embedded or scored. ``guard_scores``
    false leaves the guard's scores out (a test of vector search alone)."""
    total = store.count_pending()
    if max_chunks is not None:
        total = min(total, max_chunks)
    head = shared_head()
    done = 0
    while done < total:
        batch = store.pending_chunks(min(batch_size, total - done))
        if not batch:
            break
        texts = [text for _, text in batch]
        vectors = embedder.passages(texts)
        # the guard's score from its own e5 reading of the chunk's lines, whatever the
        # knowledge base embeds with: paid here once, read for free at query time
        # (``guard.chunk_head``)
        scores = head.chunk_scores(texts, head.embed) if guard_scores else None
        store.store_vectors([chunk_id for chunk_id, _ in batch], vectors, scores)
        done += len(batch)
        if progress:
            progress(done, total)
    while guard_scores and (max_chunks is None or done < max_chunks):
        limit = batch_size if max_chunks is None else min(batch_size, max_chunks - done)
        unscored = store.unscored_chunks(limit)
        if not unscored:
            break
        store.store_scores([chunk_id for chunk_id, _ in unscored],
                           head.chunk_scores([text for _, text in unscored], head.embed))
        done += len(unscored)
    return done
