"""The declarations walked as rows: dotted names, ``OWNLIGHT_*`` variable names, and the
declared type at a place (for errors that name the key)."""

from __future__ import annotations

import types
import typing
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import BaseModel

from ownlight.config.settings import Document, Settings

ENV_PREFIX = "OWNLIGHT_"


# -- the declarations as rows: docs, env names, hints -----------------------------------


@dataclass(frozen=True)
class Setting:
    name: str
    default: Any
    help: str
    required: bool = False


def _strip(annotation: Any) -> Any:
    """``X | None`` and ``Annotated[X, ...]`` -> X."""
    while True:
        origin = typing.get_origin(annotation)
        if origin is Annotated:
            annotation = typing.get_args(annotation)[0]
        elif origin in (typing.Union, types.UnionType):
            args = [a for a in typing.get_args(annotation) if a is not type(None)]
            annotation = args[0]
        else:
            return annotation


def _is_table(annotation: Any) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, BaseModel)


def _child(annotation: Any, part: str | int) -> Any:
    """The declared type one step below ``annotation`` (a field, a list item, a dict value)."""
    annotation = _strip(annotation)
    if _is_table(annotation):
        info = annotation.model_fields.get(str(part))
        return info.annotation if info else None
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is list and isinstance(part, int):
        return args[0]
    if origin is dict:
        return args[1]
    return None


def _container(annotation: Any) -> tuple[type[BaseModel], str] | None:
    """For a list or dict of tables: the table and how its rows are named."""
    annotation = _strip(annotation)
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is list and _is_table(_strip(args[0])):
        return _strip(args[0]), "[]"
    if origin is dict and _is_table(_strip(args[1])):
        return _strip(args[1]), ".NAME"
    return None


def iter_settings(model: type[BaseModel] = Document, prefix: str = "") -> Iterator[Setting]:
    """Every declared setting, in declaration order, as dotted names.

    Rows of a ``[[list]]`` are named ``routing.rules[].action``, rows of a named table
    ``models.NAME.backend``.
    """
    for name, info in model.model_fields.items():
        path = f"{prefix}{name}"
        annotation = _strip(info.annotation)
        if _is_table(annotation):
            if info.description:
                # an optional table (default None) is shown unset, not as an empty table
                yield Setting(path, None if info.default is None else {}, info.description)
            yield from iter_settings(annotation, f"{path}.")
            continue
        default = info.get_default(call_default_factory=True)
        yield Setting(path, default, info.description or "", info.is_required())
        inner = _container(annotation)
        if inner:
            yield from iter_settings(inner[0], f"{path}{inner[1]}.")


SETTINGS: tuple[Setting, ...] = tuple(iter_settings())


def _env_settings(model: type[BaseModel] = Settings, prefix: str = "") -> dict[str, str]:
    """``OWNLIGHT_SERVER_PORT`` -> ``server.port`` for every setting at a fixed place."""
    names: dict[str, str] = {}
    for name, info in model.model_fields.items():
        path = f"{prefix}{name}"
        annotation = _strip(info.annotation)
        if _is_table(annotation) and not prefix:
            names.update(_env_settings(annotation, f"{path}."))
        else:
            names[ENV_PREFIX + path.upper().replace(".", "_")] = path
    return names


ENV_SETTINGS: dict[str, str] = _env_settings()


