"""The OpenAI-compatible front-end: Chat Completions, Completions, Embeddings, Models.

Wire JSON becomes a canonical request (``ownlight.protocol.openai``), the pipeline
runs it, and the canonical answer or stream is rendered back in OpenAI's shapes.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from ownlight.backends.base import Json, Operation
from ownlight.errors import ModelNotFound, OwnlightError
from ownlight.pipeline import GatewayRequest, new_request_id
from ownlight.protocol import openai as wire
from ownlight.protocol.model import Chunk
from ownlight.runtime import Runtime

from .common import authenticated_body, bearer_key, until_disconnect
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
        limit = int(runtime.config.get("server.max_body_bytes"))
        try:
            principal, key, headers, body = await authenticated_body(
                runtime.keys, scope, receive, limit)
            result = await until_disconnect(receive, runtime.pipeline.handle(GatewayRequest(
                self.operation, body, key, wire.parse_request, headers, request_id,
                endpoint=scope["path"],
            ), principal=principal))
        except OwnlightError as exc:
            return error_response(exc, {"x-ownlight-request-id": request_id})
        except Exception:
            log.exception("request %s failed", request_id)
            return internal_error(request_id)
        if result.stream is not None:
            return sse_response(_rendered(result.stream), result.headers)
        assert result.body is not None
        return json_response(wire.render_response(result.body), headers=result.headers)


async def _rendered(chunks: AsyncIterator[Chunk]) -> AsyncIterator[Json]:
    try:
        async for chunk in chunks:
            yield wire.render_chunk(chunk)
    finally:
        await chunks.aclose()  # type: ignore[attr-defined]


def _models(request: Request) -> list[Json]:
    runtime: Runtime = request.app.state.runtime
    created = int(request.app.state.started)
    data: list[Json] = [
        {"id": alias, "object": "model", "created": created, "owned_by": "ownlight",
         "backend": backend.kind, "ready": backend.ready,
         **({"version": backend.served_version} if backend.kind == "registry" else {})}
        for alias, backend in runtime.backends.items()
    ]
    data += [
        {"id": alias, "object": "model", "created": created, "owned_by": "ownlight",
         "backend": "router", "targets": list(routed.targets),
         **({"knowledge": list(routed.knowledge)} if routed.knowledge else {})}
        for alias, routed in runtime.pipeline.router.routed.items()
    ]
    return data


async def list_models(request: Request) -> Response:
    runtime: Runtime = request.app.state.runtime
    try:
        runtime.keys.authenticate(bearer_key(request))
    except OwnlightError as exc:
        return error_response(exc)
    return json_response({"object": "list", "data": _models(request)})


async def get_model(request: Request) -> Response:
    """``GET /v1/models/{id}``: one alias, or 404 in OpenAI's shape."""
    runtime: Runtime = request.app.state.runtime
    model_id = request.path_params["model_id"]
    try:
        runtime.keys.authenticate(bearer_key(request))
        found = next((m for m in _models(request) if m["id"] == model_id), None)
        if found is None:
            raise ModelNotFound(f"The model '{model_id}' does not exist or you do not have "
                                "access to it.", param="model")
    except OwnlightError as exc:
        return error_response(exc)
    return json_response(found)


PIPELINE_PATHS = {
    "/v1/chat/completions": PipelineEndpoint(Operation.CHAT),
    "/v1/completions": PipelineEndpoint(Operation.COMPLETION),
    "/v1/embeddings": PipelineEndpoint(Operation.EMBEDDING),
}

routes = [
    Route(path, endpoint, methods=["POST"]) for path, endpoint in PIPELINE_PATHS.items()
] + [
    Route("/v1/models", list_models, methods=["GET"]),
    Route("/v1/models/{model_id:path}", get_model, methods=["GET"]),
]
