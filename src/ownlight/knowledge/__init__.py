"""The private knowledge base: ingest documents with access lists, search them per user.

    kb = KnowledgeBase.open(index_path(data_dir))
    kb.ingest("~/notes", collection="notes", allow=["user:alice"])
    kb.embed_pending()                       # vectors follow, resumable
    hits = kb.search("quarterly budget", principal, ["notes"], k=5)
    prompt = build_citation_prompt(hits)     # system message + citations list
"""

from ownlight.knowledge.base import KnowledgeBase, index_path
from ownlight.knowledge.citations import CitationPrompt, build_citation_prompt, citations
from ownlight.knowledge.ingest import IngestReport
from ownlight.knowledge.types import Chunk, Document, Hit

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
