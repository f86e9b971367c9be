"""The README documents every setting and every CLI command."""

from __future__ import annotations

from pathlib import Path

import click

from ownlight.cli import main
from ownlight.config import SETTINGS, settings_table

README = (Path(__file__).parent.parent / "README.md").read_text()
TABLE_START, TABLE_END = "<!-- settings-table -->\n", "<!-- /settings-table -->"


def test_settings_table_is_generated_from_the_declarations() -> None:
    """Regenerate with: python -c 'from ownlight.config import settings_table as t; print(t())'"""
    assert README.count(TABLE_START) == 1 and README.count(TABLE_END) == 1
    start = README.index(TABLE_START) + len(TABLE_START)
    assert README[start : README.index(TABLE_END)] == settings_table()


def test_every_setting_is_documented() -> None:
    missing = [s.name for s in SETTINGS if f"`{s.name}`" not in README]
    assert not missing, f"settings missing from README: {missing}"
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

    missing = [c for c in walk(main, "ownlight ") if c not in README]
    assert not missing, f"commands missing from README: {missing}"


def test_readme_opens_with_the_two_commands() -> None:
    head = "\n".join(README.splitlines()[:12])
    assert "make serve" in head and "make test" in head
