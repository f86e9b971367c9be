"""``ownlight router``: train, score and evaluate the complexity router from the shell."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from ownlight.routing.complexity import ComplexityRouter
from ownlight.routing.training import evaluate, load_rows, split_holdout, train

_DATA = click.option(
    "--data",
    "data",
    required=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="JSON Lines with prompt, task, weak_correct, strong_correct.",
)
_ROUTER = click.option(
    "--router",
    "router_path",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="Router file; default: the weights shipped with Ownlight.",
)


def _print_summary(results: dict[str, dict[str, Any]], with_table: bool) -> None:
    for name, res in results.items():
        r, rnd = res["router"], res["random"]
        click.echo(
            f"{name} (n={res['n']}, local {res['weak_quality']:.3f}, "
            f"cloud {res['strong_quality']:.3f})"
        )
        click.echo(
            f"  router: CPT(50%) {r['cpt50']:.3f}  CPT(80%) {r['cpt80']:.3f}  "
            f"95% of cloud quality at {r['share95']:.3f} cloud"
        )
        click.echo(
            f"  random: CPT(50%) {rnd['cpt50']:.3f}  CPT(80%) {rnd['cpt80']:.3f}  "
            f"95% of cloud quality at {rnd['share95']:.3f} cloud"
        )
        if with_table:
            click.echo("  threshold  cloud share  quality")
            for p in res["table"]:
                click.echo(
                    f"  {p['threshold']:9.2f}  {p['cloud_share']:11.3f}  {p['quality']:7.3f}"
                )


@click.group(name="router")
def router_group() -> None:
    """Complexity router: which prompts are worth sending to a cloud model."""


@router_group.command(name="train")
@_DATA
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=Path("router.npz"),
    show_default=True,
    help="Where to write the trained router.",
)
@click.option(
    "--holdout",
    type=click.FloatRange(0.0, 0.9),
    default=0.2,
    show_default=True,
    help="Share of rows held out (chosen by id hash) to report quality on; 0 trains on all.",
)
def train_cmd(data: Path, out: Path, holdout: float) -> None:
    """Train a router on labelled prompts and write it to OUT."""
    rows = load_rows(data)
    train_rows, held = split_holdout(rows, holdout) if holdout else (rows, [])
    try:
        router = train(train_rows)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from exc
    router.save(out)
    click.echo(f"trained on {len(train_rows)} rows, wrote {out}")
    if held:
        click.echo(f"held-out quality ({len(held)} rows):")
        scores = router.score_many(r["prompt"] for r in held)
        _print_summary(evaluate(scores, held), with_table=False)


@router_group.command(name="score")
@_ROUTER
def score_cmd(router_path: Path | None) -> None:
    """Read {"id", "prompt"} JSON Lines on stdin, write {"id", "score"} lines on stdout."""
    router = ComplexityRouter.load(router_path)
    for number, line in enumerate(sys.stdin, start=1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
            prompt = item["prompt"]
            if not isinstance(prompt, str):
                raise TypeError("prompt must be a string")
        except (ValueError, KeyError, TypeError) as exc:
            raise click.ClickException(f"line {number}: {exc}") from exc
        record = {"id": item.get("id"), "score": round(router.score(prompt), 6)}
        click.echo(json.dumps(record))


@router_group.command(name="eval")
@_DATA
@_ROUTER
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def eval_cmd(data: Path, router_path: Path | None, as_json: bool) -> None:
    """Cost-quality table and CPT(50%), CPT(80%) per task, router against random routing."""
    rows = load_rows(data)
    router = ComplexityRouter.load(router_path)
    results = evaluate(router.score_many(r["prompt"] for r in rows), rows)
    if as_json:
        click.echo(json.dumps(results, indent=2))
    else:
        _print_summary(results, with_table=True)


if __name__ == "__main__":
    router_group()
