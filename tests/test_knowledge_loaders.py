"""Each loader on a small real file of its format, made here with the format's library."""

from __future__ import annotations

import json
import mailbox
from email.message import EmailMessage
from pathlib import Path

import pytest

from ownlight.knowledge.loaders import LoadError, load


def test_txt(tmp_path: Path) -> None:
    path = tmp_path / "note.txt"
    path.write_text("Plain text note about apples.", encoding="utf-8")
    [doc] = load(path)
    assert doc.title == "note" and "apples" in doc.text


def test_markdown_title_and_headings(tmp_path: Path) -> None:
    path = tmp_path / "guide.md"
    path.write_text("# Travel guide\n\n## Trains\n\nTake the 8:15.\n", encoding="utf-8")
    [doc] = load(path)
    assert doc.title == "Travel guide" and doc.markdown and "8:15" in doc.text


def test_html_drops_scripts_keeps_headings(tmp_path: Path) -> None:
    path = tmp_path / "page.html"
    path.write_text(
        "<html><head><title>Expenses</title><script>var x=1;</script></head>"
        "<body><h2>Limits</h2><p>Meals up to 40 euros.</p></body></html>",
        encoding="utf-8",
    )
    [doc] = load(path)
    assert doc.title == "Expenses"
    assert "## Limits" in doc.text and "40 euros" in doc.text and "var x" not in doc.text


def test_html_is_tokenized_like_a_browser_reads_it(tmp_path: Path) -> None:
    path = tmp_path / "page.html"
    path.write_text(
        '<!DOCTYPE html><html><head><title>A &amp; B</title><style>p{x:1}</style></head>'
        '<body><!-- a <p>comment</p> --><h1 class="x>y">Intro</h1>'
        '<p title="a > b">Tea &amp; cake</p><script>let s = "</div><p>no";</script>'
        "<table><tr><td>cell</td><td>two</td></tr></table>1 < 2<br>line"
        "<h2>Unclosed<script>never shown",
        encoding="utf-8",
    )
    [doc] = load(path)
    assert doc.title == "A & B"
    assert doc.text == "# Intro\n\nTea & cake\n\ncell two\n\n1 < 2\nline\n\n## Unclosed"


def test_pdf(tmp_path: Path) -> None:
    import fpdf  # fpdf2, a dev dependency: the test writes a real PDF
    pdf = fpdf.FPDF()
    pdf.add_page()
    pdf.set_font("Helvetica", size=12)
    pdf.cell(text="Quarterly revenue grew by twelve percent.")
    pdf.set_title("Report Q3")
    path = tmp_path / "report.pdf"
    pdf.output(str(path))
    [doc] = load(path)
    assert doc.title == "Report Q3" and "twelve percent" in doc.text


def test_docx_headings(tmp_path: Path) -> None:
    import docx
    document = docx.Document()
    document.core_properties.title = "Onboarding"
    document.add_heading("First week", level=1)
    document.add_paragraph("Collect your badge at reception.")
    path = tmp_path / "onboarding.docx"
    document.save(str(path))
    [doc] = load(path)
    assert doc.title == "Onboarding"
    assert "# First week" in doc.text and "badge at reception" in doc.text


def test_docx_tables_and_localized_heading_styles(tmp_path: Path) -> None:
    """The document's XML is streamed: table cells are read too, and a heading style is
    known by its name in styles.xml, whatever its id."""
    import docx
    document = docx.Document()
    document.add_heading("Prices", level=2)
    table = document.add_table(rows=1, cols=2)
    table.cell(0, 0).text, table.cell(0, 1).text = "Tea", "3 euros"
    heading = document.styles["Heading 1"]
    heading.element.set(
        "{http://schemas.openxmlformats.org/wordprocessingml/2006/main}styleId", "berschrift1")
    document.add_paragraph("Zweiter Teil", style="Heading 1")
    path = tmp_path / "prices.docx"
    document.save(str(path))
    [doc] = load(path)
    assert doc.title == "prices"
    assert doc.text == "## Prices\n\nTea\n\n3 euros\n\n# Zweiter Teil"


def _mail(subject: str, body: str, ident: str) -> EmailMessage:
    message = EmailMessage()
    message["From"] = "alice@example.org"
    message["To"] = "bob@example.org"
    message["Subject"] = subject
    message["Message-ID"] = f"<{ident}@example.org>"
    message.set_content(body)
    return message


def test_eml_headers_as_metadata(tmp_path: Path) -> None:
    path = tmp_path / "mail.eml"
    path.write_bytes(_mail("Server move", "The server moves on Friday.", "m1").as_bytes())
    [doc] = load(path)
    assert doc.title == "Server move" and "Friday" in doc.text
    assert doc.metadata["from"] == "alice@example.org"
    assert doc.metadata["message-id"] == "<m1@example.org>"


def test_mbox_one_document_per_mail(tmp_path: Path) -> None:
    path = tmp_path / "inbox.mbox"
    box = mailbox.mbox(str(path))
    box.add(_mail("First", "Body one.", "a1"))
    box.add(_mail("Second", "Body two.", "a2"))
    box.flush()
    box.close()
    docs = load(path)
    assert [d.title for d in docs] == ["First", "Second"]
    assert docs[0].key.endswith("#a1@example.org") and "Body two." in docs[1].text


def test_jsonl_row_allow(tmp_path: Path) -> None:
    path = tmp_path / "rows.jsonl"
    rows = [
        {"id": "r1", "title": "One", "text": "first", "allow": ["group:finance"]},
        {"id": "r2", "text": "second", "lang": "en"},
    ]
    path.write_text("\n".join(json.dumps(r) for r in rows), encoding="utf-8")
    one, two = load(path)
    assert one.allow == ("group:finance",) and two.allow is None
    assert two.title == "r2" and two.metadata == {"lang": "en"}


def test_broken_files_raise_load_error(tmp_path: Path) -> None:
    bad_pdf = tmp_path / "bad.pdf"
    bad_pdf.write_bytes(b"not a pdf at all")
    bad_jsonl = tmp_path / "bad.jsonl"
    bad_jsonl.write_text("{not json\n", encoding="utf-8")
    for path in (bad_pdf, bad_jsonl):
        with pytest.raises(LoadError):
            load(path)
