"""Secret references: a value is ``{"$env" = NAME}``, ``{"$file" = PATH}`` or inline text,
read only when a backend needs it and never printed."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ownlight.errors import ConfigError

# -- secrets ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Secret:
    """A reference to a secret; the value is read on demand and never printed."""

    source: str  # "env", "file" or "inline"
    ref: str

    def reveal(self) -> str:
        if self.source == "env":
            value = os.environ.get(self.ref)
            if value is None:
                raise ConfigError(f"environment variable {self.ref} is not set")
            return value
        if self.source == "file":
            try:
                return Path(self.ref).expanduser().read_text().strip()
            except OSError as exc:
                raise ConfigError(f"cannot read secret file {self.ref}: {exc}") from exc
        return self.ref

    def masked(self) -> str:
        if self.source == "inline":
            return "****"
        return f"****  (${self.source}: {self.ref})"


_SECRET_SHAPE = 'expected a string, {"$env" = NAME} or {"$file" = PATH}'


def _to_secret(value: Any) -> Secret:
    if isinstance(value, Secret):
        return value
    if isinstance(value, str):
        return Secret("inline", value)
    if isinstance(value, dict) and len(value) == 1:
        ((key, ref),) = value.items()
        if key in ("$env", "$file") and isinstance(ref, str):
            return Secret(key[1:], ref)
    raise ValueError(_SECRET_SHAPE)


def _from_secret(secret: Secret) -> Any:
    """A secret back in the shape it was written in (so settings dumped and validated again,
    as ``Config.with_overrides`` does, keep their references)."""
    return secret.ref if secret.source == "inline" else {f"${secret.source}": secret.ref}


def parse_secret(value: Any, where: str) -> Secret | None:
    if value is None:
        return None
    try:
        return _to_secret(value)
    except ValueError:
        raise ConfigError(f"{where}: {_SECRET_SHAPE}") from None
