"""``ownlight guard``: scan texts for prompt injection, or retrain the guard."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

PACKAGED = Path(__file__).resolve().parent.parent / "data" / "guard" / "guard.npz"
PACKAGED_UNTRUSTED = PACKAGED.with_name("untrusted.npz")


@click.group("guard")
def guard_group() -> None:
    """The prompt-injection guard."""


@guard_group.command("scan")
@click.option("--model", "model_path", type=click.Path(exists=True, dir_okay=False),
              help="Weights to use instead of the packaged ones.")
@click.option("--threshold", type=float, help="Score from which a text is an injection.")
@click.option("--untrusted", is_flag=True,
              help="Read the texts as content the system reads (documents, tool results), "
                   "line by line, not as what a user sends.")
@click.option("--second-look/--no-second-look", default=True, show_default=True,
              help="With --untrusted: also read the most suspicious lines with the e5 model, "
                   "as the gateway reads a tool result (guard.second_look).")
def scan_command(model_path: str | None, threshold: float | None, untrusted: bool,
                 second_look: bool) -> None:
    """JSON Lines {"id", "text"} on stdin -> {"id", "score", "label", "reasons"} on stdout,
    each text read as the gateway reads it."""
    from ownlight.config.settings import GuardSettings
    from ownlight.guard.stage import InjectionGuard

    settings = (GuardSettings(untrusted_model_path=model_path, untrusted_threshold=threshold,
                              second_look=second_look) if untrusted
                else GuardSettings(model_path=model_path, threshold=threshold))
    guard = InjectionGuard(settings)
    scan = guard.scan_untrusted if untrusted else guard.scan
    for line in sys.stdin:
        if not line.strip():
            continue
        row = json.loads(line)
        verdict = scan(str(row.get("text", "")))
        click.echo(json.dumps({"id": row.get("id"), **verdict.to_dict()}))


@guard_group.command("train")
@click.option("--data", "paths", multiple=True, required=True,
              type=click.Path(exists=True, dir_okay=False),
              help="JSON Lines {text, label} (repeatable). Dev sets only, never test.")
@click.option("--out", type=click.Path(dir_okay=False),
              help="Where the weights go; default: the packaged file of that model.")
@click.option("--untrusted", is_flag=True,
              help="Train the untrusted-content model: indirect rows give attack lines, "
                   "direct rows give prompts, --documents give benign lines.")
@click.option("--documents", "document_paths", multiple=True,
              type=click.Path(exists=True, dir_okay=False),
              help="JSON Lines {text} of benign documents (repeatable). Rows of kind "
                   "tool_output are read by either model and also set its threshold (at "
                   "most 1% flagged); other documents only by the --untrusted one.")
@click.option("--word-cnn", is_flag=True,
              help="Also train the word network that reads each line's runs of words "
                   "(guard.word_cnn; training needs torch, serving does not).")
@click.option("--cv-out", type=click.Path(dir_okay=False),
              help="With --untrusted: keep the out-of-fold document scores the threshold "
                   "is chosen on (.npz), to study another threshold rule without training "
                   "again.")
def train_command(paths: tuple[str, ...], out: str | None, untrusted: bool,
                  document_paths: tuple[str, ...], word_cnn: bool,
                  cv_out: str | None) -> None:
    """Train the guard's weights (logistic regression, C and threshold by dev CV)."""
    from ownlight.guard.training import load, train

    if any("test" in Path(p).name for p in (*paths, *document_paths)):
        raise click.BadParameter("never train on a test split", param_hint="--data")
    if cv_out and not untrusted:
        raise click.BadParameter("only the --untrusted training keeps its CV scores",
                                 param_hint="--cv-out")
    rows = load([Path(p) for p in paths])
    if untrusted:
        from ownlight.guard.untrusted_training import train_untrusted

        benign = [r for r in load([Path(p) for p in document_paths])
                  if int(r.get("label", 0)) == 0]
        model, report = train_untrusted(
            rows, [r["text"] for r in benign if r.get("kind") != "tool_output"],
            tool_outputs=[r["text"] for r in benign if r.get("kind") == "tool_output"],
            word_cnn=word_cnn, cv_out=Path(cv_out) if cv_out else None)
    else:
        pasted = [r["text"] for r in load([Path(p) for p in document_paths])
                  if r.get("kind") == "tool_output" and int(r.get("label", 0)) == 0]
        model, report = train(rows, tool_outputs=pasted, word_cnn=word_cnn)
    model.save(Path(out) if out else PACKAGED_UNTRUSTED if untrusted else PACKAGED)
    click.echo(json.dumps(report))
