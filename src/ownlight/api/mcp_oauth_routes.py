"""Users authorizing Ownlight at OAuth-protected MCP servers (``mcp.oauth``): start the
flow with one's Ownlight key or console session, come back through the callback, or
disconnect again."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from ownlight.console import session
from ownlight.errors import InvalidRequest, NotFound, OwnlightError, UpstreamUnavailable
from ownlight.mcp.oauth import OAuthBroker, OAuthFailed
from ownlight.principal import Principal
from ownlight.runtime import Runtime

from .bodies import error_response, json_response
from .common import bearer_key

CALLBACK = "/mcp/oauth/callback"


def _principal(request: Request) -> Principal:
    """The caller: their Ownlight key, or, without one, their console session."""
    runtime: Runtime = request.app.state.runtime
    key = bearer_key(request)
    if key is None and request.cookies.get(session.COOKIE):
        try:
            return session.current(request).principal
        except session.NotSignedIn:
            pass
    return runtime.keys.authenticate(key, request.scope)


def _caller(request: Request) -> tuple[Principal, OAuthBroker, str]:
    runtime: Runtime = request.app.state.runtime
    principal = _principal(request)
    name = request.path_params["name"]
    broker = runtime.mcp.oauth if runtime.mcp is not None else None
    if broker is None or name not in broker:
        raise NotFound(f"No MCP server named {name!r} uses OAuth here.")
    return principal, broker, name


async def start(request: Request) -> Response:
    """``GET /mcp/oauth/{name}/start``: redirect the caller to the server's authorization
    endpoint (PKCE S256, ``state`` bound to the caller, ``resource`` the server's URL)."""
    try:
        principal, broker, name = _caller(request)
        runtime: Runtime = request.app.state.runtime
        redirect_uri = runtime.config.settings.mcp.oauth_callback_url or (
            str(request.base_url).rstrip("/") + CALLBACK)
        url = await broker.start_url(name, principal.name, redirect_uri)
    except OwnlightError as exc:
        return error_response(exc)
    except OAuthFailed as exc:
        return error_response(UpstreamUnavailable(exc.message))
    return RedirectResponse(url, status_code=302)


async def callback(request: Request) -> Response:
    """``GET /mcp/oauth/callback?code=...&state=...``: the authorization server's answer."""
    runtime: Runtime = request.app.state.runtime
    broker = runtime.mcp.oauth if runtime.mcp is not None else None
    code, state = request.query_params.get("code"), request.query_params.get("state")
    try:
        if broker is None:
            raise NotFound("No MCP server uses OAuth here.")
        if not code or not state:
            raise InvalidRequest(request.query_params.get("error_description") or
                                 "The authorization server sent no code and state.")
        try:
            server, principal = await broker.finish(state, code)
        except OAuthFailed as exc:
            raise InvalidRequest(exc.message) from None
    except OwnlightError as exc:
        return error_response(exc)
    return json_response({"server": server, "principal": principal, "authorized": True})


async def disconnect(request: Request) -> Response:
    """``DELETE /mcp/oauth/{name}``: forget the caller's tokens for the server."""
    try:
        principal, broker, name = _caller(request)
    except OwnlightError as exc:
        return error_response(exc)
    gone = broker.disconnect(name, principal.name, principal.name)
    return json_response({"server": name, "principal": principal.name, "disconnected": gone})


routes = [
    Route(CALLBACK, callback, methods=["GET"]),
    Route("/mcp/oauth/{name}/start", start, methods=["GET"]),
    Route("/mcp/oauth/{name}", disconnect, methods=["DELETE"]),
]
