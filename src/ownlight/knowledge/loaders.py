"""Read files into documents, one small function per format.

A loader reads a file's bytes (a ``Source``) and returns every document they hold: one for
most formats, one per mail for .mbox, one per row for .jsonl. Loaders expect hostile input:
sizes are checked before parsing (a .docx's unpacked parts, the content a PDF's pages
draw), a mail is read only up to ``max_mail_mb``, the text a file yields is counted against
``max_text_mb``, and no parser builds a structure whose size or depth the file chooses
(HTML is tokenized, a .docx's XML streamed). Time and memory are bounded by the process
the loader runs in (``worker``). A file that cannot be read raises ``LoadError`` with a
message fit for the ingest report; the caller skips it and goes on.
"""

from __future__ import annotations

import email
import email.policy
import html
import io
import json
import re
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path, PurePath
from typing import IO, Any

from ownlight.knowledge.limits import IngestLimits, LoadError, OverLimit, megabytes
from ownlight.knowledge.types import Document

__all__ = ["LOADERS", "LoadError", "Source", "html_to_markdown", "load", "load_bytes",
           "supported"]


@dataclass
class Source:
    """A file's bytes as a loader reads them, and the text it may still yield."""

    key: str
    data: bytes
    limits: IngestLimits
    text_left: int = field(init=False)

    def __post_init__(self) -> None:
        self.text_left = self.limits.text_chars

    @property
    def stem(self) -> str:
        return PurePath(self.key).stem

    def take(self, text: str) -> str:
        """``text``, counted against ``max_text_mb``."""
        self.text_left -= len(text)
        if self.text_left < 0:
            raise OverLimit(f"it yields more than {self.limits.max_text_mb:g} MB of text",
                            "max_text_mb", self.limits.max_text_mb)
        return text


def _decode(data: bytes) -> str:
    """UTF-8 with universal newlines, as ``Path.read_text`` reads it."""
    return io.TextIOWrapper(io.BytesIO(data), encoding="utf-8").read()


def _text(source: Source) -> list[Document]:
    return [Document(source.key, source.stem, source.take(_decode(source.data)))]


def _markdown(source: Source) -> list[Document]:
    text = source.take(_decode(source.data))
    title = next(
        (line.lstrip("#").strip() for line in text.splitlines() if line.startswith("# ")),
        source.stem,
    )
    return [Document(source.key, title, text, markdown=True)]


# -- HTML: one pass of a tokenizer, no tree ------------------------------------------------
# Each alternative is linear: a tag or its quoted values never run past the next '<', and
# an unclosed comment or script ends the page. Nesting depth costs nothing.
_TAG_ATTRS = r"""(?:[^<>"']|"[^"<]*+"|'[^'<]*+')*+"""
_HTML_TOKEN = re.compile(
    r"<!--.*?(?:-->|\Z)"
    r"|<(script|style|noscript|template|title)\b[^<>]*+>(.*?)(?:</\1\s*>|\Z)"
    rf"|<(/?)([a-z][a-z0-9:-]*+){_TAG_ATTRS}>"
    r"|<[!?][^<>]*+>",
    re.S | re.I,
)
_HEADINGS = {f"h{n}": "\n\n" + "#" * n + " " for n in range(1, 7)}
_BREAKS = {
    **dict.fromkeys(_HEADINGS, "\n\n"),
    **dict.fromkeys(("p", "div", "li", "tr", "section", "article", "table", "ul", "ol",
                     "blockquote", "pre", "header", "footer", "main", "nav", "aside", "dl",
                     "dt", "dd", "figure", "figcaption", "hr"), "\n\n"),
    "br": "\n", "td": " ", "th": " ",
}
_BLANK_LINES = re.compile(r"\n{3,}")


def html_to_markdown(page: str) -> tuple[str, str]:
    """(title, text) of an HTML page; headings become '#' lines so chunking sees them."""
    title = ""
    pieces: list[str] = []
    last = 0
    for match in _HTML_TOKEN.finditer(page):
        if match.start() > last:
            pieces.append(page[last:match.start()])
        last = match.end()
        hidden, content, closing, name = match.groups()
        if hidden is not None:
            if not title and hidden.lower() == "title":
                title = " ".join(html.unescape(content).split())
        elif name is not None:
            name = name.lower()
            pieces.append(_BREAKS.get(name, "") if closing or name not in _HEADINGS
                          else _HEADINGS[name])
            if len(pieces) > 65536:  # one string, not millions of small ones
                pieces = ["".join(pieces)]
    pieces.append(page[last:])
    text = html.unescape("".join(pieces))
    lines = (" ".join(line.split()) for line in text.splitlines())
    return title, _BLANK_LINES.sub("\n\n", "\n".join(lines)).strip()


def _html(source: Source) -> list[Document]:
    title, text = html_to_markdown(source.data.decode("utf-8", errors="replace"))
    return [Document(source.key, title or source.stem, source.take(text), markdown=True)]


