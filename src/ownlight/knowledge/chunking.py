"""Split a document into chunks that follow its structure.

Boundaries are chosen in order of preference: a heading, a blank line (paragraph), a
line, a sentence end (also the CJK 。！？), and only then a hard cut. Size is measured
in "cost" rather than characters so a chunk of Chinese (about one token per character)
and a chunk of English (about four characters per token) hold a similar amount of text
for the embedding model, whose window is 512 tokens.
"""

from __future__ import annotations

import hashlib
import json
import re

from ownlight.knowledge.access import normalize_list
from ownlight.knowledge.segment import cjk_count
from ownlight.knowledge.types import Chunk, Document, PreparedDocument

MAX_COST = 1600
_HEADING = re.compile(r"^(#{1,6})\s+(.+?)\s*#*\s*$", re.MULTILINE)
_SPLITTERS = (
    re.compile(r"\n\s*\n"),
    re.compile(r"\n"),
    re.compile(r"(?<=[.!?。！？])\s+|(?<=[。！？])"),
    re.compile(r"(?<=[,;，、；])\s*|\s+"),
)


def cost(text: str) -> int:
    """Approximate model tokens x 4: CJK characters count 3, others 1."""
    return len(text) + 2 * cjk_count(text)


def _sections(text: str, markdown: bool) -> list[tuple[int, int, str]]:
    """(start, end, heading) spans, one per heading section."""
    if not markdown:
        return [(0, len(text), "")]
    spans: list[tuple[int, int, str]] = []
    start, heading = 0, ""
    for match in _HEADING.finditer(text):
        if match.start() > start:
            spans.append((start, match.start(), heading))
        start, heading = match.start(), match.group(2)
    spans.append((start, len(text), heading))
    return spans


def _split(text: str, start: int, end: int, level: int, limit: int) -> list[tuple[int, int]]:
    """Pieces of text[start:end], each within ``limit`` if the splitters allow it."""
    if cost(text[start:end]) <= limit:
        return [(start, end)]
    if level >= len(_SPLITTERS):
        step = max(1, limit // 3)
        return [(i, min(i + step, end)) for i in range(start, end, step)]
    pieces: list[tuple[int, int]] = []
    cursor = start
    for match in _SPLITTERS[level].finditer(text, start, end):
        if match.end() > cursor and match.start() > cursor:
            pieces.append((cursor, match.end()))
            cursor = match.end()
    if cursor < end:
        pieces.append((cursor, end))
    if len(pieces) == 1:
        return _split(text, start, end, level + 1, limit)
    out: list[tuple[int, int]] = []
    for piece_start, piece_end in pieces:
        out.extend(_split(text, piece_start, piece_end, level + 1, limit))
    return out


def _pack(text: str, pieces: list[tuple[int, int]], limit: int) -> list[tuple[int, int]]:
    """Merge neighbouring pieces greedily while they fit in one chunk. A cost is a sum
    over characters, so a growing chunk's is kept, not recounted per piece (a document
    of a million one-word paragraphs packs in linear time)."""
    packed: list[tuple[int, int]] = []
    packed_cost = 0
    for start, end in pieces:
        grown = packed_cost + cost(text[packed[-1][1] : end]) if packed else limit + 1
        if grown <= limit:
            packed[-1] = (packed[-1][0], end)
            packed_cost = grown
        else:
            packed.append((start, end))
            packed_cost = cost(text[start:end])
    return packed


def chunk_text(text: str, markdown: bool = False, limit: int = MAX_COST) -> list[Chunk]:
    """Chunks covering ``text``; whitespace-only pieces are dropped, spans are exact."""
    chunks: list[Chunk] = []
    for sec_start, sec_end, heading in _sections(text, markdown):
        for start, end in _pack(text, _split(text, sec_start, sec_end, 0, limit), limit):
            piece = text[start:end]
            stripped = piece.strip()
            if not stripped:
                continue
            lead = len(piece) - len(piece.lstrip())
            real_start = start + lead
            chunks.append(Chunk(stripped, real_start, real_start + len(stripped), heading))
    return chunks


def prepare(doc: Document, default_allow: tuple[str, ...]) -> PreparedDocument:
    """Chunk a document and fix its access list (its own, else the command's)."""
    allow = normalize_list(doc.allow) if doc.allow is not None else default_allow
    payload = json.dumps([doc.title, doc.text, doc.metadata, allow], default=str)
    return PreparedDocument(
        key=doc.key,
        title=doc.title,
        metadata=doc.metadata,
        allow=allow,
        content_hash=hashlib.sha256(payload.encode()).hexdigest(),
        chunks=chunk_text(doc.text, markdown=doc.markdown),
    )
