"""The ``ingest`` and ``search`` click commands, lexical mode (no model)."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from ownlight.knowledge.knowledge_cli import ingest_command, search_command


def _ingest(data_dir: Path, path: Path, *args: str) -> str:
    result = CliRunner().invoke(
        ingest_command,
        [str(path), "--collection", "notes", "--no-vectors", "--data-dir", str(data_dir), *args],
    )
    assert result.exit_code == 0, result.output
    return result.output


def test_ingest_then_search_json_and_batch(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "plan.md").write_text("# Plan\n\nThe launch is in March.", encoding="utf-8")
    (folder / "secret.txt").write_text("The launch budget is secret.", encoding="utf-8")
    (folder / "broken.pdf").write_bytes(b"nope")
    output = _ingest(data_dir, folder / "plan.md", "--allow", "group:team")
    assert "1 documents added" in output
    output = _ingest(data_dir, folder / "secret.txt", "--owner", "boss")
    output = _ingest(data_dir, folder, "--allow", "group:team")
    assert "skipped" in output and "broken.pdf" in output

    base = ["--collection", "notes", "--data-dir", str(data_dir), "--mode", "lexical"]
    result = CliRunner().invoke(
        search_command, ["launch", "--as", "ann", "--group", "team", "--json", *base]
    )
    assert result.exit_code == 0, result.output
    hits = json.loads(result.output)
    assert {h["title"] for h in hits} == {"Plan", "secret"}  # the folder run re-allowed it

    stdin = "\n".join(json.dumps({"id": i, "query": q}) for i, q in enumerate(["march", "x"]))
    result = CliRunner().invoke(search_command, ["--as", "zed", *base], input=stdin)
    lines = [json.loads(line) for line in result.output.splitlines()]
    assert lines == [{"id": 0, "results": []}, {"id": 1, "results": []}]


def test_bad_allow_entry_is_a_clear_error(tmp_path: Path) -> None:
    note = tmp_path / "a.txt"
    note.write_text("hello", encoding="utf-8")
    result = CliRunner().invoke(
        ingest_command,
        [str(note), "-c", "n", "--allow", "everyone", "--no-vectors",
         "--data-dir", str(tmp_path / "d")],
    )
    assert result.exit_code != 0 and "user:NAME, group:NAME or public" in result.output