# -- PDF -----------------------------------------------------------------------------------


def _page_contents(page: Any) -> Iterator[Any]:
    from pypdf.generic import StreamObject

    contents = page.get("/Contents")
    contents = contents.get_object() if contents is not None else None
    for item in contents if isinstance(contents, list) else [contents]:
        stream = item.get_object() if item is not None else None
        if isinstance(stream, StreamObject):
            yield stream


def _drawn_content(pages: Any, limit: int) -> int:
    """Bytes of content the pages draw, decoded, up to just past ``limit``. Text extraction
    parses a page's content once per page, so a stream shared by pages counts for each."""
    sizes: dict[int, int] = {}
    total = 0
    for page in pages:
        for stream in _page_contents(page):
            if id(stream) not in sizes:
                sizes[id(stream)] = len(stream.get_data())
            total += sizes[id(stream)]
            if total > limit:
                return total
    return total


def _pdf(source: Source) -> list[Document]:
    from pypdf import PdfReader

    reader = PdfReader(io.BytesIO(source.data))
    limit = source.limits.file_bytes
    if _drawn_content(reader.pages, limit) > limit:
        raise OverLimit(
            f"its pages draw more than {megabytes(limit)} of content (a stream shared by "
            "pages counted for each)", "max_file_mb", source.limits.max_file_mb)
    pages = []
    for page in reader.pages:
        text = (page.extract_text() or "").strip()
        if text:
            pages.append(source.take(text))
    meta = reader.metadata
    title = str(meta.title) if meta and meta.title else source.stem
    return [Document(source.key, title, "\n\n".join(pages), {"pages": len(reader.pages)})]


# -- DOCX: the zip's directory checked first, the document's XML streamed --------------------
_W = "{http://schemas.openxmlformats.org/wordprocessingml/2006/main}"
_OFFICE_DOCUMENT = "http://schemas.openxmlformats.org/officeDocument/2006/relationships/" \
                   "officeDocument"
_RUN_TEXT = {f"{_W}t": None, f"{_W}tab": "\t", f"{_W}ptab": "\t", f"{_W}br": "\n",
             f"{_W}cr": "\n", f"{_W}noBreakHyphen": "-"}
_FALLBACK = "{http://schemas.openxmlformats.org/markup-compatibility/2006}Fallback"
_HEADING_STYLE = re.compile(r"heading\s*([1-9])")
_XML_OPTIONS: dict[str, Any] = {"resolve_entities": False, "no_network": True,
                                "huge_tree": False, "load_dtd": False}


class _Docx:
    """The parts of a .docx that hold its text, read within ``max_file_mb`` unpacked."""

    def __init__(self, source: Source):
        try:
            self.zip = zipfile.ZipFile(io.BytesIO(source.data))
        except zipfile.BadZipFile as exc:
            raise LoadError(f"not a .docx (zip) file: {exc}") from exc
        self.limits = source.limits
        self.left = source.limits.file_bytes

    def open(self, name: str) -> IO[bytes] | None:
        """A part, after its unpacked size (the zip's own directory, which zipfile holds
        the data to) is counted against the bound; None when the part is absent."""
        try:
            info = self.zip.getinfo(name)
        except KeyError:
            return None
        self.left -= info.file_size
        if self.left < 0:
            unpacked = sum(i.file_size for i in self.zip.infolist())
            raise self.limits.too_big("its unpacked parts are", unpacked)
        return self.zip.open(info)

    def xml(self, name: str) -> Any:
        from lxml import etree

        part = self.open(name)
        if part is None:
            return None
        with part:
            return etree.parse(part, etree.XMLParser(**_XML_OPTIONS))

    def main_part(self) -> str:
        rels = self.xml("_rels/.rels")
        if rels is not None:
            for rel in rels.getroot():
                if rel.get("Type") == _OFFICE_DOCUMENT and rel.get("TargetMode") != "External":
                    return str(rel.get("Target", "")).lstrip("/")
        return "word/document.xml"

    def style_names(self) -> dict[str, str]:
        styles = self.xml("word/styles.xml")
        if styles is None:
            return {}
        names = {}
        for style in styles.getroot().iter(f"{_W}style"):
            name = style.find(f"{_W}name")
            if name is not None:
                names[style.get(f"{_W}styleId", "")] = name.get(f"{_W}val", "")
        return names

    def title(self) -> str:
        core = self.xml("docProps/core.xml")
        found = core.find("{http://purl.org/dc/elements/1.1/}title") if core is not None else None
        return (found.text or "").strip() if found is not None else ""


