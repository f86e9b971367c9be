"""The hub: every configured upstream MCP server behind one place that knows who may see
and call what, and that runs each call through the shield, the guard and the ledger.

The gateway builds one ``ToolHub`` at start-up (``Runtime.mcp``); both the ``/mcp``
endpoint and the Responses/Chat ``mcp`` tool loop call it."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import mcp_types as types
import orjson
from mcp.shared.exceptions import MCPError

from ownlight.audit.ledger import AuditUnavailableError, Ledger
from ownlight.audit.metrics import Metrics
from ownlight.audit.records import AdminRecord, EgressRecord, RequestRecord
from ownlight.config.settings import McpSettings
from ownlight.errors import PolicyRefused
from ownlight.guard.model import Verdict
from ownlight.guard.stage import InjectionGuard
from ownlight.mcp.access import ToolAccess
from ownlight.mcp.capped_http import OUTPUT_TOO_LARGE
from ownlight.mcp.oauth import OAuthBroker
from ownlight.mcp.pins import ToolPins, definition_hash
from ownlight.mcp.shield import ArgumentShield
from ownlight.mcp.types import (
    SEPARATOR,
    AuditFailed,
    AuthorizationRequired,
    GuardFailed,
    Tool,
    ToolCallError,
    ToolInvalidArguments,
    ToolNotFound,
    ToolOutputTooLarge,
    ToolRefused,
    ToolResult,
    ToolTimeout,
    ToolUnavailable,
    qualified,
    split_qualified,
)
from ownlight.mcp.upstream import NotConnected, Unauthorized, Upstream
from ownlight.principal import Principal
from ownlight.privacy.stage import PrivacyShield
from ownlight.privacy.vault import Vault

log = logging.getLogger(__name__)

OWN_SERVER = "ownlight"  # Ownlight's own tools: ownlight__knowledge_search
STATUS = {"ok": 200, "tool_error": 200, "denied": 403, "unauthorized": 401, "refused": 403,
          "timeout": 504, "too_large": 502, "unavailable": 502, "audit_unavailable": 503,
          "guard_unavailable": 503, "error": 500}

# A built-in tool: its definition and what answers it, (principal, arguments) → text.
BuiltinCall = Callable[[Principal, dict[str, Any]], Awaitable[str]]


@dataclass(frozen=True)
class Builtin:
    tool: Tool
    call: BuiltinCall


@dataclass(frozen=True)
class ToolState:
    """One upstream tool as an admin sees it: ``state`` is approved, changed, new or
    poisoned (its description scored as an injection)."""

    server: str
    tool: str
    sha256: str
    state: str
    definition: types.Tool


class ToolHub:
    """Aggregated, per-caller, pinned, shielded and audited tools.

    Lifecycle: ``await hub.start()`` (starts stdio servers, connects HTTP ones) and
    ``await hub.stop()``; the runtime does both.

    ``await hub.list_tools(principal)``: the tools this caller may call, qualified
    ``server__tool`` — only those the access rules allow, whose definition hash matches the
    approved pin and whose description passed the guard. Servers that are down contribute
    nothing (no error). Includes Ownlight's own ``ownlight__knowledge_search`` when the
    knowledge base is on.

    ``await hub.call_tool(principal, "server__tool", {...}, request_id="...")`` → ``ToolResult``:
    checks the caller may call it (else ``ToolNotFound``, recorded); outside the domain
    pseudonymizes every string in the arguments and refuses red-line values
    (``ToolRefused``, nothing sent); records the egress in the ledger before it leaves
    (``AuditFailed`` if it cannot); calls with the server's ``timeout`` (``ToolTimeout``)
    and ``max_output_bytes`` (``ToolOutputTooLarge``); restores placeholders in the result;
    runs the untrusted-content guard on each text block of the result (quote or drop per
    ``[guard] untrusted_action``); records the outcome and counts it in ``/metrics``. Every
    raised error is a ``ToolCallError`` subclass whose ``message`` is safe to show the
    caller. ``request_id`` ties the ledger records to the caller's request (the Responses
    id, or the MCP request's id).

    The gateway's hub is ``Runtime.mcp`` (None only for a runtime built by hand). A
    configured server's tools are ``[t for t in await hub.list_tools(p) if t.server == NAME]``;
    ``hub.upstreams`` holds the configured servers by name (``.inside_domain``, ``.client``
    None while down). ``Tool.input_schema`` is usable as an OpenAI function's parameters.
    """

    def __init__(self, settings: McpSettings, *, pins: ToolPins, ledger: Ledger,
                 metrics: Metrics, privacy: PrivacyShield | None,
                 guard: InjectionGuard | None, red_line: list[str],
                 builtins: list[Builtin] | None = None, oauth: OAuthBroker | None = None):
        self.settings = settings
        self.upstreams = {name: Upstream(name, s, settings.restart_backoff)
                          for name, s in settings.servers.items()}
        self.oauth = oauth
        if oauth is not None:  # an OAuth server lists its tools with a user's token
            for name in oauth.servers:
                self.upstreams[name].bearer = _service_token(oauth, name)
            oauth.on_authorized.append(lambda name: self.upstreams[name].wake())
        self.access = ToolAccess(settings.access)
        self.pins = pins
        self.ledger = ledger
        self.metrics = metrics
        self.shield = ArgumentShield(privacy, red_line) if privacy is not None else None
        self.guard = guard
        self.builtins = {b.tool.name: b for b in builtins or []}
        self._pinned: dict[str, dict[str, str]] = {}
        self._reported: set[tuple[str, str, str, str]] = set()  # withheld, recorded once
        # server -> (listing, pins, states) of the last _states_cached
        self._memo: dict[str, tuple[list[types.Tool], dict[str, str], list[ToolState]]] = {}

    # -- lifecycle ------------------------------------------------------------------

    async def start(self, wait: float = 10.0) -> None:
        """Start every server; wait up to ``wait`` seconds for them to come up (a server
        that does not is retried in the background and offers no tools meanwhile)."""
        for upstream in self.upstreams.values():
            upstream.start()
        await asyncio.gather(*(u.wait_up(wait) for u in self.upstreams.values()))

    async def stop(self) -> None:
        await asyncio.gather(*(u.stop() for u in self.upstreams.values()))

    # -- what exists, for admins ----------------------------------------------------

    async def states(self, server: str, refresh: bool = True) -> list[ToolState]:
        """Each tool the server offers now, with its pin state."""
        upstream = self.upstreams[server]
        tools = await upstream.list_tools(refresh=refresh)
        pinned = self.pins.for_server(server)
        self._pinned[server] = pinned
        out: list[ToolState] = []
        for tool in tools:
            sha = definition_hash(tool.name, tool.description or "", tool.input_schema)
            if self._poisoned(tool.description or ""):
                state = "poisoned"
            elif pinned.get(tool.name) == sha:
                state = "approved"
            else:
                state = "changed" if tool.name in pinned else "new"
            out.append(ToolState(server, tool.name, sha, state, tool))
        return out

    async def approve(self, server: str, by: str) -> list[ToolState]:
        """Pin every current definition of ``server`` but poisoned ones; recorded."""
        if server not in self.upstreams:
            raise KeyError(server)
        states = await self.states(server)
        hashes = {s.tool: s.sha256 for s in states if s.state != "poisoned"}
        self.pins.approve(server, hashes, by)
        self._pinned[server] = dict(hashes)
        self.ledger.put(AdminRecord(action="mcp.approve", subject=server, principal=by,
                                    details={"tools": hashes}))
        return await self.states(server, refresh=False)

    def _poisoned(self, text: str) -> bool:
        return self.guard is not None and bool(text.strip()) and \
            self.guard.scan_untrusted(text).injection

    # -- listing --------------------------------------------------------------------

    async def _server_tools(self, server: str, refresh: bool) -> list[Tool]:
        """The server's approved, unpoisoned tools (withheld ones recorded once each)."""
        upstream = self.upstreams[server]
        try:
            states = await self.states(server, refresh=refresh) if refresh or \
                server not in self._pinned else self._states_cached(server)
        except (NotConnected, TimeoutError, Exception) as exc:  # noqa: BLE001
            log.warning("MCP server %s offers no tools now: %s", server, exc)
            return []
        out: list[Tool] = []
        for s in states:
            if s.state != "approved":
                self._report_withheld(s)
                continue
            d = s.definition
            out.append(Tool(name=qualified(server, s.tool), server=server, tool=s.tool,
                            description=d.description or "", input_schema=d.input_schema,
                            inside_domain=upstream.inside_domain, title=d.title,
                            annotations=d.annotations.model_dump(exclude_none=True)
                            if d.annotations else None))
        return out

    def input_schema(self, name: str) -> dict[str, Any] | None:
        """A tool's input schema by qualified name from the last listing, or None; for the
        MCP SDK's header validation, which is not scoped to a caller (calls still are)."""
        if name in self.builtins:
            return self.builtins[name].tool.input_schema
        try:
            server, tool = split_qualified(name)
        except ToolNotFound:
            return None
        upstream = self.upstreams.get(server)
        for t in (upstream.tools if upstream is not None else None) or []:
            if t.name == tool:
                return t.input_schema
        return None

    def _states_cached(self, server: str) -> list[ToolState]:
        """The states of the last listing against the pins in memory, computed once per
        (listing, pins) pair: a call needs no hashing and no guard pass over descriptions."""
        tools = self.upstreams[server].tools
        if tools is None:
            raise NotConnected(server)
        pinned = self._pinned.get(server, {})
        memo = self._memo.get(server)
        if memo is not None and memo[0] is tools and memo[1] is pinned:
            return memo[2]
        out = []
        for tool in tools:
            sha = definition_hash(tool.name, tool.description or "", tool.input_schema)
            state = "approved" if pinned.get(tool.name) == sha and not self._poisoned(
                tool.description or "") else "withheld"
            out.append(ToolState(server, tool.name, sha, state, tool))
        self._memo[server] = (tools, pinned, out)
        return out

    def _report_withheld(self, s: ToolState) -> None:
        key = (s.server, s.tool, s.sha256, s.state)
        if key in self._reported:
            return
        self._reported.add(key)
        self.ledger.put(AdminRecord(action="mcp.withheld", subject=qualified(s.server, s.tool),
                                    principal="ownlight",
                                    details={"state": s.state, "sha256": s.sha256}))

    async def list_tools(self, principal: Principal) -> list[Tool]:
        """The tools ``principal`` may call now (see the class docstring)."""
        per_server = await asyncio.gather(*(self._server_tools(name, refresh=True)
                                            for name in self.upstreams))
        tools = [t for group in per_server for t in group]
        tools.extend(b.tool for b in self.builtins.values())
        return [t for t in tools if self.access.allows(principal, t.name)]

    async def _find(self, principal: Principal, name: str) -> Tool | None:
        if not self.access.allows(principal, name):
            return None
        if name in self.builtins:
            return self.builtins[name].tool
        server, tool = split_qualified(name)
        if server not in self.upstreams:
            return None
        for t in await self._server_tools(server, refresh=False):
            if t.tool == tool:
                return t
        return None

    # -- calling --------------------------------------------------------------------

    async def call_tool(self, principal: Principal, qualified_name: str,
                        arguments: dict[str, Any], *, request_id: str) -> ToolResult:
        """One call, guarded and recorded (see the class docstring)."""
        started = time.perf_counter()
        record = RequestRecord(
            request_id=request_id, operation="mcp.tools/call", endpoint="mcp",
            principal=principal.name, tenant=principal.tenant, groups=list(principal.groups),
            model=qualified_name, prompt=self.ledger.seal(_json(arguments)))
        outcome = "ok"
        try:
            result = await self._call(principal, qualified_name, arguments, record)
            outcome = "tool_error" if result.is_error else "ok"
            return result
        except ToolCallError as exc:
            outcome = exc.status
            record.error_code = exc.code
            record.reason = exc.message
            raise
        except Exception as exc:  # a check that broke: nothing is passed on (fail closed)
            log.exception("MCP call %s to %s failed", request_id, qualified_name)
            outcome, record.error_code = "error", "internal_error"
            raise ToolUnavailable(f"The call to {qualified_name} failed inside Ownlight; "
                                  "nothing of its result is passed on.") from exc
        finally:
            record.status = STATUS[outcome]
            record.latency_ms = round((time.perf_counter() - started) * 1000, 3)
            self.metrics.observe(record, record.latency_ms / 1000)
            self.metrics.mcp_calls.inc((record.route or "-", qualified_name, outcome))
            try:
                self.ledger.put(record)
            except AuditUnavailableError:
                log.error("MCP call %s could not be recorded", request_id)

    async def _call(self, principal: Principal, name: str, arguments: dict[str, Any],
                    record: RequestRecord) -> ToolResult:
        try:
            tool = await self._find(principal, name)
        except ToolNotFound:
            tool = None
        if tool is None:
            await self._authorization_needed(principal, name)
            raise ToolNotFound(name)
        if not isinstance(arguments, dict):
            raise ToolInvalidArguments(f"The arguments of {name} must be a JSON object.")
        record.route = tool.server
        record.inside_domain = tool.inside_domain
        started = time.perf_counter()
        if tool.name in self.builtins:
            text = await self.builtins[tool.name].call(principal, arguments)
            content = [{"type": "text", "text": text}]
            # off the event loop: the guard's second look at a result runs e5
            return await asyncio.to_thread(self._finish, content, None, False, Vault(), {},
                                           record, started)
        sent, vault, found = arguments, Vault(), dict[str, int]()
        if not tool.inside_domain:
            if self.shield is not None:
                try:
                    sent, vault, found = self.shield.protect(arguments)
                except PolicyRefused as exc:
                    raise ToolRefused(exc.message) from None
                except Exception as exc:  # the scan broke: the arguments stay home
                    log.exception("privacy check of MCP arguments failed")
                    raise ToolRefused("The privacy check of these tool arguments failed; "
                                      "they may not leave the domain. Nothing was sent."
                                      ) from exc
            record.found = found
            record.pseudonymized = vault.counts()
        token = await self._user_token(principal, tool.server, record)
        if not tool.inside_domain:
            self._record_egress(record, tool, sent)
        upstream = self.upstreams[tool.server]
        try:
            try:
                raw = await upstream.call_tool(tool.tool, sent, token)
            except Unauthorized:  # expired or revoked upstream: refresh once, else ask again
                assert self.oauth is not None and token is not None
                token = await self.oauth.refresh(tool.server, principal.name, token)
                if token is None:
                    raise AuthorizationRequired(tool.server, start_path(tool.server)) from None
                raw = await upstream.call_tool(tool.tool, sent, token)
        except Unauthorized:
            raise AuthorizationRequired(tool.server, start_path(tool.server)) from None
        except TimeoutError:
            raise ToolTimeout(f"The tool {name} did not answer within "
                              f"{upstream.settings.timeout:g} s.") from None
        except NotConnected:
            raise ToolUnavailable(f"The server of {name} is not available now.") from None
        except MCPError as exc:
            if isinstance(exc.data, dict) and exc.data.get("ownlight") == OUTPUT_TOO_LARGE:
                raise ToolOutputTooLarge(
                    f"The tool {name} answered more than the {upstream.settings.max_output_bytes}"
                    " bytes this server may return; Ownlight stopped reading it and passes "
                    "nothing on.") from None
            raise ToolUnavailable(f"The server of {name} failed the call: {exc}") from None
        except Exception as exc:  # noqa: BLE001 - a protocol error from the server
            raise ToolUnavailable(f"The server of {name} failed the call: {exc}") from None
        body = raw.model_dump(mode="json", by_alias=True, exclude_none=True)
        size = len(_json(body))
        limit = upstream.settings.max_output_bytes
        if size > limit:
            raise ToolOutputTooLarge(f"The tool {name} answered {size} bytes, more than the "
                                     f"{limit} this server may return; nothing is passed on.")
        return await asyncio.to_thread(
            self._finish, body.get("content", []), body.get("structuredContent"),
            bool(raw.is_error), vault, record.pseudonymized, record, started)

    async def _user_token(self, principal: Principal, server: str,
                          record: RequestRecord) -> str | None:
        """An OAuth server's token of this caller (never anyone else's), or None for a
        server without OAuth; ``AuthorizationRequired`` when the caller has none."""
        if self.oauth is None or server not in self.oauth:
            return None
        token = await self.oauth.token(server, principal.name)
        if token is None:
            raise AuthorizationRequired(server, start_path(server))
        record.replica = f"oauth:{principal.name}"  # whose upstream token the call carried
        return token

    async def _authorization_needed(self, principal: Principal, name: str) -> None:
        """A tool of an OAuth server is not listed until someone has authorized it: a
        caller the rules allow, without a token, is asked to authorize rather than told
        the tool does not exist."""
        if self.oauth is None or not self.access.allows(principal, name):
            return
        server = name.partition(SEPARATOR)[0]
        if server in self.oauth and await self.oauth.token(server, principal.name) is None:
            raise AuthorizationRequired(server, start_path(server))

    def _record_egress(self, record: RequestRecord, tool: Tool, sent: dict[str, Any]) -> None:
        payload = _json(sent)
        egress = EgressRecord(
            request_id=record.request_id, target=f"mcp:{tool.server}",
            principal=record.principal, tenant=record.tenant,
            pseudonymized=dict(record.pseudonymized), payload_sha256=self.ledger.mac(payload),
            payload_bytes=len(payload.encode()))
        try:
            self.ledger.put(egress)
        except AuditUnavailableError:
            raise AuditFailed("The audit ledger could not record this call, so nothing was "
                              "sent.") from None
        self.metrics.observe_egress(egress.target, egress.payload_bytes)

    def _scan(self, text: str, name: str) -> Verdict:
        """The guard's reading of one text block; a guard that breaks refuses the result."""
        assert self.guard is not None
        try:
            return self.guard.scan_untrusted(text)
        except Exception as exc:
            log.exception("the injection guard failed on a result of %s", name)
            raise GuardFailed(f"Ownlight's injection guard could not read the result of "
                              f"{name}; nothing of it is passed on.") from exc

    def _finish(self, content: list[dict[str, Any]], structured: dict[str, Any] | None,
                is_error: bool, vault: Vault, pseudonymized: dict[str, int],
                record: RequestRecord, started: float) -> ToolResult:
        content = ArgumentShield.restore(content, vault)
        structured = ArgumentShield.restore(structured, vault)
        verdict, flagged, best = "clean", 0, 0.0
        if self.guard is not None:
            guarded = []
            for block in content:
                text = block.get("text") if block.get("type") == "text" else None
                if isinstance(text, str) and text.strip():
                    v = self._scan(text, record.model or "the tool")
                    best = max(best, v.score)
                    if v.injection:
                        flagged += 1
                        block = {**block, "text": self.guard.neutralise(text)}
                guarded.append(block)
            content = guarded
            if flagged:
                verdict = "dropped" if self.guard.untrusted_action == "drop" else "quoted"
                if structured is not None:
                    structured = None  # the same data unguarded: withheld
        text = "\n".join(b["text"] for b in content
                         if b.get("type") == "text" and isinstance(b.get("text"), str))
        record.injection = {"verdict": verdict, "flagged": flagged, "score": round(best, 4)}
        record.answer = self.ledger.seal(text)
        return ToolResult(content=content, text=text, structured=structured,
                          is_error=is_error, guard_verdict=verdict,
                          pseudonymized=dict(pseudonymized), audit_id=record.request_id,
                          latency_ms=round((time.perf_counter() - started) * 1000, 3))


def start_path(server: str) -> str:
    """Where a user starts authorizing Ownlight at an OAuth server (``api.mcp_oauth_routes``)."""
    return f"/mcp/oauth/{server}/start"


def _service_token(oauth: OAuthBroker, server: str) -> Callable[[], Awaitable[str | None]]:
    async def token() -> str | None:
        return await oauth.service_token(server)
    return token


def _json(value: Any) -> str:
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()
