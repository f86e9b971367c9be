"""Read files into documents, one small function per format.

A loader returns every document a file holds: one for most formats, one per mail for
.mbox, one per row for .jsonl. A file that cannot be read raises ``LoadError`` with a
message fit for the ingest report; the caller skips it and goes on.
"""

from __future__ import annotations

import email
import email.policy
import json
import mailbox
from collections.abc import Callable
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from ownlight.knowledge.types import Document


class LoadError(Exception):
    """A file that could not be turned into documents."""


def _text(path: Path) -> list[Document]:
    return [Document(str(path), path.stem, path.read_text("utf-8"))]


def _markdown(path: Path) -> list[Document]:
    text = path.read_text("utf-8")
    title = next(
        (line.lstrip("#").strip() for line in text.splitlines() if line.startswith("# ")),
        path.stem,
    )
    return [Document(str(path), title, text, markdown=True)]


def html_to_markdown(html: str) -> tuple[str, str]:
    """(title, text) of an HTML page; headings become '#' lines so chunking sees them."""
    from bs4 import BeautifulSoup

    soup = BeautifulSoup(html, "html.parser")
    for tag in soup(["script", "style", "noscript", "template"]):
        tag.decompose()
    title = soup.title.get_text(" ", strip=True) if soup.title else ""
    if soup.title:
        soup.title.decompose()
    for level in range(1, 7):
        for heading in soup.find_all(f"h{level}"):
            heading.replace_with(f"\n\n{'#' * level} {heading.get_text(' ', strip=True)}\n\n")
    for block in soup.find_all(["p", "div", "li", "tr", "br", "section", "article"]):
        block.insert_after("\n\n" if block.name != "br" else "\n")
    lines = [" ".join(line.split()) for line in soup.get_text().splitlines()]
    text = "\n".join(lines)
    while "\n\n\n" in text:
        text = text.replace("\n\n\n", "\n\n")
    return title, text.strip()


def _html(path: Path) -> list[Document]:
    title, text = html_to_markdown(path.read_text("utf-8", errors="replace"))
    return [Document(str(path), title or path.stem, text, markdown=True)]


def _pdf(path: Path) -> list[Document]:
    from pypdf import PdfReader

    reader = PdfReader(str(path))
    pages = [(page.extract_text() or "").strip() for page in reader.pages]
    meta = reader.metadata
    title = str(meta.title) if meta and meta.title else path.stem
    return [Document(str(path), title, "\n\n".join(p for p in pages if p),
                     {"pages": len(pages)})]


def _docx(path: Path) -> list[Document]:
    import docx

    document = docx.Document(str(path))
    parts: list[str] = []
    for paragraph in document.paragraphs:
        text = paragraph.text.strip()
        if not text:
            continue
        style = (paragraph.style.name or "") if paragraph.style is not None else ""
        if style.startswith("Heading") and style[-1:].isdigit():
            parts.append("#" * int(style[-1]) + " " + text)
        elif style == "Title":
            parts.append("# " + text)
        else:
            parts.append(text)
    title = document.core_properties.title or path.stem
    return [Document(str(path), title, "\n\n".join(parts), markdown=True)]


def _mail_body(message: EmailMessage) -> str:
    part = message.get_body(preferencelist=("plain", "html"))
    if part is None:
        return ""
    content = part.get_content()
    if part.get_content_type() == "text/html":
        return html_to_markdown(content)[1]
    return str(content)


def mail_document(message: EmailMessage, key: str) -> Document:
    """One mail: its body is the text, its headers are the metadata."""
    headers = {
        name.lower(): str(message[name])
        for name in ("From", "To", "Cc", "Date", "Subject", "Message-ID")
        if message[name] is not None
    }
    subject = headers.get("subject", "") or "(no subject)"
    return Document(key, subject, _mail_body(message), headers)


def _eml(path: Path) -> list[Document]:
    with path.open("rb") as handle:
        message = email.message_from_binary_file(handle, policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    return [mail_document(message, str(path))]


def _mbox(path: Path) -> list[Document]:
    box = mailbox.mbox(str(path), factory=None, create=False)
    documents = []
    try:
        for index, raw in enumerate(box):
            message = email.message_from_bytes(raw.as_bytes(), policy=email.policy.default)
            assert isinstance(message, EmailMessage)
            ident = str(message["Message-ID"] or "").strip("<> ") or str(index)
            documents.append(mail_document(message, f"{path}#{ident}"))
    finally:
        box.close()
    return documents


def jsonl_row(row: Any, line_number: int) -> Document:
    """A ``{"id", "title", "text", "allow"}`` row; its own ``allow`` replaces the command's."""
    if not isinstance(row, dict) or not isinstance(row.get("text"), str):
        raise LoadError(f"line {line_number}: expected an object with a 'text' string")
    allow = row.get("allow")
    if allow is not None and not (
        isinstance(allow, list) and all(isinstance(a, str) for a in allow)
    ):
        raise LoadError(f"line {line_number}: 'allow' must be a list of strings")
    key = str(row.get("id") or f"line-{line_number}")
    extra = {k: v for k, v in row.items() if k not in {"id", "title", "text", "allow"}}
    return Document(
        key, str(row.get("title") or key), row["text"], extra,
        None if allow is None else tuple(allow),
    )


def _jsonl(path: Path) -> list[Document]:
    documents = []
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise LoadError(f"line {number}: invalid JSON ({exc.msg})") from exc
            documents.append(jsonl_row(row, number))
    return documents


LOADERS: dict[str, Callable[[Path], list[Document]]] = {
    ".txt": _text,
    ".md": _markdown,
    ".markdown": _markdown,
    ".html": _html,
    ".htm": _html,
    ".pdf": _pdf,
    ".docx": _docx,
    ".eml": _eml,
    ".mbox": _mbox,
    ".jsonl": _jsonl,
}


def supported(path: Path) -> bool:
    return path.suffix.lower() in LOADERS


def load(path: Path) -> list[Document]:
    """Documents in ``path``; raises ``LoadError`` when the file cannot be read."""
    loader = LOADERS.get(path.suffix.lower())
    if loader is None:
        raise LoadError(f"unsupported file type {path.suffix or '(none)'}")
    try:
        return loader(path)
    except LoadError:
        raise
    except Exception as exc:  # a broken file of any format: report it, never crash
        raise LoadError(f"{type(exc).__name__}: {exc}") from exc
