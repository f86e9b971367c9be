"""The OpenAI-compatible front-end: Chat Completions, Completions, Embeddings, Models.

Wire JSON becomes a canonical request (``ownlight.protocol.openai``), the pipeline
runs it, and the canonical answer or stream is rendered back in OpenAI's shapes.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ownlight.errors import ModelNotFound, OwnlightError
from ownlight.principal import Principal
from ownlight.protocol import openai as wire
from ownlight.protocol.model import Chunk, Json, Operation
from ownlight.runtime import Runtime

from .bodies import error_response, json_response
from .common import bearer_key
from .frontend import Exchange, FrontEnd


class ChatCompletionsFrontEnd(FrontEnd):
    """OpenAI's Chat Completions, Completions and Embeddings."""

    paths = {"/v1/chat/completions": Operation.CHAT, "/v1/completions": Operation.COMPLETION,
             "/v1/embeddings": Operation.EMBEDDING}

    def exchange(self, runtime: Runtime, principal: Principal,
                 headers: Mapping[str, str]) -> Exchange:
        return _Exchange()


class _Exchange:
    parse = staticmethod(wire.parse_request)
    render = staticmethod(wire.render_response)

    async def events(self, chunks: AsyncIterator[Chunk]) -> AsyncIterator[Json]:
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


FRONT_END = ChatCompletionsFrontEnd()

routes = [
    Route("/v1/models", list_models, methods=["GET"]),
    Route("/v1/models/{model_id:path}", get_model, methods=["GET"]),
]
