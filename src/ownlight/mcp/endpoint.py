"""Ownlight as an MCP server at ``/mcp`` (Streamable HTTP), on the ``mcp`` SDK's low-level
server: the current revision and the handshake-era ones (2025-11-25 and before) the SDK
negotiates. A request without a valid Ownlight key is answered 401 with a JSON-RPC error
body and ``WWW-Authenticate: Bearer`` before the SDK sees it; the caller's principal rides
in the ASGI scope to the handlers, which ask the hub for the caller's own tools."""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import AsyncIterator
from typing import Any

import mcp_types as types
import orjson
from mcp.server.lowlevel import Server
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from mcp.shared.exceptions import MCPError
from starlette.requests import Request
from starlette.types import Receive, Scope, Send

from ownlight.auth import KeyStore
from ownlight.errors import OwnlightError
from ownlight.mcp.hub import ToolHub
from ownlight.mcp.types import AuthorizationRequired, ToolCallError, ToolNotFound
from ownlight.principal import Principal

PRINCIPAL = "ownlight.principal"  # the key in the ASGI scope's state
UNAUTHORIZED = -32001  # JSON-RPC server error range: no valid key


def _principal(ctx: Any) -> Principal:
    request = getattr(ctx, "request", None)
    scope = getattr(request, "scope", None) or {}
    principal = scope.get("state", {}).get(PRINCIPAL)
    if not isinstance(principal, Principal):  # never reached past the key check
        raise MCPError(UNAUTHORIZED, "Not authenticated")
    return principal


def _absolute(ctx: Any, path: str) -> str:
    """``path`` on this Ownlight, as the caller reached it."""
    scope = getattr(getattr(ctx, "request", None), "scope", None)
    if not scope:
        return path
    return str(Request(scope).base_url).rstrip("/") + path


def build_server(hub: ToolHub) -> Server[Any]:
    """The MCP server: tools/list and tools/call, both per caller."""

    async def list_tools(ctx: Any, params: Any) -> types.ListToolsResult:
        tools = await hub.list_tools(_principal(ctx))
        return types.ListToolsResult(tools=[
            types.Tool(name=t.name, title=t.title, description=t.description,
                       input_schema=t.input_schema) for t in tools])

    async def call_tool(ctx: Any, params: types.CallToolRequestParams) -> types.CallToolResult:
        principal = _principal(ctx)
        request_id = f"mcp_{secrets.token_hex(12)}"
        try:
            result = await hub.call_tool(principal, params.name, dict(params.arguments or {}),
                                         request_id=request_id)
        except ToolNotFound as exc:
            raise MCPError(types.INVALID_PARAMS, exc.message) from None
        except ToolCallError as exc:
            meta = {"ownlight/error": exc.code, "ownlight/request_id": request_id}
            if isinstance(exc, AuthorizationRequired):
                meta["authorization_url"] = _absolute(ctx, exc.authorization_url)
            return types.CallToolResult.model_validate({
                "content": [{"type": "text", "text": exc.message}], "isError": True,
                "_meta": meta})
        return types.CallToolResult.model_validate({
            "content": result.content, "structuredContent": result.structured,
            "isError": result.is_error,
            "_meta": {"ownlight/request_id": request_id, "ownlight/guard": result.guard_verdict}})

    # The SDK checks a call's ``Mcp-Param-*`` headers against the tool's input schema; left
    # to itself it runs ``list_tools`` (an upstream round trip) before every call.
    return Server("ownlight", version=_version(), on_list_tools=list_tools,
                  on_call_tool=call_tool, get_tool_input_schema=hub.input_schema)


def _version() -> str:
    from importlib.metadata import version

    try:
        return version("ownlight")
    except Exception:  # noqa: BLE001 - an uninstalled checkout
        return "0"


class McpEndpoint:
    """The ASGI app mounted at ``/mcp``: the key check, then the SDK's session manager
    (stateless: each request carries its key, and any instance may answer it)."""

    def __init__(self, hub: ToolHub, keys: KeyStore):
        self.hub = hub
        self.keys = keys
        self.manager = StreamableHTTPSessionManager(build_server(hub), stateless=True,
                                                    json_response=True)

    @contextlib.asynccontextmanager
    async def run(self) -> AsyncIterator[None]:
        async with self.manager.run():
            yield

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        key = _bearer(scope)
        try:
            principal = self.keys.authenticate(key, scope)
        except OwnlightError as exc:
            await _unauthorized(send, exc.message)
            return
        scope.setdefault("state", {})[PRINCIPAL] = principal
        await self.manager.handle_request(scope, receive, send)


def _bearer(scope: Scope) -> str | None:
    for name, value in scope["headers"]:
        if name == b"authorization":
            scheme, _, token = value.decode("latin-1").partition(" ")
            if scheme.lower() == "bearer" and token.strip():
                return token.strip()
    return None


async def _unauthorized(send: Send, message: str) -> None:
    body = orjson.dumps({"jsonrpc": "2.0", "id": None,
                         "error": {"code": UNAUTHORIZED, "message": message}})
    await send({"type": "http.response.start", "status": 401, "headers": [
        (b"content-type", b"application/json"),
        (b"www-authenticate", b'Bearer realm="ownlight", error="invalid_token"'),
        (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
