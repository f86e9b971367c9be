"""``ownlight eval``: run a suite against a model version, compare it with the serving one.

``eval run SUITE --model NAME@VERSION`` loads that version (its sha256 checked), asks
every item, stores the scores, and does the same for the version NAME serves now (or
``--against``), unless a score of that version on the same suite is already stored: a
version's file never changes (its sha256 is checked), and items are asked greedily, so
its stored score still holds. Then it prints the pairwise comparison and what
``models promote --gate`` would decide.
"""

from __future__ import annotations

import asyncio
import json

import click
from rich.console import Console
from rich.table import Table

from ownlight.backends.managed import load_version
from ownlight.cli_support import cli_config, err
from ownlight.config import Config, ModelEntry
from ownlight.errors import ConfigError, OwnlightError
from ownlight.evals.runner import EvalRun, ItemResult, run_suite
from ownlight.evals.scores import compare, gate, latest_run, runs, store_run
from ownlight.evals.suite import Suite, load_suite
from ownlight.models.models_cli import cli_registry
from ownlight.models.registry import (
    DEFAULT_N_CTX,
    ModelVersion,
    Registry,
    RegistryError,
    alias_for,
    parse_ref,
)


@click.group("eval")
def eval_group() -> None:
    """Evaluate model versions on a suite of prompts with checks; scores are stored."""


@eval_group.command("run")
@click.argument("suite")
@click.option("--model", "ref", required=True, help="The version to evaluate: NAME@VERSION.")
@click.option("--against", help="Compare with this version (default: the one NAME serves).")
@click.option("--rerun", is_flag=True, help="Evaluate the compared version again too.")
@click.option("--json", "as_json", is_flag=True)
def eval_run(suite: str, ref: str, against: str | None, rerun: bool, as_json: bool) -> None:
    """Run SUITE (``default``, or a .jsonl path) on NAME@VERSION and store the scores."""
    config = cli_config()
    registry = cli_registry(config)
    try:
        loaded = load_suite(suite)
        candidate = _version(registry, ref)
        baseline = _baseline(registry, candidate, against)
        run = asyncio.run(_evaluate(config, candidate, loaded, as_json))
        store_run(registry.store, candidate.name, candidate.version, run)
        base_run = None
        if baseline is not None:
            base_run = None if rerun else latest_run(registry.store, baseline.name,
                                                     baseline.version, loaded.sha256)
            if base_run is None:
                base_run = asyncio.run(_evaluate(config, baseline, loaded, as_json))
                store_run(registry.store, baseline.name, baseline.version, base_run)
    except (ConfigError, OwnlightError) as exc:
        raise click.ClickException(getattr(exc, "message", None) or str(exc)) from exc
    margin = config.settings.lifecycle.eval_margin
    view = {"run": run.as_dict()}
    if base_run is not None:
        comparison = compare(run, base_run)
        view["comparison"] = comparison.as_dict()
        view["gate"] = {"margin": margin, "refusal": gate(comparison, margin)}
    if as_json:
        click.echo(json.dumps(view, ensure_ascii=False))
        return
    _print(run, base_run)
    if base_run is not None:
        c = compare(run, base_run)
        err.print(f"pairwise vs {base_run.model}: {len(c.wins)} won, {len(c.losses)} lost, "
                  f"{c.ties} tied")
        refusal = gate(c, margin)
        err.print("gate: " + (f"[red]would refuse[/]: {refusal}" if refusal else
                              f"[green]would pass[/] (margin {margin:.1%})"))
    click.echo(f"{run.model} {run.score:.4f}")


def _version(registry: Registry, ref: str) -> ModelVersion:
    name, number = parse_ref(ref)
    if number is None:
        raise RegistryError("--model needs a version: NAME@VERSION")
    return registry.get(name, number)


def _baseline(registry: Registry, candidate: ModelVersion,
              against: str | None) -> ModelVersion | None:
    if against:
        return _version(registry, against)
    current = registry.current(candidate.name)
    if current is None or current == candidate.version:
        return None
    return registry.get(candidate.name, current)


def _entry(config: Config, name: str) -> ModelEntry:
    """The settings (template, context) the model is served with, or the defaults."""
    alias = alias_for(config, name)
    if alias is not None:
        return config.models[alias]
    return ModelEntry(alias=name, backend="llama", chat_template="plain", n_ctx=DEFAULT_N_CTX)


async def _evaluate(config: Config, version: ModelVersion, suite: Suite,
                    quiet: bool) -> EvalRun:
    backend = await load_version(_entry(config, version.name), config, version)

    def show(result: ItemResult) -> None:
        if not quiet:
            mark = "[green]pass[/]" if result.passed else f"[red]fail[/] {result.reason}"
            err.print(f"  {version.ref} {result.id}: {mark}")

    try:
        return await run_suite(backend, suite, version.ref, show)
    finally:
        await backend.close()


def _print(run: EvalRun, base: EvalRun | None) -> None:
    columns = ["category", run.model] + ([base.model] if base else [])
    table = Table(*columns)
    mine, theirs = run.by("category"), base.by("category") if base else {}
    for category, (passed, total) in mine.items():
        row = [category, f"{passed}/{total}"]
        if base:
            p, t = theirs.get(category, (0, 0))
            row.append(f"{p}/{t}")
        table.add_row(*row)
    total_row = ["all", f"{run.score:.1%}"] + ([f"{base.score:.1%}"] if base else [])
    table.add_row(*total_row)
    Console(stderr=True).print(table)


@eval_group.command("list")
@click.option("--model", "name", help="Only this model name.")
@click.option("--json", "as_json", is_flag=True)
def eval_list(name: str | None, as_json: bool) -> None:
    """Stored eval scores, oldest first."""
    rows = runs(cli_registry(cli_config()).store, name)
    if as_json:
        click.echo(json.dumps(rows))
        return
    table = Table("id", "suite", "model", "score", "passed", "at")
    for r in rows:
        table.add_row(str(r["id"]), str(r["suite"]), f"{r['name']}@{r['version']}",
                      f"{float(str(r['score'])):.1%}", f"{r['passed']}/{r['total']}",
                      str(r["at"]))
    Console().print(table)
