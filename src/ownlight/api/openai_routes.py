"""The OpenAI-compatible routes under /v1."""

from __future__ import annotations

import logging

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ownlight.backends.base import Operation
from ownlight.errors import OwnlightError
from ownlight.pipeline import GatewayRequest, new_request_id
from ownlight.runtime import Runtime

from .common import bearer_key, read_json
from .responses import error_response, internal_error, json_response, sse_response

log = logging.getLogger("ownlight.api")


def pipeline_endpoint(operation: Operation):  # type: ignore[no-untyped-def]
    async def endpoint(request: Request) -> Response:
        runtime: Runtime = request.app.state.runtime
        request_id = new_request_id()
        headers = {"x-ownlight-request-id": request_id}
        try:
            body = await read_json(request, int(runtime.config.get("server.max_body_bytes")))
            result = await runtime.pipeline.handle(
                GatewayRequest(operation, body, bearer_key(request), request.headers, request_id)
            )
        except OwnlightError as exc:
            return error_response(exc, headers)
        except Exception:
            log.exception("request %s failed", request_id)
            return internal_error(request_id)
        if result.stream is not None:
            return sse_response(result.stream, result.headers)
        return json_response(result.body, headers=result.headers)

    return endpoint


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
         "backend": "router", "targets": list(routed.targets)}
        for alias, routed in runtime.pipeline.router.routed.items()
    ]
    return json_response({"object": "list", "data": data})


routes = [
    Route("/v1/chat/completions", pipeline_endpoint(Operation.CHAT), methods=["POST"]),
    Route("/v1/completions", pipeline_endpoint(Operation.COMPLETION), methods=["POST"]),
    Route("/v1/embeddings", pipeline_endpoint(Operation.EMBEDDING), methods=["POST"]),
    Route("/v1/models", list_models, methods=["GET"]),
]
