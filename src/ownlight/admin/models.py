"""Promote and roll back model versions, for the command line and the console alike.

Every reason a version may not serve is checked before the switch, cheapest first: its
licence against this deployment's use, (with the gate) its stored eval score against the
serving version's, its file, and a trial load in a child process. The evidence (the gate's
comparison, the load's figures) goes into the act's record either way; the caller records
it through ``record`` (the CLI into the state file's ledger, the console into the running
gateway's).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

from ownlight.backends.trial import trial_load
from ownlight.config import Config
from ownlight.evals.scores import gate_refusal
from ownlight.evals.suite import load_suite
from ownlight.models import licenses
from ownlight.models.registry import ModelVersion, Registry, RegistryError
from ownlight.protocol.model import Json

Record = Callable[[str, str, dict[str, Any]], None]  # action, subject, details
Progress = Callable[[int, int], None]


def check_promotion(config: Config, registry: Registry, version: ModelVersion,
                    current: int | None, details: dict[str, Any], gate: bool, suite: str,
                    progress: Progress | None = None,
                    loading: Callable[[], contextlib.AbstractContextManager[Any]] | None = None
                    ) -> None:
    """Raise ``RegistryError`` with the first reason ``version`` may not serve; the
    evidence goes into ``details``."""
    refusal = licenses.refusal(version.license, config.settings.lifecycle.deployment_use)
    if refusal:
        raise RegistryError(f"{version.ref} cannot be promoted: {refusal}")
    if gate:
        why, evidence = gate_refusal(registry.store, load_suite(suite), version, current,
                                     config.settings.lifecycle.eval_margin)
        details["gate"] = evidence
        if why:
            raise RegistryError(f"{version.ref} not promoted: {why}")
    registry.verify(version, progress)
    with (loading or contextlib.nullcontext)():
        details["load"] = trial_load(config, version)


def promote(config: Config, registry: Registry, name: str, number: int, actor: str,
            record: Record, *, gate: bool = False, suite: str = "default",
            progress: Progress | None = None,
            loading: Callable[[], contextlib.AbstractContextManager[Any]] | None = None
            ) -> tuple[ModelVersion, int | None, Json]:
    """Make ``name@number`` serve: (the version, the one it replaced, the evidence). A
    refusal is recorded as ``model.promote_refused`` and raised; the old version serves."""
    version = registry.get(name, number)
    current = registry.current(name)
    if current == number:
        raise RegistryError(f"{version.ref} already serves")
    details: dict[str, Any] = {"from": f"{name}@{current}" if current else None,
                               "sha256": version.sha256, "license": version.license}
    try:
        check_promotion(config, registry, version, current, details, gate, suite, progress,
                        loading)
        registry.switch(name, "promote", number, actor, details, expect=current)
    except RegistryError as exc:
        record("model.promote_refused", version.ref, details | {"reason": str(exc)})
        raise
    record("model.promote", version.ref, details)
    return version, current, details


def rollback(registry: Registry, name: str, actor: str,
             record: Record) -> tuple[ModelVersion, int]:
    """Switch ``name`` back to the version before the current one: (it, the one left)."""
    stack = registry.stack(name)
    if len(stack) < 2:
        raise RegistryError(f"{name} has no earlier version to roll back to")
    target = registry.get(name, stack[-2])
    registry.verify(target)
    details = {"from": f"{name}@{stack[-1]}", "sha256": target.sha256}
    registry.switch(name, "rollback", target.version, actor, details, expect=stack[-1])
    record("model.rollback", target.ref, details)
    return target, stack[-1]
