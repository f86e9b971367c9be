"""A recording reverse proxy on 127.0.0.1: what a real client sends to one of Ownlight's
endpoints, request by request, and what it got back (status and content type).

Tests put it between an agent CLI and Ownlight's ``/mcp`` to keep what the pinned agent
releases really send as fixtures (``tests/data/agents/mcp-*.json``). Credentials are
never recorded: ``authorization`` is kept as its scheme alone."""

from __future__ import annotations

import json
from typing import Any

import aiohttp
from aiohttp import web

from tests.support.loopback import LoopbackServer

# request headers worth keeping: the protocol's own, and what says who sent it
KEPT = ("accept", "content-type", "mcp-protocol-version", "mcp-session-id", "user-agent",
        "last-event-id")


class RecordingProxy(LoopbackServer):
    def __init__(self, target: str) -> None:
        super().__init__()
        self.target = target.rstrip("/")
        self.url = f"http://127.0.0.1:{self.port}"
        self.exchanges: list[dict[str, Any]] = []

    def add_routes(self, app: web.Application) -> None:
        app.router.add_route("*", "/{tail:.*}", self._forward)

    async def _forward(self, request: web.Request) -> web.Response:
        raw = await request.read()
        headers = {k: v for k, v in request.headers.items()
                   if k.lower() not in ("host", "content-length")}
        async with aiohttp.ClientSession() as session, session.request(
                request.method, self.target + request.path_qs, headers=headers,
                data=raw) as answer:
            body = await answer.read()
            status, kind = answer.status, answer.headers.get("content-type", "")
            passed = {k: v for k, v in answer.headers.items()
                      if k.lower() not in ("content-length", "transfer-encoding",
                                           "content-encoding", "connection")}
        kept = {k.lower(): v for k, v in request.headers.items() if k.lower() in KEPT
                or k.lower().startswith("mcp-")}
        if "authorization" in {k.lower() for k in request.headers}:
            kept["authorization"] = request.headers["authorization"].split(" ")[0] + " …"
        try:
            sent: Any = json.loads(raw) if raw else None
        except ValueError:
            sent = raw.decode("utf-8", "replace")
        self.exchanges.append({"method": request.method, "path": request.path,
                               "headers": dict(sorted(kept.items())), "body": sent,
                               "status": status, "content_type": kind.split(";")[0]})
        return web.Response(status=status, body=body, headers=passed)
