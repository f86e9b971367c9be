"""The OpenAI-compatible front-end: Chat Completions, Completions, Embeddings, Models.

Wire JSON becomes a canonical request (``ownlight.protocol.openai``), the pipeline
runs it, and the canonical answer or stream is rendered back in OpenAI's shapes.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import Receive, Scope

from ownlight.errors import ModelNotFound, OwnlightError
from ownlight.principal import Principal
from ownlight.protocol import openai as wire
from ownlight.protocol.model import Chunk, Json, Operation
from ownlight.runtime import Runtime

from . import chat_mcp
from .bodies import error_response, json_response
from .common import bearer_key, until_disconnect
from .frontend import Exchange, FrontEnd


class ChatCompletionsFrontEnd(FrontEnd):
    """OpenAI's Chat Completions, Completions and Embeddings."""

    paths = {"/v1/chat/completions": Operation.CHAT, "/v1/completions": Operation.COMPLETION,
             "/v1/embeddings": Operation.EMBEDDING}

    def exchange(self, runtime: Runtime, principal: Principal,
                 headers: Mapping[str, str]) -> Exchange:
        return _Exchange()

    async def answer_itself(self, runtime: Runtime, principal: Principal, key: str | None,
                            headers: Mapping[str, str], body: object, scope: Scope,
                            receive: Receive) -> Response | None:
        """A chat request with Ownlight's ``mcp`` field: Ownlight runs the tool loop."""
        if scope["path"] != "/v1/chat/completions" or not chat_mcp.has_mcp_field(body):
            return None
        assert isinstance(body, dict)
        loop = chat_mcp.ChatMcpLoop(runtime, principal, key, headers, body, scope["path"],
                                    _Exchange())
        await loop.prepare()
        answer = await until_disconnect(receive, loop.run())
        if body.get("stream") is True:
            options = body.get("stream_options")
            usage = isinstance(options, dict) and options.get("include_usage") is True
            return self.stream_response(chat_mcp.chunks(answer, usage), {})
        return json_response(answer)


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
