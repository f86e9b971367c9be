"""``ownlight guard``: scan texts for prompt injection, or retrain the guard."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from ownlight.guard.model import GuardModel

PACKAGED = Path(__file__).resolve().parent.parent / "data" / "guard" / "guard.npz"


@click.group("guard")
def guard_group() -> None:
    """The prompt-injection guard."""


@guard_group.command("scan")
@click.option("--model", "model_path", type=click.Path(exists=True, dir_okay=False),
              help="Weights to use instead of the packaged ones.")
@click.option("--threshold", type=float, help="Score from which a text is an injection.")
def scan_command(model_path: str | None, threshold: float | None) -> None:
    """JSON Lines {"id", "text"} on stdin -> {"id", "score", "label", "reasons"} on stdout."""
    model = GuardModel.load(Path(model_path) if model_path else None)
    for line in sys.stdin:
        if not line.strip():
            continue
        row = json.loads(line)
        verdict = model.scan(str(row.get("text", "")), threshold)
        click.echo(json.dumps({"id": row.get("id"), **verdict.to_dict()}))


@guard_group.command("train")
@click.option("--data", "paths", multiple=True, required=True,
              type=click.Path(exists=True, dir_okay=False),
              help="JSON Lines {text, label} (repeatable). Dev sets only, never test.")
@click.option("--out", type=click.Path(dir_okay=False), default=str(PACKAGED),
              show_default=True)
def train_command(paths: tuple[str, ...], out: str) -> None:
    """Train the guard's weights (logistic regression, C and threshold by dev CV)."""
    from ownlight.guard.training import load, train

    if any("test" in Path(p).name for p in paths):
        raise click.BadParameter("never train on a test split", param_hint="--data")
    model, report = train(load([Path(p) for p in paths]))
    model.save(Path(out))
    click.echo(json.dumps(report))
