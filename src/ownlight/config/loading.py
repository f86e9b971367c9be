"""Loading Ownlight's settings: one TOML file, overridable by ``OWNLIGHT_*`` environment variables.

Every setting is declared once below, as a typed field with its default and help text (the
way datasette declares ``Setting(name, default, help)``), in one pydantic model per table.
The same declarations validate the file, fill in defaults, print ``ownlight config show``
and generate the README's settings table (:func:`settings_table`). A key that is not
declared stops start-up with a :class:`ConfigError` naming it and the nearest valid key:
``unknown setting server.prot (did you mean server.port?)``.

Model aliases live in ``[models.NAME]`` tables. Secrets are never written inline: a value may
be ``{"$env" = "NAME"}`` or ``{"$file" = "/path"}`` and is read only when a backend needs it.

Precedence, lowest first: defaults, the file, the environment, command-line flags.
Environment names: ``OWNLIGHT_SERVER_PORT`` for ``server.port`` (any setting outside a
list or a named table), and ``OWNLIGHT_MODELS__LOCAL__N_CTX`` for a field of a model alias.
"""

from __future__ import annotations

import copy
import difflib
import json
import os
import re
import tomllib
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from ownlight.config.names import ENV_PREFIX, ENV_SETTINGS, SETTINGS, _child, _is_table, _strip
from ownlight.config.secrets import Secret
from ownlight.config.settings import (
    BACKEND_KINDS,
    DEFAULT_MODELS,
    SHARED_MODEL_SETTINGS,
    Document,
    ModelSettings,
    Settings,
)
from ownlight.errors import ConfigError

CONFIG_FILENAME = "ownlight.toml"
# OWNLIGHT_* variables that are not settings: where the file is, and the CLI's client key.
OTHER_ENV = (f"{ENV_PREFIX}CONFIG", f"{ENV_PREFIX}API_KEY")
MODEL_ENV_PREFIX = f"{ENV_PREFIX}MODELS__"


# -- the loaded configuration -----------------------------------------------------------


@dataclass(frozen=True)
class ModelEntry:
    """One alias a client may ask for, and the backend that serves it."""

    alias: str
    backend: str
    model: str | None = None
    path: str | None = None
    base_url: str | None = None
    api_key: Secret | None = None
    chat_template: str | None = None
    n_ctx: int = ModelSettings.model_fields["n_ctx"].default
    timeout: float | None = None
    inside_domain: bool = True
    sha256: str | None = None
    table: ModelSettings | None = None  # the [models.ALIAS] table as loaded, if any

    @cached_property
    def settings(self) -> ModelSettings:
        """The alias's settings with their declared defaults (prices, retries, stop, ...)."""
        return self.table if self.table is not None else ModelSettings(backend=self.backend)


@dataclass(frozen=True)
class Config:
    """The effective configuration. Built once, then passed to whoever needs it."""

    settings: Settings
    models: Mapping[str, ModelEntry]
    source: Path | None = None

    def get(self, name: str) -> Any:
        """One setting by dotted name, e.g. ``server.port``; tables come back as dicts."""
        node: Any = self.settings
        for part in name.split("."):
            if isinstance(node, BaseModel) and part in type(node).model_fields:
                node = getattr(node, part)
            elif isinstance(node, dict) and part in node:
                node = node[part]
            else:
                raise KeyError(_unknown(name, _names_near(name)))
        return _plain(node)

    @property
    def data_dir(self) -> Path:
        return Path(self.settings.data_dir).expanduser()

    @property
    def host(self) -> str:
        return self.settings.server.host

    @property
    def port(self) -> int:
        return self.settings.server.port

    def section(self, name: str) -> dict[str, Any]:
        """A table (e.g. ``[routing]``) as a plain dict, validated, defaults filled in.

        Unset optional keys are left out, so a reader's ``table.get(key, default)`` and
        ``key in table`` keep working.
        """
        value = self.get(name)
        if not isinstance(value, dict):
            raise KeyError(f"{name} is a setting, not a table")
        return value

    def with_overrides(self, **values: Any) -> Config:
        """A copy with some settings replaced (``server__port=9000``), validated again."""
        data = self.settings.model_dump()
        for key, value in values.items():
            name = key.replace("__", ".")
            if name not in ENV_SETTINGS.values():
                raise ConfigError(_unknown(name, _names_near(name)))
            _put(data, name.split("."), value)
        settings = _validate(Settings, data, lambda loc: "")
        return Config(settings, self.models, self.source)

    def only_models(self, aliases: list[str]) -> Config:
        models = {alias: self.models[alias] for alias in aliases}
        return Config(self.settings, models, self.source)

    def with_models(self, extra: Mapping[str, ModelEntry]) -> Config:
        return Config(self.settings, {**self.models, **extra}, self.source)


