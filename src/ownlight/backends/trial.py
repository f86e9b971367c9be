"""Loading a version before it serves: what ``ownlight models promote`` tries first.

A GGUF file can pass every check on its bytes and still not load: an architecture the
installed llama.cpp does not know, a missing tensor, hyperparameters that do not match
the shapes, more memory than the machine has. So a promotion loads the version first,
as the server would load it: the alias's backend, the server's loader
(``serving.start_version``) and its memory check (a ``ModelPool`` under
``lifecycle.memory_budget_mb``), then unloads it.

The load runs in a child process (``python -m ownlight.backends.trial``). llama.cpp
aborts the process on some malformed files; in a child that is one refused promotion,
with the signal named, rather than a dead command with nothing recorded, and llama.cpp's
messages stay out of the operator's terminal (its error lines are kept for the reason).
The parent tells the child which class implements the alias's backend kind, as the
parent resolved it, so both load the same thing.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from ownlight.backends import KINDS
from ownlight.config import Config, ModelEntry, load_config
from ownlight.models.registry import REGISTRY_PREFIX, ModelVersion, RegistryError

#: Most seconds a trial load may take (a large model from a slow disk takes minutes).
TRIAL_TIMEOUT = 600.0
_VERDICT = "ownlight-trial: "  # the child's last line on stdout starts with this
_KEPT_ERRORS = 3  # error lines from the child's output quoted in a refusal


def served_entry(config: Config, name: str) -> ModelEntry:
    """The alias a registry name is served under: its ``[models.ALIAS]`` table with
    ``path = "registry:NAME"``, else the one the server makes (llama, default settings)."""
    path = REGISTRY_PREFIX + name
    found = next((e for e in config.models.values() if e.path == path), None)
    return found or ModelEntry(alias=name, backend="llama", path=path)


def trial_load(config: Config, version: ModelVersion,
               timeout: float = TRIAL_TIMEOUT) -> dict[str, Any]:
    """Load ``version`` in a child process as the server would, then unload it.

    Returns what the load took (for the audit record); raises :class:`RegistryError`
    with the reason when it does not load, does not fit in memory, or crashes.
    """
    entry = served_entry(config, version.name)
    implementation = KINDS.get(entry.backend)
    if implementation is None:
        raise RegistryError(f"{version.ref} cannot be loaded: alias {entry.alias!r} has the "
                            f"unknown backend kind {entry.backend!r}")
    order = {"config": str(config.source) if config.source else None,
             "kind": entry.backend, "implementation": implementation,
             "version": asdict(version) | {"path": str(version.path)}}
    # The child imports what this process can (a backend class may live outside the
    # package, as the tests' does).
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    try:
        done = subprocess.run([sys.executable, "-m", "ownlight.backends.trial"],
                              input=json.dumps(order), capture_output=True, text=True,
                              timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        raise RegistryError(f"{version.ref} did not load within {timeout:.0f} s") from None
    verdict = _verdict(done.stdout)
    if verdict is None:
        raise RegistryError(f"{version.ref} does not load: loading it {_ended(done.returncode)}"
                            f"{_errors(done.stderr)}")
    if verdict["error"]:
        raise RegistryError(f"{version.ref} does not load: {verdict['error']}"
                            f"{_errors(done.stderr)}")
    return {"backend": entry.backend, "seconds": verdict["seconds"],
            "memory_estimate": verdict["need"]}


def _verdict(stdout: str) -> dict[str, Any] | None:
    lines = [line for line in stdout.splitlines() if line.startswith(_VERDICT)]
    return json.loads(lines[-1].removeprefix(_VERDICT)) if lines else None


def _ended(returncode: int) -> str:
    if returncode < 0:
        try:
            return f"crashed the loading process ({signal.Signals(-returncode).name})"
        except ValueError:
            return f"crashed the loading process (signal {-returncode})"
    return f"ended the loading process (exit status {returncode})"


def _errors(stderr: str) -> str:
    """The last few distinct error lines the loader printed, as a clause."""
    kept: list[str] = []
    for line in stderr.splitlines():
        line = line.strip()
        if "error" in line.lower() and line not in kept:
            kept.append(line)
    return f" (the loader said: {' | '.join(kept[-_KEPT_ERRORS:])})" if kept else ""


# -- the child ----------------------------------------------------------------------------


async def _load(entry: ModelEntry, config: Config, version: ModelVersion) -> dict[str, Any]:
    from ownlight.backends.managed import memory_needed, memory_pool, start_version

    pool = memory_pool(config)
    need = memory_needed(version, entry.n_ctx)
    began = time.perf_counter()
    try:
        lease = await pool.lease(version.ref, need,
                                 lambda: start_version(entry, config, version))
        lease.release()
        return {"error": None, "seconds": round(time.perf_counter() - began, 3),
                "need": need}
    finally:
        await pool.close()


def _child(order: dict[str, Any]) -> dict[str, Any]:
    try:
        KINDS[order["kind"]] = order["implementation"]
        config = load_config(order["config"])
        fields = order["version"]
        version = ModelVersion(**(fields | {"path": Path(fields["path"])}))
        return asyncio.run(_load(served_entry(config, version.name), config, version))
    except Exception as exc:
        return {"error": getattr(exc, "message", None) or str(exc) or type(exc).__name__}


if __name__ == "__main__":
    import logging

    # Whatever the loader logs goes to stderr, where the parent looks for error lines.
    logging.basicConfig(level=logging.DEBUG, stream=sys.stderr, format="%(message)s")
    verdict = _child(json.loads(sys.stdin.read()))
    print(_VERDICT + json.dumps(verdict), flush=True)
