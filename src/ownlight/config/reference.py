"""What Ownlight prints about its settings: the docs' settings table and the effective
configuration (``ownlight config show``), secrets masked."""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel

from ownlight.config.loading import Config, ModelEntry
from ownlight.config.names import SETTINGS, Setting
from ownlight.config.secrets import Secret, parse_secret
from ownlight.config.settings import EXTRA_MODEL_FIELDS, MODEL_FIELDS


def _show_default(row: Setting) -> str:
    if row.required:
        return "required"
    value = row.default
    if value is None:
        return "unset"
    if isinstance(value, dict) and value and all(isinstance(v, dict) for v in value.values()):
        return ", ".join(f"`{k}`" for k in value)  # built-in named tables: just their names
    return f"`{json.dumps(value)}`"


def settings_table() -> str:
    """The README's settings table: every declared setting, its default and help text."""
    lines = ["| setting | default | help |", "|---|---|---|"]
    for row in SETTINGS:
        cells = (f"`{row.name}`", _show_default(row), row.help)
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return "\n".join(lines) + "\n"


# -- what `ownlight config show` prints -------------------------------------------------


def effective_view(config: Config) -> dict[str, Any]:
    """The config as nested tables, secrets masked: what ``ownlight config show`` prints."""
    out: dict[str, Any] = config.settings.model_dump(exclude_none=True)
    models: dict[str, Any] = {}
    for alias, entry in config.models.items():
        row: dict[str, Any] = {}
        for key in MODEL_FIELDS:
            value = getattr(entry, key)
            if value is None:
                continue
            row[key] = value.masked() if isinstance(value, Secret) else value
        row.update(_mask_extra(explicit_settings(entry)))
        models[alias] = row
    out = _mask_extra(out)
    if config.settings.store.url is not None:  # may hold a password
        out["store"]["url"] = config.settings.store.url.masked()
    if config.settings.redis.url is not None:  # may hold a password
        out["redis"]["url"] = config.settings.redis.url.masked()
    for name, server in config.settings.mcp.servers.items():  # credentials
        row = out["mcp"]["servers"][name]
        row["headers"] = {k: v.masked() for k, v in server.headers.items()}
        row["env"] = {k: v.masked() for k, v in server.env.items()}
    out["models"] = models
    return out


def _mask_extra(value: Any) -> Any:
    if isinstance(value, Secret):
        return value.masked()
    if isinstance(value, BaseModel):  # a table in a list ([[models.NAME.replicas]])
        return _mask_extra({k: getattr(value, k) for k in type(value).model_fields
                            if getattr(value, k) is not None})
    if isinstance(value, dict):
        if len(value) == 1 and next(iter(value)) in ("$env", "$file"):
            secret = parse_secret(value, "")
            return secret.masked() if secret else None
        return {
            k: ("****" if _looks_secret(k) and isinstance(v, str) else _mask_extra(v))
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [_mask_extra(v) for v in value]
    return value


def _looks_secret(key: str) -> bool:
    return any(word in key.lower() for word in ("key", "secret", "token", "password"))


def explicit_settings(entry: ModelEntry) -> dict[str, Any]:
    """The alias's settings beyond the entry's own fields that its table set explicitly."""
    table = entry.table
    if table is None:
        return {}
    return {k: getattr(table, k) for k in EXTRA_MODEL_FIELDS if k in table.model_fields_set}
