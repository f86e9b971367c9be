"""An OAuth-protected MCP server and its authorization server, in one process on one port,
for the upstream OAuth tests. Run as ``python mcp_oauth_upstream.py RECORD PORT``.

``/mcp`` is the test MCP server of ``mcp_upstream`` (its calls recorded), answering 401 with
``WWW-Authenticate: Bearer resource_metadata=...`` (RFC 9728) unless the request carries an
access token this authorization server issued for that very resource. The authorization
server publishes RFC 8414 metadata, registers clients (RFC 7591), approves every
authorization at once, checks PKCE S256, the redirect URI and the ``resource`` parameter at
the token endpoint, and issues access and refresh tokens. ``POST /expire`` makes every
access token issued so far invalid (the refresh tokens stay good); after ``POST /short`` tokens
are issued for 5 seconds. Every request to the
authorization server and every Authorization header reaching ``/mcp`` is appended to
RECORD as one JSON line."""

from __future__ import annotations

import base64
import hashlib
import itertools
import json
import secrets
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

sys.path.insert(0, str(Path(__file__).parent))
from mcp_upstream import build  # noqa: E402


def serve(record: Path, port: int) -> None:
    base = f"http://127.0.0.1:{port}"
    resource = f"{base}/mcp"
    clients: dict[str, list[str]] = {}  # client_id -> redirect URIs
    codes: dict[str, dict[str, str]] = {}  # code -> the authorization request
    access: set[str] = set()
    refresh: set[str] = set()
    serial = itertools.count(1)
    lifetime = [3600]  # expires_in of the tokens issued next (POST /short makes it 5 s)

    def log(entry: dict[str, Any]) -> None:
        with record.open("a") as out:
            out.write(json.dumps(entry) + "\n")

    async def protected_resource(request: Request) -> Response:
        return JSONResponse({"resource": resource, "authorization_servers": [base],
                             "scopes_supported": ["tools"]})

    async def as_metadata(request: Request) -> Response:
        return JSONResponse({
            "issuer": base, "authorization_endpoint": f"{base}/authorize",
            "token_endpoint": f"{base}/token", "registration_endpoint": f"{base}/register",
            "response_types_supported": ["code"], "code_challenge_methods_supported": ["S256"],
            "grant_types_supported": ["authorization_code", "refresh_token"],
            "token_endpoint_auth_methods_supported": ["none"]})

    async def register(request: Request) -> Response:
        body = await request.json()
        log({"as": "register", "body": body})
        client_id = f"client-{next(serial)}"
        clients[client_id] = list(body.get("redirect_uris") or [])
        return JSONResponse({**body, "client_id": client_id}, status_code=201)

    async def authorize(request: Request) -> Response:
        q = dict(request.query_params)
        log({"as": "authorize", "params": q})
        if (q.get("response_type") != "code" or q.get("code_challenge_method") != "S256"
                or q.get("resource") != resource or q.get("redirect_uri") not in
                clients.get(q.get("client_id", ""), [])):
            return JSONResponse({"error": "invalid_request"}, status_code=400)
        code = secrets.token_urlsafe(16)
        codes[code] = q
        answer = urlencode({"code": code, "state": q["state"]})
        return RedirectResponse(f"{q['redirect_uri']}?{answer}", status_code=302)

    def issue() -> dict[str, Any]:
        n = next(serial)
        token, again = f"access-{n}-{secrets.token_hex(8)}", f"refresh-{n}-{secrets.token_hex(8)}"
        access.add(token)
        refresh.add(again)
        log({"as": "issued", "access_token": token, "refresh_token": again})
        return {"access_token": token, "token_type": "Bearer", "expires_in": lifetime[0],
                "refresh_token": again, "scope": "tools"}

    async def token(request: Request) -> Response:
        form = dict(await request.form())
        log({"as": "token", "form": {k: v for k, v in form.items()
                                     if k not in ("code_verifier",)}})
        if form.get("resource") != resource:
            return JSONResponse({"error": "invalid_target"}, status_code=400)
        if form.get("grant_type") == "authorization_code":
            asked = codes.pop(str(form.get("code")), None)
            verifier = str(form.get("code_verifier", ""))
            challenge = base64.urlsafe_b64encode(
                hashlib.sha256(verifier.encode()).digest()).decode().rstrip("=")
            if asked is None or asked["code_challenge"] != challenge or \
                    asked["redirect_uri"] != form.get("redirect_uri") or \
                    asked["client_id"] != form.get("client_id"):
                return JSONResponse({"error": "invalid_grant"}, status_code=400)
            return JSONResponse(issue())
        if form.get("grant_type") == "refresh_token" and form.get("refresh_token") in refresh:
            refresh.discard(str(form["refresh_token"]))
            return JSONResponse(issue())
        return JSONResponse({"error": "invalid_grant"}, status_code=400)

    async def short(request: Request) -> Response:
        lifetime[0] = 5
        return JSONResponse({"expires_in": 5})

    async def expire(request: Request) -> Response:
        access.clear()
        return JSONResponse({"expired": True})

    auth_server = Starlette(routes=[
        Route("/.well-known/oauth-protected-resource/mcp", protected_resource),
        Route("/.well-known/oauth-authorization-server", as_metadata),
        Route("/register", register, methods=["POST"]),
        Route("/authorize", authorize),
        Route("/token", token, methods=["POST"]),
        Route("/expire", expire, methods=["POST"]),
        Route("/short", short, methods=["POST"]),
    ])
    mcp_app = build(record).streamable_http_app()
    challenge = (f'Bearer resource_metadata="{base}/.well-known/oauth-protected-resource/mcp"'
                 ).encode()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await mcp_app(scope, receive, send)
            return
        if not scope["path"].startswith("/mcp"):
            await auth_server(scope, receive, send)
            return
        header = dict(scope["headers"]).get(b"authorization", b"").decode()
        log({"authorization": header})
        if header.removeprefix("Bearer ") not in access:
            await send({"type": "http.response.start", "status": 401,
                        "headers": [(b"www-authenticate", challenge),
                                    (b"content-length", b"0")]})
            await send({"type": "http.response.body", "body": b""})
            return
        await mcp_app(scope, receive, send)

    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")


if __name__ == "__main__":
    serve(Path(sys.argv[1]), int(sys.argv[2]))
