"""The private knowledge base: ingest documents with access lists, search them per user.

    kb = KnowledgeBase.open(index_path(data_dir))
    kb.ingest("~/notes", collection="notes", allow=["user:alice"])
    kb.embed_pending()                       # vectors follow, resumable
    hits = kb.search("quarterly budget", principal, ["notes"], k=5)
    prompt = build_citation_prompt(hits)     # system message + citations list

The names below are imported on first use, so a process that needs one part (the ingest
parse worker needs only the loaders) does not import the embedding model's code.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ownlight.knowledge.base import KnowledgeBase, index_path
    from ownlight.knowledge.citations import CitationPrompt, build_citation_prompt, citations
    from ownlight.knowledge.ingest import IngestReport
    from ownlight.knowledge.types import Chunk, Document, Hit

_HOMES = {
    "Chunk": "types",
    "CitationPrompt": "citations",
    "Document": "types",
    "Hit": "types",
    "IngestReport": "ingest",
    "KnowledgeBase": "base",
    "build_citation_prompt": "citations",
    "citations": "citations",
    "index_path": "base",
}

__all__ = [
    "Chunk",
    "CitationPrompt",
    "Document",
    "Hit",
    "IngestReport",
    "KnowledgeBase",
    "build_citation_prompt",
    "citations",
    "index_path",
]


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{_HOMES[name]}"), name)
    globals()[name] = value  # the function citations, not the module of that name
    return value
