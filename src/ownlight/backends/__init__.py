"""Backend kinds, by name. Adding a backend adds a module and a ``BACKEND_KINDS`` entry,
never a branch."""

from __future__ import annotations

import importlib

from ownlight.backends.base import Backend, BackendResult, Operation
from ownlight.config.settings import BACKEND_KINDS

# Where each kind's class lives (declared with the kind in ``ownlight.config.settings``).
KINDS: dict[str, str] = {name: kind.target for name, kind in BACKEND_KINDS.items()}


def backend_class(kind: str) -> type[Backend]:
    """Import a backend's module only when a configured alias uses it."""
    try:
        module_name, class_name = KINDS[kind].split(":")
    except KeyError:
        raise ValueError(f"unknown backend kind {kind!r} (known: {', '.join(KINDS)})") from None
    cls: type[Backend] = getattr(importlib.import_module(module_name), class_name)
    return cls


__all__ = ["Backend", "BackendResult", "Operation", "backend_class", "KINDS"]
