"""The values that cross the knowledge base's boundary (loaders, store, search)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Document:
    """One unit of access control and citation: a file, a mail, a JSON Lines row.

    ``allow`` is None when the document has no list of its own (the ingest command's
    ``--allow`` then applies); an empty tuple means nobody but the owner.
    """

    key: str
    title: str
    text: str
    metadata: dict[str, Any] = field(default_factory=dict)
    allow: tuple[str, ...] | None = None
    #: Markdown-like text: lines starting with '#' are headings.
    markdown: bool = False


@dataclass(frozen=True)
class Chunk:
    """A span of a document's text; ``heading`` is the section it sits in."""

    text: str
    start: int
    end: int
    heading: str = ""


@dataclass(frozen=True)
class Hit:
    """One retrieved chunk the principal may read, ready to cite."""

    document_id: str
    title: str
    collection: str
    chunk_id: int  # the index's own row id: ranks and fuses, never shown (it counts chunks)
    text: str
    start: int
    end: int
    score: float
    chunk: int = 0  # the chunk's place in its document: what clients see
    #: the injection guard's score of the chunk, computed from its vector at ingest
    #: (None: embedded before scores were stored)
    injection_score: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "document_id": self.document_id,
            "title": self.title,
            "collection": self.collection,
            "chunk": self.chunk,
            "text": self.text,
            "start": self.start,
            "end": self.end,
            "score": self.score,
        }


@dataclass(frozen=True)
class PreparedDocument:
    """A document ready to store: chunked, with its final access list and hash."""

    key: str
    title: str
    metadata: dict[str, Any]
    allow: tuple[str, ...]
    content_hash: str
    chunks: list[Chunk]


@dataclass(frozen=True)
class ExportedSource:
    """One ingested source as a store holds it, to be written into another store as it is
    (``ownlight db copy``): no file is read or parsed again."""

    tenant: str
    collection: str
    path: str
    content_hash: str
    owner: str | None
    documents: list[PreparedDocument]