def _paragraph(p: Any, styles: dict[str, str]) -> str:
    if next(p.iterancestors(_FALLBACK), None) is not None:
        return ""  # a text box's copy for old readers: its other copy is read
    pieces = []
    for node in p.iter(*_RUN_TEXT):
        mark = _RUN_TEXT[node.tag]
        pieces.append((node.text or "") if mark is None else mark)
    text = "".join(pieces).strip()
    style = p.find(f"{_W}pPr/{_W}pStyle")
    if not text or style is None:
        return text
    name = styles.get(style.get(f"{_W}val", ""), style.get(f"{_W}val", "")).lower()
    heading = _HEADING_STYLE.fullmatch(name)
    if heading:
        return "#" * int(heading.group(1)) + " " + text
    return "# " + text if name == "title" else text


def _drop_read(p: Any) -> None:
    """Free what was read before paragraph ``p``, so memory stays flat however many
    paragraphs (or tables) the document holds; never inside an unread paragraph."""
    if next(p.iterancestors(f"{_W}p"), None) is not None:
        return
    for element in (p, *p.iterancestors()):
        parent = element.getparent()
        if parent is not None:
            del parent[:parent.index(element)]


def _docx(source: Source) -> list[Document]:
    from lxml import etree

    docx = _Docx(source)
    with docx.zip:
        main, styles, title = docx.main_part(), docx.style_names(), docx.title()
        part = docx.open(main)
        if part is None:
            raise LoadError(f"no {main} in the file: not a Word document")
        parts: list[str] = []
        with part:
            events = etree.iterparse(part, tag=f"{_W}p", **_XML_OPTIONS)
            for count, (_, p) in enumerate(events):
                if len(p):
                    text = _paragraph(p, styles)
                    if text:
                        parts.append(source.take(text))
                    p.clear()  # a paragraph inside another (a text box) is read once
                if count % 1024 == 0:
                    _drop_read(p)
    return [Document(source.key, title or source.stem, "\n\n".join(parts), markdown=True)]


# -- mail ----------------------------------------------------------------------------------


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


def _parse_mail(source: Source, start: int, end: int) -> EmailMessage:
    """The mail in ``data[start:end]``, read up to ``max_mail_mb``: its text body comes
    first in nearly every mail, and the attachments cut off are never indexed."""
    raw = source.data[start:min(end, start + source.limits.mail_bytes)]
    message = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    return message


def _eml(source: Source) -> list[Document]:
    doc = mail_document(_parse_mail(source, 0, len(source.data)), source.key)
    source.take(doc.text)
    return [doc]


_MBOX_FROM = re.compile(rb"^From .*(?:\r?\n|\Z)", re.M)


def _mbox_spans(data: bytes) -> Iterator[tuple[int, int]]:
    """(start, end) of each mail: a line starting with 'From ' begins one."""
    start = None
    for line in _MBOX_FROM.finditer(data):
        if start is not None:
            yield start, line.start()
        start = line.end()
    if start is not None:
        yield start, len(data)


def _mbox(source: Source) -> list[Document]:
    documents = []
    for index, (start, end) in enumerate(_mbox_spans(source.data)):
        message = _parse_mail(source, start, end)
        ident = str(message["Message-ID"] or "").strip("<> ") or str(index)
        doc = mail_document(message, f"{source.key}#{ident}")
        source.take(doc.text)
        documents.append(doc)
    return documents


# -- JSON Lines ----------------------------------------------------------------------------


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


def _jsonl(source: Source) -> list[Document]:
    documents = []
    lines = io.TextIOWrapper(io.BytesIO(source.data), encoding="utf-8")
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise LoadError(f"line {number}: invalid JSON ({exc.msg})") from exc
        documents.append(jsonl_row(row, number))
        source.take(documents[-1].text)
    return documents


LOADERS: dict[str, Callable[[Source], list[Document]]] = {
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


def supported(path: PurePath) -> bool:
    return path.suffix.lower() in LOADERS


def load_bytes(key: str, data: bytes, limits: IngestLimits) -> list[Document]:
    """Documents in a file's bytes (``key``, its path, names the format and documents);
    raises ``LoadError`` when they cannot be read. Bounds time and memory not at all:
    ``worker`` runs this in a process that does."""
    loader = LOADERS.get(PurePath(key).suffix.lower())
    if loader is None:
        raise LoadError(f"unsupported file type {PurePath(key).suffix or '(none)'}")
    if len(data) > limits.file_bytes:
        raise limits.too_big("the file is", len(data))
    try:
        return loader(Source(key, data, limits))
    except (LoadError, MemoryError):
        raise
    except Exception as exc:  # a broken file of any format: report it, never crash
        raise LoadError(f"{type(exc).__name__}: {exc}") from exc


def load(path: Path, limits: IngestLimits | None = None) -> list[Document]:
    """Documents in the file at ``path``, read in this process (see ``load_bytes``)."""
    limits = limits or IngestLimits.default()
    size = path.stat().st_size
    if size > limits.file_bytes:
        raise limits.too_big("the file is", size)
    return load_bytes(str(path), path.read_bytes(), limits)