def _plain(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(exclude_none=True)
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def default_data_dir(env: Mapping[str, str]) -> Path:
    return Path(env.get(f"{ENV_PREFIX}DATA_DIR", "~/.ownlight")).expanduser()


def config_path(explicit: str | os.PathLike[str] | None, env: Mapping[str, str]) -> Path:
    if explicit:
        return Path(explicit).expanduser()
    if env.get(f"{ENV_PREFIX}CONFIG"):
        return Path(env[f"{ENV_PREFIX}CONFIG"]).expanduser()
    return default_data_dir(env) / CONFIG_FILENAME


def load_config(
    path: str | os.PathLike[str] | None = None, env: Mapping[str, str] | None = None
) -> Config:
    """Read defaults, then the file (if any), then ``OWNLIGHT_*`` variables; validate all."""
    env = os.environ if env is None else env
    file_path = config_path(path, env)
    document: dict[str, Any] = {}
    if file_path.exists():
        try:
            document = tomllib.loads(file_path.read_text())
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{file_path}: {exc}") from exc
    elif path is not None or env.get(f"{ENV_PREFIX}CONFIG"):
        raise ConfigError(f"config file {file_path} does not exist")

    document["models"] = _merged_models(document.get("models"))
    from_env = _apply_env(document, env)

    def origin(loc: tuple[str | int, ...]) -> str:
        for length in range(len(loc), 0, -1):
            if loc[:length] in from_env:
                return f"${from_env[loc[:length]]}"
        return str(file_path) if file_path.exists() else ""

    parsed = _validate(Document, document, origin)
    settings = Settings.model_construct(
        parsed.model_fields_set - {"models"},
        **{name: getattr(parsed, name) for name in Settings.model_fields},
    )
    models = {alias: _entry(alias, table) for alias, table in parsed.models.items()}
    return Config(settings, models, file_path if file_path.exists() else None)


def _merged_models(tables: Any) -> dict[str, Any]:
    models: dict[str, Any] = copy.deepcopy(DEFAULT_MODELS)
    if tables is None:
        return models
    if not isinstance(tables, dict):
        raise ConfigError("models must be a table of [models.NAME] tables")
    for alias, table in tables.items():
        if not isinstance(table, dict):
            raise ConfigError(f"[models.{alias}] must be a table")
        built_in = models.get(alias, {})
        if table.get("backend", built_in.get("backend")) != built_in.get("backend"):
            # A built-in alias given another kind keeps only what that kind reads, and never
            # the built-in's inside_domain: pointed at an upstream, it is outside the domain
            # unless the table says otherwise (fail closed).
            kind = BACKEND_KINDS.get(table["backend"])
            built_in = {k: v for k, v in built_in.items() if k != "inside_domain" and (
                kind is None or k in SHARED_MODEL_SETTINGS or k in kind.options)}
        models[alias] = {**built_in, **table}
    return models


def _apply_env(document: dict[str, Any], env: Mapping[str, str]) -> dict[tuple[Any, ...], str]:
    """Put ``OWNLIGHT_*`` values into the document; returns which key came from which name."""
    applied: dict[tuple[Any, ...], str] = {}
    for name, raw in env.items():
        if not name.startswith(ENV_PREFIX) or name in OTHER_ENV:
            continue
        if name in ENV_SETTINGS:
            keys = ENV_SETTINGS[name].split(".")
        elif name.startswith(MODEL_ENV_PREFIX) and len(name.split("__")) == 3:
            _, alias, key = name.split("__")
            keys = ["models", _model_alias(alias, document["models"]), key.lower()]
        else:
            known = [*ENV_SETTINGS, *OTHER_ENV, f"{MODEL_ENV_PREFIX}ALIAS__FIELD"]
            raise ConfigError(_unknown(name, difflib.get_close_matches(name, known, n=1),
                                       what="environment variable"))
        _put(document, keys, parse_env_value(raw), where=f"${name}")
        applied[tuple(keys)] = name
    return applied


def _model_alias(name: str, models: Mapping[str, Any]) -> str:
    """``LOCAL_EMBED`` names the alias ``local-embed`` (or ``local_embed``, if that exists)."""
    alias = name.lower().replace("_", "-")
    return next((a for a in models if a.lower() in (alias, name.lower())), alias)


def _put(data: dict[str, Any], keys: list[str], value: Any, where: str = "") -> None:
    node = data
    for depth, key in enumerate(keys[:-1]):
        child = node.setdefault(key, {})
        if not isinstance(child, dict):
            table = ".".join(keys[: depth + 1])
            raise ConfigError(f"{table} must be a table{f' (for {where})' if where else ''}")
        node = child
    node[keys[-1]] = value


def parse_env_value(raw: str) -> Any:
    """Read an environment value as a TOML literal when it is one (8090, true), else text."""
    try:
        return tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        return raw


def build_model_entry(alias: str, table: Mapping[str, Any]) -> ModelEntry:
    """Validate one ``[models.ALIAS]`` table and make its entry."""
    parsed = _validate(ModelSettings, dict(table), lambda loc: "", prefix=("models", alias))
    return _entry(alias, parsed)


def _entry(alias: str, table: ModelSettings) -> ModelEntry:
    kind = BACKEND_KINDS.get(table.backend)
    return ModelEntry(
        alias=alias,
        backend=table.backend,
        model=table.model,
        path=table.path,
        base_url=table.base_url,
        api_key=table.api_key,
        chat_template=table.chat_template,
        n_ctx=table.n_ctx,
        timeout=table.timeout,
        inside_domain=(table.inside_domain if table.inside_domain is not None
                       else not (kind is not None and kind.remote)),
        sha256=table.sha256,
        table=table,
    )


def upstream_entry(alias: str, url: str, key: str | None = None) -> ModelEntry:
    """The alias that ``ownlight serve --upstream NAME=URL`` adds."""
    return ModelEntry(
        alias=alias,
        backend="openai",
        base_url=url,
        api_key=Secret("inline", key) if key else None,
        inside_domain=False,
    )


# -- errors that name the key -----------------------------------------------------------

_T = typing.TypeVar("_T", bound=BaseModel)


def _validate(model: type[_T], data: Any, origin: Callable[[tuple[Any, ...]], str],
              prefix: tuple[str, ...] = ()) -> _T:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        problems = [_problem(model, prefix, error, origin) for error in exc.errors()]
        raise ConfigError("; ".join(dict.fromkeys(problems))) from None


def _problem(model: type[BaseModel], prefix: tuple[str, ...], error: Any,
             origin: Callable[[tuple[Any, ...]], str]) -> str:
    loc = tuple(error["loc"])
    is_key = bool(loc) and loc[-1] == "[key]"
    if is_key:
        loc = loc[:-1]
    name = _dotted((*prefix, *loc))
    where = origin(loc)
    suffix = f" ({where})" if where.startswith("$") else f" in {where}" if where else ""
    if error["type"] == "extra_forbidden":
        parent = _annotation_at(model, loc[:-1])
        known = list(_strip(parent).model_fields) if _is_table(_strip(parent)) else []
        near = [_dotted((*prefix, *loc[:-1], n))
                for n in difflib.get_close_matches(str(loc[-1]), known, n=1)]
        return _unknown(name, near, known=known) + suffix
    if error["type"] == "missing":
        info = _field_at(model, loc)
        what = f" ({info.description})" if info and info.description else ""
        return f"missing setting {name}{what}{suffix}"
    message = str(error["msg"]).removeprefix("Value error, ")
    got = repr(error["input"])
    got = got if len(got) <= 60 else got[:57] + "..."
    hint = ""
    if error["type"] == "literal_error" and isinstance(error["input"], str):
        choices = re.findall(r"'([^']*)'", str(error.get("ctx", {}).get("expected", "")))
        hint = "".join(f" (did you mean {c!r}?)"
                       for c in difflib.get_close_matches(error["input"], choices, n=1))
    what = "got key" if is_key else "got"
    return f"{name}: {message[0].lower()}{message[1:]}, {what} {got}{hint}{suffix}"


def _unknown(name: str, near: list[str], *, what: str = "setting",
             known: list[str] | None = None) -> str:
    if near:
        return f"unknown {what} {name} (did you mean {near[0]}?)"
    if known:
        return f"unknown {what} {name} (known: {', '.join(known)})"
    return f"unknown {what} {name}"


def _names_near(name: str) -> list[str]:
    return difflib.get_close_matches(name, [s.name for s in SETTINGS], n=1)


def _annotation_at(model: type[BaseModel], loc: tuple[Any, ...]) -> Any:
    annotation: Any = model
    for part in loc:
        annotation = _child(annotation, part)
        if annotation is None:
            return None
    return annotation


def _field_at(model: type[BaseModel], loc: tuple[Any, ...]) -> Any:
    parent: Any = _strip(_annotation_at(model, loc[:-1])) if loc else None
    return parent.model_fields.get(str(loc[-1])) if _is_table(parent) else None


_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")


def _dotted(loc: tuple[Any, ...]) -> str:
    """``("routing", "rules", 0, "when")`` -> ``routing.rules[0].when``."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            key = part if _BARE_KEY.match(part) else json.dumps(part)
            out += f".{key}" if out else key
    return out
