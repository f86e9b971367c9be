"""The ASGI application: routes, error shapes and the runtime's lifecycle."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from ownlight.api import (
    admin_routes,
    admin_view_routes,
    anthropic_routes,
    guard_routes,
    knowledge_routes,
    mcp_oauth_routes,
    mcp_routes,
    openai_responses_routes,
    openai_routes,
    privacy_routes,
)
from ownlight.api.bodies import error_response, json_response
from ownlight.api.common import PipelineRoute, bearer_key
from ownlight.api.frontend import FrontEnd, pipeline_paths
from ownlight.auth import request_scope
from ownlight.console import routes as console_routes
from ownlight.errors import OwnlightError
from ownlight.mcp.endpoint import McpEndpoint
from ownlight.runtime import Runtime

_STATUS_CODES = {404: "not_found", 405: "method_not_allowed"}

# One front-end per wire protocol; adding a protocol adds an entry here.
FRONT_ENDS: list[FrontEnd] = [
    openai_routes.FRONT_END,
    openai_responses_routes.FRONT_END,
    anthropic_routes.FRONT_END,
]
# Every pipeline POST, whatever its protocol: the hot path dispatches these directly.
PIPELINE_PATHS: dict[str, PipelineRoute] = {
    **pipeline_paths(FRONT_ENDS),
    **anthropic_routes.OTHER_PATHS,
}


async def root(request: Request) -> Response:
    """What answers at ``/``: a browser is sent to the console; Claude Code probes it with
    ``HEAD /`` before its first turn, and an API client gets the gateway's name."""
    if request.method == "GET" and "text/html" in request.headers.get("accept", ""):
        return RedirectResponse("/console/", 303)
    return json_response({"name": "Ownlight", "status": "ok"})


async def healthz(request: Request) -> Response:
    """Liveness: the process answers. Needs no key."""
    return json_response({"status": "ok"})


async def readyz(request: Request) -> Response:
    """Readiness: every configured model is loaded and the state store answers (503 while
    a model is loading or broken, or PostgreSQL cannot be reached: a load balancer then
    sends requests elsewhere). An unreachable Redis is reported (``"redis":
    "unreachable"``) but leaves the instance ready: it still serves local models.

    Anyone may ask whether the gateway is ready, and whether the store is the reason it is
    not; which models exist and why one failed (file paths included), and how far the
    shipper to the shared audit ledger is behind (``audit_behind``), are for an admin key.
    """
    runtime: Runtime = request.app.state.runtime
    models = runtime.readiness()
    store = runtime.stores is None or runtime.stores.reachable()
    counters = runtime.counters is None or runtime.counters.reachable()
    # Without Redis an instance still serves its free, local models, and every instance
    # shares the one Redis: reported, but not a reason to take this instance out.
    ready = store and all(state == "ready" for state in models.values())
    body: dict[str, object] = {"ready": ready}
    if not store:
        body["store"] = "unreachable"
    if not counters:
        body["redis"] = "unreachable"
    key = bearer_key(request)
    if key is not None:
        try:
            principal = runtime.keys.authenticate(key)
        except OwnlightError as exc:
            return error_response(exc)
        if principal.is_admin:
            body["models"] = models
            behind = runtime.audit_behind() if store else None
            if behind is not None:  # records journaled here that the shared ledger lacks
                body["audit_behind"] = behind
            pools = runtime.replica_stats()
            if pools:
                body["replicas"] = {alias: [dataclasses.asdict(r) for r in stats]
                                    for alias, stats in pools.items()}
    return json_response(body, 200 if ready else 503)


async def http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    body = {
        "error": {
            "message": f"{request.method} {request.url.path}: {exc.detail}",
            "type": "invalid_request_error",
            "param": None,
            "code": _STATUS_CODES.get(exc.status_code, "http_error"),
        }
    }
    return json_response(body, exc.status_code)


class FastPath:
    """The ASGI entry point: pipeline POSTs go straight to their endpoint.

    Everything else (and the lifespan) goes through the Starlette app. Skipping the
    router and middleware on the hot routes roughly halves the gateway's own cost per
    request (bench/overhead.py); the endpoints are the same objects either way. The hot
    routes hand their scope to the key check themselves; for the others it is in
    ``request_scope``, so a refused key is recorded with its client address and route.
    """

    def __init__(self, app: Starlette, runtime: Runtime):
        self.app = app
        self.runtime = runtime
        self.state = app.state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            endpoint = PIPELINE_PATHS.get(scope["path"])
            if endpoint is not None:
                response = await endpoint.respond(self.runtime, scope, receive)
                await response(scope, receive, send)
                return
        if scope["type"] == "http":
            request_scope.set(scope)  # this request's task's own context
        await self.app(scope, receive, send)


def create_app(runtime: Runtime) -> FastPath:
    """Build the app around a runtime; starting the app starts the runtime's backends."""

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        app.state.started = time.time()
        # Models load in the background: /healthz answers at once, /readyz says when
        # they are ready, and early requests wait for their model.
        task = asyncio.create_task(runtime.start())
        try:
            async with mcp.run() if mcp is not None else contextlib.nullcontext():
                yield
        finally:
            task.cancel()
            await runtime.close()

    mcp = McpEndpoint(runtime.mcp, runtime.keys) if runtime.mcp is not None else None

    app = Starlette(
        routes=[
            Route("/", root, methods=["GET"]),  # HEAD too: Starlette adds it to GET
            Route("/healthz", healthz, methods=["GET"]),
            Route("/readyz", readyz, methods=["GET"]),
            # the hot paths again, so a wrong method gets 405 in the error shape
            *(Route(path, endpoint, methods=["POST"])  # type: ignore[arg-type]
              for path, endpoint in PIPELINE_PATHS.items()),
            *openai_routes.routes,
            *openai_responses_routes.routes,
            *privacy_routes.routes,
            *knowledge_routes.routes,
            *admin_routes.routes,
            *admin_view_routes.routes,
            *guard_routes.routes,
            *mcp_routes.routes,
            *mcp_oauth_routes.routes,
            *console_routes.routes,
            *([Route("/mcp", mcp, methods=["GET", "POST", "DELETE"])] if mcp else []),
        ],
        exception_handlers={HTTPException: http_error},
        lifespan=lifespan,
    )
    app.state.runtime = runtime
    app.state.started = time.time()
    return FastPath(app, runtime)

