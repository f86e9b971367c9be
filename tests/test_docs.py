"""The docs name every setting and CLI command and build strictly; the README's links hold.

The README is the front door; the reference lives in ``docs/``, an MkDocs site (``mkdocs.yml``).
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import click

from ownlight.cli import main
from ownlight.config import SETTINGS, settings_table

ROOT = Path(__file__).parent.parent
README = (ROOT / "README.md").read_text()
CONFIGURATION = (ROOT / "docs" / "configuration.md").read_text()
CLI = (ROOT / "docs" / "cli.md").read_text()
TABLE_START, TABLE_END = "<!-- settings-table -->\n", "<!-- /settings-table -->"


def test_settings_table_is_generated_from_the_declarations() -> None:
    """Regenerate with: python -c 'from ownlight.config import settings_table as t; print(t())'"""
    assert CONFIGURATION.count(TABLE_START) == 1 and CONFIGURATION.count(TABLE_END) == 1
    start = CONFIGURATION.index(TABLE_START) + len(TABLE_START)
    assert CONFIGURATION[start : CONFIGURATION.index(TABLE_END)] == settings_table()


def test_every_setting_is_documented() -> None:
    missing = [s.name for s in SETTINGS if f"`{s.name}`" not in CONFIGURATION]
    assert not missing, f"settings missing from docs/configuration.md: {missing}"
    for name in ("server.port", "privacy.actions", "routing.rules[].when.groups",
                 "models.NAME.price_in", "models.NAME.input_type"):
        assert name in {s.name for s in SETTINGS}


def test_every_command_is_documented() -> None:
    def walk(group: click.Group, prefix: str) -> list[str]:
        names = []
        for name, command in group.commands.items():
            if isinstance(command, click.Group):
                names += walk(command, f"{prefix}{name} ")
            else:
                names.append(f"{prefix}{name}")
        return names

    missing = [c for c in walk(main, "ownlight ") if c not in CLI]
    assert not missing, f"commands missing from docs/cli.md: {missing}"


def test_readme_opens_with_the_two_commands() -> None:
    head = "\n".join(README.splitlines()[:12])
    assert "make serve" in head and "make test" in head


def test_readme_is_a_front_door() -> None:
    assert len(README.splitlines()) <= 220, "the reference belongs in docs/"


def test_the_docs_site_builds_strictly(tmp_path: Path) -> None:
    """mkdocs.yml sets strict validation: a broken link or anchor, or a page left out of the
    nav, is a warning, and --strict makes any warning fail the build."""
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--quiet",
         "--config-file", str(ROOT / "mkdocs.yml"), "--site-dir", str(tmp_path / "site")],
        capture_output=True, text=True, cwd=ROOT, timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert (tmp_path / "site" / "configuration" / "index.html").exists()


# -- the README's links, as GitHub renders them ---------------------------------------------

FENCE = re.compile(r"^(```|~~~).*?^\1", re.S | re.M)
CODE = re.compile(r"`[^`\n]*`")
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def _prose(markdown: str) -> str:
    return CODE.sub("", FENCE.sub("", markdown))


def _anchors(markdown: str) -> set[str]:
    """GitHub's heading ids: lower case, punctuation dropped, spaces to hyphens, -N for repeats."""
    seen: dict[str, int] = {}
    anchors = set()
    for line in FENCE.sub("", markdown).splitlines():
        heading = re.match(r"#{1,6}\s+(.*?)\s*#*\s*$", line)
        if not heading:
            continue
        text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading.group(1)).replace("`", "")
        slug = re.sub(r"[^\w\- ]", "", text.lower()).replace(" ", "-")
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        anchors.add(slug if count == 0 else f"{slug}-{count}")
    return anchors


def _broken_links(path: Path, root: Path = ROOT) -> list[str]:
    broken = []
    root = root.resolve()
    for target in LINK.findall(_prose(path.read_text())):
        if re.match(r"[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto:
            continue
        file_part, _, anchor = target.partition("#")
        linked = (path.parent / file_part).resolve() if file_part else path
        if root not in linked.parents:
            broken.append(f"{target} (outside the repository)")
        elif not linked.exists():
            broken.append(f"{target} (no such file)")
        elif anchor and (linked.suffix != ".md" or anchor not in _anchors(linked.read_text())):
            broken.append(f"{target} (no such heading)")
    return broken


def test_every_readme_link_and_anchor_resolves() -> None:
    assert LINK.findall(_prose(README)), "the README links into the docs"
    broken = _broken_links(ROOT / "README.md")
    assert not broken, f"broken links in README.md: {broken}"


def test_the_link_checker_finds_broken_links(tmp_path: Path) -> None:
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "a.md").write_text("# A `b` — c\n## Your own notes, answered\n")
    (tmp_path / "README.md").write_text(
        "# Top\n## x\n## x\n```\n# not a heading [no](gone.md)\n```\n"
        "[ok](docs/a.md) [ok](docs/a.md#a-b--c) [ok](#x-1) [ok](https://example.com/#z) "
        "`[code](gone.md)` [ok](docs/a.md#your-own-notes-answered)\n"
        "[bad](docs/b.md) [bad](docs/a.md#a-b-c) [bad](#not-a-heading) [bad](../elsewhere.md)\n"
    )
    assert _broken_links(tmp_path / "README.md", tmp_path) == [
        "docs/b.md (no such file)", "docs/a.md#a-b-c (no such heading)",
        "#not-a-heading (no such heading)", "../elsewhere.md (outside the repository)",
    ]
