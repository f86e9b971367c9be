"""``ownlight ingest`` against hostile files and folders, through the real CLI.

Each hostile file is built here. A file over a bound is skipped within it, with a message
naming the setting, while the good files beside it are ingested and what was ingested
before stays. The first test runs the default bounds against the real large files; the
others set small bounds (``OWNLIGHT_KNOWLEDGE_*``) to keep their files small.
"""

from __future__ import annotations

import json
import mailbox
import os
import subprocess
import sys
import time
import zipfile
from collections.abc import Iterable
from email.message import EmailMessage
from pathlib import Path

from click.testing import CliRunner

from ownlight.knowledge.knowledge_cli import ingest_command, search_command

MB = 1 << 20
W_NS = "http://schemas.openxmlformats.org/wordprocessingml/2006/main"
OWNLIGHT = Path(sys.executable).with_name("ownlight")


# -- the hostile files ----------------------------------------------------------------------


def single_line_html(path: Path, size: int) -> None:
    """A page of ``size`` bytes on one line, dense with tags."""
    unit = b'<div class="c"><p>word <b>bold</b> <a href="#x">link</a></p></div>'
    with path.open("wb") as out:
        out.write(b"<html><head><title>big</title></head><body>")
        block = unit * 10_000
        for _ in range(size // len(block)):
            out.write(block)
        out.write(b"</body></html>")


def deep_html(path: Path, depth: int = 100_000) -> None:
    path.write_bytes(b"<html><body>" + b"<div>" * depth + b"deep cormorant"
                     + b"</div>" * depth + b"</body></html>")


def shared_stream_pdf(path: Path, pages: int = 1000, size: int = 5 * MB) -> None:
    """One 5 MB content stream (compressed to a few KB) drawn by every page."""
    from pypdf import PdfWriter
    from pypdf.generic import DecodedStreamObject, DictionaryObject, NameObject

    writer = PdfWriter()
    line = b"BT /F1 12 Tf 72 712 Td (shared stream) Tj ET\n"
    content = DecodedStreamObject()
    content.set_data(line * (size // len(line)))
    content_ref = writer._add_object(content.flate_encode())
    font = writer._add_object(DictionaryObject({
        NameObject("/Type"): NameObject("/Font"), NameObject("/Subtype"): NameObject("/Type1"),
        NameObject("/BaseFont"): NameObject("/Helvetica")}))
    for _ in range(pages):
        page = writer.add_blank_page(612, 792)
        page[NameObject("/Contents")] = content_ref
        page[NameObject("/Resources")] = DictionaryObject(
            {NameObject("/Font"): DictionaryObject({NameObject("/F1"): font})})
    with path.open("wb") as out:
        writer.write(out)


def _docx(path: Path, body_chunks: Iterable[bytes]) -> None:
    """A minimal .docx whose document.xml body is written chunk by chunk."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("[Content_Types].xml", (
            '<?xml version="1.0"?><Types xmlns="http://schemas.openxmlformats.org/package/2006/'
            'content-types"><Default Extension="xml" ContentType="application/xml"/></Types>'))
        with archive.open("word/document.xml", "w", force_zip64=True) as out:
            out.write(f'<?xml version="1.0"?><w:document xmlns:w="{W_NS}"><w:body>'.encode())
            for chunk in body_chunks:
                out.write(chunk)
            out.write(b"</w:body></w:document>")


def docx_zip_bomb(path: Path, size: int = 250 * MB) -> None:
    """A few hundred KB that inflate to ``size``: empty paragraphs by the million."""
    block = b"<w:p/>" * (MB // 6)
    _docx(path, [b"<w:p><w:r><w:t>bomb</w:t></w:r></w:p>"] + [block] * (size // len(block)))


def docx_paragraph_bomb(path: Path, paragraphs: int = 2_000_000) -> None:
    block = b"<w:p><w:r><w:t>x</w:t></w:r></w:p>" * 10_000
    _docx(path, [block] * (paragraphs // 10_000))


def _mail(subject: str, body: str, ident: str) -> EmailMessage:
    message = EmailMessage()
    message["From"] = "alice@example.org"
    message["Subject"] = subject
    message["Message-ID"] = f"<{ident}@example.org>"
    message.set_content(body)
    return message


def mbox_with_attachment(path: Path, size: int) -> None:
    """A mail with a ``size``-byte attachment (written base64 line by line), then a
    small mail."""
    with path.open("wb") as out:
        out.write(b"From alice@example.org Mon Jan  1 00:00:00 2024\n"
                  b"From: alice@example.org\nSubject: the big one\nMessage-ID: <big@example.org>\n"
                  b'MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary="B"\n\n'
                  b"--B\nContent-Type: text/plain\n\nSee the attached walrus census.\n"
                  b"--B\nContent-Type: application/octet-stream\n"
                  b"Content-Transfer-Encoding: base64\n\n")
        lines = (b"A" * 76 + b"\n") * 10_000
        for _ in range(size * 4 // 3 // len(lines) + 1):
            out.write(lines)
        out.write(b"--B--\n\nFrom bob@example.org Mon Jan  1 00:00:00 2024\n")
        out.write(_mail("small", "A small mail about narwhals.", "small").as_bytes() + b"\n")


# -- driving the CLI ------------------------------------------------------------------------


def ingest(data_dir: Path, path: Path, *args: str, **env: str) -> tuple[str, float]:
    """Run ``ownlight ingest`` (lexical), with ``OWNLIGHT_KNOWLEDGE_<NAME>`` settings;
    returns its output and wall time."""
    started = time.monotonic()
    result = CliRunner().invoke(
        ingest_command,
        [str(path), "-c", "notes", "--allow", "public", "--no-vectors",
         "--data-dir", str(data_dir), *args],
        env={"COLUMNS": "1000", **{f"OWNLIGHT_KNOWLEDGE_{k.upper()}": v for k, v in env.items()}},
    )
    assert result.exit_code == 0, result.output
    return result.output, time.monotonic() - started


def found(data_dir: Path, query: str) -> list[str]:
    result = CliRunner().invoke(search_command, [
        query, "-c", "notes", "--as", "anyone", "--mode", "lexical", "--json",
        "--data-dir", str(data_dir)])
    assert result.exit_code == 0, result.output
    return [hit["document_id"] for hit in json.loads(result.output)]


def skipped(output: str, name: str) -> str:
    """The reason the report gives for skipping ``name`` ('' when it was not skipped)."""
    for line in output.splitlines():
        if line.startswith("skipped ") and f"/{name}: " in line:
            return line.split(f"/{name}: ", 1)[1]
    return ""


# -- bounds ---------------------------------------------------------------------------------


def test_default_bounds_hold_against_the_hostile_files(tmp_path: Path) -> None:
    """The files that ran for minutes or took gigabytes, at their real sizes, with the
    default bounds: each is skipped within seconds, the good files beside them go in."""
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "good.md").write_text("# Offsite\n\nThe offsite is in Lisbon.", encoding="utf-8")
    single_line_html(folder / "single-line.html", 50 * 1000 * 1000)
    deep_html(folder / "deep.html")
    shared_stream_pdf(folder / "shared-stream.pdf")
    docx_zip_bomb(folder / "zip-bomb.docx")
    docx_paragraph_bomb(folder / "paragraphs.docx")
    mbox_with_attachment(folder / "attachment.mbox", 200 * MB)
    data_dir = tmp_path / "data"
    try:
        output, seconds = ingest(data_dir, folder)
    finally:
        for name in ("single-line.html", "attachment.mbox"):
            (folder / name).unlink()
    assert "(over knowledge.max_file_mb = 50 MB)" in skipped(output, "attachment.mbox")
    assert "its unpacked parts are 250.0 MB" in skipped(output, "zip-bomb.docx")
    assert "its unpacked parts are 64.9 MB" in skipped(output, "paragraphs.docx")
    assert "its pages draw more than 50.0 MB" in skipped(output, "shared-stream.pdf")
    # 50 MB of tags parse in seconds (BeautifulSoup: >90 s, 1.2 GB), to >10 MB of text
    assert "(over knowledge.max_text_mb = 10 MB)" in skipped(output, "single-line.html")
    assert "7 files (0 unchanged): 2 documents added" in output and "5 files skipped" in output
    assert found(data_dir, "Lisbon") == ["good.md"]
    assert found(data_dir, "cormorant") == ["deep.html"]  # 100,000 levels cost nothing
    assert seconds < 45, output


def _good_files(folder: Path) -> None:
    folder.mkdir(exist_ok=True)
    (folder / "b-good.txt").write_text("The offsite is in Lisbon.", encoding="utf-8")
    (folder / "c-good.md").write_text("# Budget\n\nThe budget is 40,000 euros.", encoding="utf-8")


def test_a_parser_over_its_time_is_killed_and_the_run_goes_on(tmp_path: Path) -> None:
    folder = tmp_path / "docs"
    _good_files(folder)
    single_line_html(folder / "a-slow.html", 40 * MB)  # several seconds of parsing
    output, seconds = ingest(tmp_path / "data", folder, file_timeout="1")
    assert skipped(output, "a-slow.html") == (
        "parsing it takes too long (over knowledge.file_timeout = 1 s)")
    assert "2 documents added" in output and seconds < 15, output
    assert found(tmp_path / "data", "Lisbon") == ["b-good.txt"]
    assert found(tmp_path / "data", "euros") == ["c-good.md"]  # after a fresh worker


def test_a_parser_over_its_memory_is_stopped(tmp_path: Path) -> None:
    folder = tmp_path / "docs"
    _good_files(folder)
    single_line_html(folder / "a-big.html", 20 * MB)  # a few hundred MB to parse
    output, _ = ingest(tmp_path / "data", folder, parse_memory_mb="32")
    assert skipped(output, "a-big.html") == (
        "parsing it needs more memory (over knowledge.parse_memory_mb = 32 MB)")
    assert "2 documents added" in output
    assert found(tmp_path / "data", "euros") == ["c-good.md"]


def test_text_and_chunk_bounds(tmp_path: Path) -> None:
    folder = tmp_path / "docs"
    _good_files(folder)
    (folder / "a-long.txt").write_text("word " * 300_000, encoding="utf-8")
    (folder / "a-sections.md").write_text("# h\n\nx\n\n" * 30_000, encoding="utf-8")
    output, _ = ingest(tmp_path / "data", folder, max_text_mb="1")
    assert skipped(output, "a-long.txt") == (
        "it yields more than 1 MB of text (over knowledge.max_text_mb = 1 MB)")
    assert skipped(output, "a-sections.md").startswith("it splits into more than 20,971 chunks")
    assert "2 documents added" in output


def test_a_mail_is_read_up_to_its_bound_and_attachments_cost_nothing(tmp_path: Path) -> None:
    folder = tmp_path / "mail"
    folder.mkdir()
    mbox_with_attachment(folder / "inbox.mbox", 30 * MB)
    output, seconds = ingest(tmp_path / "data", folder, max_file_mb="100", max_mail_mb="1")
    assert "2 documents added" in output and seconds < 10, output
    assert found(tmp_path / "data", "walrus") == ["inbox.mbox#big@example.org"]
    assert found(tmp_path / "data", "narwhals") == ["inbox.mbox#small@example.org"]


def test_what_was_ingested_stays_when_its_file_goes_over_a_bound(tmp_path: Path) -> None:
    folder = tmp_path / "docs"
    _good_files(folder)
    data_dir = tmp_path / "data"
    ingest(data_dir, folder)
    (folder / "b-good.txt").write_text("Lisbon " + "padding " * 200_000, encoding="utf-8")
    deep_html(folder / "d-new.html", depth=10)
    output, _ = ingest(data_dir, folder, max_file_mb="1")
    assert skipped(output, "b-good.txt") == (
        "the file is 1.5 MB (over knowledge.max_file_mb = 1 MB)")
    assert "(1 unchanged): 1 documents added" in output
    assert found(data_dir, "Lisbon") == ["b-good.txt"]  # the version ingested before
    assert found(data_dir, "cormorant") == ["d-new.html"]


# -- containment ----------------------------------------------------------------------------


def test_links_out_of_the_folder_are_followed_only_when_asked(
    tmp_path: Path, hermetic_env: Path
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("The vault code is 8841.", encoding="utf-8")
    (outside / "more").mkdir()
    (outside / "more" / "plan.txt").write_text("The plan mentions herons.", encoding="utf-8")
    hermetic_env.mkdir(parents=True)
    (hermetic_env / "salt.txt").write_text("ownlight private salt", encoding="utf-8")
    folder = tmp_path / "docs"
    _good_files(folder)
    (folder / "notes.txt").symlink_to(outside / "secret.txt")
    (folder / "more").symlink_to(outside / "more")
    (folder / "same.txt").symlink_to(folder / "b-good.txt")  # inside: fine
    (folder / "salt.txt").symlink_to(hermetic_env / "salt.txt")
    data_dir = tmp_path / "index"

    output, _ = ingest(data_dir, folder)
    assert "not followed (--follow-links follows links out of the folder)" in skipped(
        output, "notes.txt")
    assert "outside the folder" in skipped(output, "more")
    assert "in Ownlight's data directory: never ingested" in skipped(output, "salt.txt")
    assert found(data_dir, "vault") == [] and found(data_dir, "herons") == []
    assert sorted(found(data_dir, "Lisbon")) == ["b-good.txt", "same.txt"]

    output, _ = ingest(data_dir, folder, "--follow-links", "--prune")
    assert found(data_dir, "vault") == ["notes.txt"]
    assert found(data_dir, "herons") == ["more/plan.txt"]
    assert found(data_dir, "salt") == []  # never, flag or not
    assert "in Ownlight's data directory" in skipped(output, "salt.txt")

    output, _ = ingest(data_dir, folder, "--prune")  # the links are refused again
    assert found(data_dir, "vault") == [] and found(data_dir, "herons") == []


def test_fifo_and_markup_in_names_through_the_real_command(tmp_path: Path) -> None:
    """The installed ``ownlight`` in a subprocess: a FIFO must not block the run (it is
    never opened), and names holding console markup print as they are."""
    folder = tmp_path / "docs"
    _good_files(folder)
    os.mkfifo(folder / "pipe.txt")
    (folder / "a[").mkdir()
    (folder / "a[" / "]b.txt").write_text("Plums ripen in August.", encoding="utf-8")
    (folder / "a[" / "]c.pdf").write_bytes(b"not a pdf")
    (folder / "[red]x.txt").write_text("Quinces too.", encoding="utf-8")
    data_dir = tmp_path / "data"
    result = subprocess.run(
        [str(OWNLIGHT), "ingest", str(folder), "-c", "notes", "--allow", "public",
         "--no-vectors", "--data-dir", str(data_dir)],
        capture_output=True, text=True, timeout=60,
        env={**os.environ, "COLUMNS": "300"},
    )
    assert result.returncode == 0, result.stderr
    assert "MarkupError" not in result.stderr
    assert f"skipped {folder}/a[/]c.pdf: " in result.stderr
    assert f"skipped {folder}/pipe.txt: a FIFO, not a regular file: not opened" in result.stderr
    assert "4 documents added" in result.stderr
    assert found(data_dir, "plums") == ["a[/]b.txt"]
    assert found(data_dir, "quinces") == ["[red]x.txt"]


def test_mailbox_module_and_the_splitter_agree(tmp_path: Path) -> None:
    """The .mbox reader splits mails itself (no file path needed); the result matches
    the standard library's mailbox on a box it wrote, '>From' lines included."""
    from ownlight.knowledge.loaders import load

    path = tmp_path / "box.mbox"
    box = mailbox.mbox(str(path))
    box.add(_mail("one", "From the start, a line that looks like a separator.", "m1"))
    box.add(_mail("two", "Second body.", "m2"))
    box.flush()
    box.close()
    docs = load(path)
    assert [d.title for d in docs] == ["one", "two"]
    assert docs[0].text.startswith(">From the start")  # as mailbox keeps it
