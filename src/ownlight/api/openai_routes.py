"""The OpenAI-compatible routes under /v1."""

from __future__ import annotations

import logging

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from ownlight.backends.base import Operation
from ownlight.errors import OwnlightError
from ownlight.pipeline import GatewayRequest, new_request_id
from ownlight.runtime import Runtime

from .common import bearer_key, key_from_headers, parse_json, read_body
from .responses import error_response, internal_error, json_response, sse_response

log = logging.getLogger("ownlight.api")


class PipelineEndpoint:
    """A raw ASGI endpoint for one pipeline operation.

    These are the gateway's hot routes, so the server dispatches to them directly and
    they skip Starlette's request object and middleware (measured in bench/overhead.py);
    through the router they behave identically.
    """

    def __init__(self, operation: Operation):
        self.operation = operation
        self.runtime: Runtime | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        runtime = self.runtime or scope["app"].state.runtime
        response = await self.respond(runtime, scope, receive)
        await response(scope, receive, send)

    async def respond(self, runtime: Runtime, scope: Scope, receive: Receive) -> Response:
        request_id = new_request_id()
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        limit = int(runtime.config.get("server.max_body_bytes"))
        try:
            raw = await read_body(receive, headers, limit)
            result = await runtime.pipeline.handle(GatewayRequest(
                self.operation, parse_json(raw), key_from_headers(headers), headers, request_id
            ))
        except OwnlightError as exc:
            return error_response(exc, {"x-ownlight-request-id": request_id})
        except Exception:
            log.exception("request %s failed", request_id)
            return internal_error(request_id)
        if result.stream is not None:
            return sse_response(result.stream, result.headers)
        return json_response(result.body, headers=result.headers)


async def list_models(request: Request) -> Response:
    runtime: Runtime = request.app.state.runtime
    try:
        runtime.keys.authenticate(bearer_key(request))
    except OwnlightError as exc:
        return error_response(exc)
    created = int(request.app.state.started)
    data = [
        {"id": alias, "object": "model", "created": created, "owned_by": "ownlight",
         "backend": backend.kind, "ready": backend.ready}
        for alias, backend in runtime.backends.items()
    ]
    data += [
        {"id": alias, "object": "model", "created": created, "owned_by": "ownlight",
         "backend": "router", "targets": list(routed.targets),
         **({"knowledge": list(routed.knowledge)} if routed.knowledge else {})}
        for alias, routed in runtime.pipeline.router.routed.items()
    ]
    return json_response({"object": "list", "data": data})


PIPELINE_PATHS = {
    "/v1/chat/completions": PipelineEndpoint(Operation.CHAT),
    "/v1/completions": PipelineEndpoint(Operation.COMPLETION),
    "/v1/embeddings": PipelineEndpoint(Operation.EMBEDDING),
}

routes = [
    Route(path, endpoint, methods=["POST"]) for path, endpoint in PIPELINE_PATHS.items()
] + [
    Route("/v1/models", list_models, methods=["GET"]),
]
