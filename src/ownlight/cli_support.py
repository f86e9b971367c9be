"""What every command group of the CLI shares: the config it was pointed at, a progress bar."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import click
from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn

from ownlight.config import Config, load_config
from ownlight.errors import ConfigError
from ownlight.models.files import Progress as ProgressFn

err = Console(stderr=True)


def cli_config() -> Config:
    """The config ``ownlight --config`` names (else $OWNLIGHT_CONFIG, else the default)."""
    root = click.get_current_context().find_root()
    path = root.obj.get("config_path") if isinstance(root.obj, dict) else None
    try:
        return load_config(path)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from exc


@contextmanager
def progress_bar(label: str) -> Iterator[ProgressFn]:
    """A byte progress bar for long file steps (assembling, hashing, copying a model)."""
    with Progress(
        TextColumn("{task.description}"), BarColumn(), DownloadColumn(), console=err,
        transient=True,
    ) as bar:
        task = bar.add_task(label, total=None)

        def update(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        yield update
