"""`ownlight privacy scan` and `ownlight privacy redact`: the detector from the shell."""

from __future__ import annotations

import json
import sys

import click

from ownlight.privacy.detector import Detector
from ownlight.privacy.levels import LevelPolicy
from ownlight.privacy.vault import Vault


@click.group("privacy")
def privacy_group() -> None:
    """Find and pseudonymize sensitive data."""


@privacy_group.command("scan")
def scan() -> None:
    """Read JSON Lines {"id", "text"} on stdin; write {"id", "spans", "level"} per line."""
    detector = Detector.default()
    policy = LevelPolicy.from_settings()
    for n, line in enumerate(sys.stdin, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            text = row["text"]
        except (ValueError, KeyError, TypeError) as exc:
            raise click.ClickException(f"line {n}: expected {{\"id\", \"text\"}}: {exc}") from exc
        spans = detector.scan(text)
        out = {"id": row.get("id"), "spans": [s.to_dict() for s in spans],
               "level": policy.level(spans)}
        click.echo(json.dumps(out, ensure_ascii=False))


@privacy_group.command("redact")
@click.argument("text", required=False)
def redact(text: str | None) -> None:
    """Print TEXT (or stdin) with sensitive values replaced by placeholders."""
    if text is None:
        text = sys.stdin.read()
    click.echo(Vault(Detector.default()).pseudonymize(text))
