"""The OpenAI Responses API front-end: ``/v1/responses`` and its stored responses.

The caller's key is checked first; a ``previous_response_id`` then brings back the
stored conversation (only the same principal's: anyone else gets 404), which goes
through the pipeline with the new input like any other turns, the privacy shield
included. The answer is stored when ``store`` is true, as OpenAI does by default.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import Receive, Scope

from ownlight.auth import Principal
from ownlight.backends.base import Json, Operation
from ownlight.errors import OwnlightError
from ownlight.pipeline import GatewayRequest, GatewayResponse, new_request_id
from ownlight.protocol import responses as wire
from ownlight.protocol.model import Request as CanonicalRequest
from ownlight.protocol.responses import ResponsesCall
from ownlight.runtime import Runtime

from .common import authenticated_body, bearer_key, until_disconnect
from .responses import error_response, event_stream_response, internal_error, json_response

log = logging.getLogger("ownlight.api")
FAILURE = {"type": "error", "code": "internal_error", "message": "internal error",
           "sequence_number": 0}


class ResponsesEndpoint:
    """``POST /v1/responses``: a raw ASGI endpoint like the Chat Completions one."""

    async def respond(self, runtime: Runtime, scope: Scope, receive: Receive) -> Response:
        request_id = new_request_id()
        limit = int(runtime.config.get("server.max_body_bytes"))
        try:
            principal, key, headers, body = await authenticated_body(
                runtime.keys, scope, receive, limit)
            parsed = _Parsed(runtime, principal)
            result = await until_disconnect(receive, runtime.pipeline.handle(GatewayRequest(
                Operation.CHAT, body, key, parsed, headers, request_id,
                endpoint="/v1/responses",
            ), principal=principal))
            call, context = parsed.call, parsed.context
            assert call is not None
        except OwnlightError as exc:
            return error_response(exc, {"x-ownlight-request-id": request_id})
        except Exception:
            log.exception("request %s failed", request_id)
            return internal_error(request_id)
        response_id = wire.new_id("resp")
        stored = context + call.items
        if result.stream is not None:
            return event_stream_response(
                _stored_stream(runtime, principal, call, result, response_id, stored),
                result.headers, FAILURE)
        assert result.body is not None
        rendered = wire.render_response(result.body, call, response_id)
        if call.store:
            runtime.responses.save(principal, rendered, stored)
        return json_response(rendered, headers=result.headers)


class _Parsed:
    """The pipeline's parser for this route: the body, then the stored conversation a
    ``previous_response_id`` names; run inside the pipeline, so a refusal is recorded."""

    def __init__(self, runtime: Runtime, principal: Principal):
        self.runtime, self.principal = runtime, principal
        self.call: ResponsesCall | None = None
        self.context: list[Json] = []

    def __call__(self, _operation: Operation, body: object) -> CanonicalRequest:
        call = wire.parse_call(body)
        if call.previous_response_id:
            previous, earlier = self.runtime.responses.get(self.principal,
                                                           call.previous_response_id)
            self.context = earlier + wire.output_to_items(previous.get("output") or [])
            call.request.turns = wire.items_to_turns(self.context) + call.request.turns
        self.call = call
        return call.request


async def _stored_stream(runtime: Runtime, principal: Principal, call: ResponsesCall,
                         result: GatewayResponse, response_id: str,
                         stored: list[Json]) -> AsyncIterator[Json]:
    """The event stream; once complete, the response is stored as the client saw it."""
    assert result.stream is not None
    writer = wire.EventWriter(call, response_id, call.request.model)
    async for event in wire.render_stream(result.stream, writer):
        yield event
    if call.store and writer.final is not None:
        runtime.responses.save(principal, writer.final, stored)


async def _stored(request: Request, action: str) -> Response:
    runtime: Runtime = request.app.state.runtime
    response_id = request.path_params["response_id"]
    try:
        principal = runtime.keys.authenticate(bearer_key(request))
        if action == "delete":
            runtime.responses.delete(principal, response_id)
            return json_response({"id": response_id, "object": "response", "deleted": True})
        body, context = runtime.responses.get(principal, response_id)
    except OwnlightError as exc:
        return error_response(exc)
    if action == "get":
        return json_response(body)
    items = [{"id": f"item_{i}_{response_id[-8:]}", **item} for i, item in enumerate(context)]
    return json_response({"object": "list", "data": items,
                          "first_id": items[0]["id"] if items else None,
                          "last_id": items[-1]["id"] if items else None, "has_more": False})


async def get_response(request: Request) -> Response:
    return await _stored(request, "get")


async def delete_response(request: Request) -> Response:
    return await _stored(request, "delete")


async def list_input_items(request: Request) -> Response:
    return await _stored(request, "items")


PIPELINE_PATHS = {"/v1/responses": ResponsesEndpoint()}

routes = [
    Route("/v1/responses/{response_id}", get_response, methods=["GET"]),
    Route("/v1/responses/{response_id}", delete_response, methods=["DELETE"]),
    Route("/v1/responses/{response_id}/input_items", list_input_items, methods=["GET"]),
]
