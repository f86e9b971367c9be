"""Admin routes for the MCP gateway: what each server offers and its pin state, and
approving a server's current tool definitions (``ownlight mcp status`` / ``approve`` do
the same from the command line)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ownlight.errors import NotFound, OwnlightError, UpstreamUnavailable
from ownlight.mcp.hub import ToolState
from ownlight.runtime import Runtime

from .admin_routes import admin
from .bodies import error_response, json_response


def _state(s: ToolState) -> dict[str, str]:
    return {"tool": s.tool, "state": s.state, "sha256": s.sha256}


async def mcp_status(request: Request) -> Response:
    """``GET /v1/admin/mcp``: each server, whether it is connected, its tools' states
    (approved, changed, new, poisoned)."""
    runtime: Runtime = request.app.state.runtime
    try:
        admin(request)
    except OwnlightError as exc:
        return error_response(exc)
    hub = runtime.mcp
    servers = []
    for name, upstream in (hub.upstreams.items() if hub else []):
        row: dict[str, object] = {"server": name, "inside_domain": upstream.inside_domain,
                                  "connected": upstream.client is not None,
                                  "restarts": max(upstream.starts - 1, 0)}
        if upstream.client is not None and hub is not None:
            try:
                row["tools"] = [_state(s) for s in await hub.states(name)]
            except Exception as exc:  # noqa: BLE001 - shown, not fatal
                row["error"] = str(exc)
        servers.append(row)
    return json_response({"servers": servers})


async def mcp_approve(request: Request) -> Response:
    """``POST /v1/admin/mcp/servers/{name}/approve``: pin the server's current tool
    definitions (poisoned ones excepted); recorded in the ledger."""
    runtime: Runtime = request.app.state.runtime
    name = request.path_params["name"]
    try:
        principal = admin(request)
        hub = runtime.mcp
        if hub is None or name not in hub.upstreams:
            raise NotFound(f"No MCP server named {name!r} is configured.")
        if hub.upstreams[name].client is None:
            raise UpstreamUnavailable(f"The MCP server {name!r} is not connected now.")
        states = await hub.approve(name, principal.name)
    except OwnlightError as exc:
        return error_response(exc)
    return json_response({"server": name, "tools": [_state(s) for s in states]})


routes = [
    Route("/v1/admin/mcp", mcp_status, methods=["GET"]),
    Route("/v1/admin/mcp/servers/{name}/approve", mcp_approve, methods=["POST"]),
]
