"""`ownlight privacy scan` and `ownlight privacy redact`: the detector from the shell.

Both read the ``[privacy]`` table of the effective config, so deny lists, allow lists
and level rules behave exactly as they do in the gateway.
"""

from __future__ import annotations

import json
import sys

import click

from ownlight.config import load_config
from ownlight.config.settings import PrivacySettings
from ownlight.errors import ConfigError
from ownlight.privacy.detector import Detector
from ownlight.privacy.levels import LevelPolicy
from ownlight.privacy.vault import Blocked, Vault


def _settings(ctx: click.Context) -> PrivacySettings:
    path = (ctx.find_root().obj or {}).get("config_path")
    try:
        return load_config(path).settings.privacy
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from exc


@click.group("privacy")
def privacy_group() -> None:
    """Find and pseudonymize sensitive data."""


@privacy_group.command("scan")
@click.pass_context
def scan(ctx: click.Context) -> None:
    """Read JSON Lines {"id", "text"} on stdin; write {"id", "spans", "level"} per line."""
    settings = _settings(ctx)
    detector = Detector.from_settings(settings)
    policy = LevelPolicy.from_settings(settings)
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
@click.pass_context
def redact(ctx: click.Context, text: str | None) -> None:
    """Print TEXT (or stdin) with sensitive values replaced by placeholders."""
    settings = _settings(ctx)
    if text is None:
        text = sys.stdin.read()
    vault = Vault(Detector.from_settings(settings), actions=settings.actions)
    try:
        click.echo(vault.pseudonymize(text))
    except Blocked as exc:
        raise click.ClickException(exc.message) from exc
