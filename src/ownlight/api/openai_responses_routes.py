"""The OpenAI Responses API front-end: ``/v1/responses`` and its stored responses.

The caller's key is checked first; a ``previous_response_id`` then brings back the
stored conversation (only the same principal's: anyone else gets 404), which goes
through the pipeline with the new input like any other turns, the privacy shield
included. The answer is stored when ``store`` is true, as OpenAI does by default.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import Receive, Scope

from ownlight.errors import OwnlightError
from ownlight.principal import Principal
from ownlight.protocol import responses as wire
from ownlight.protocol.model import Chunk, Json, Operation
from ownlight.protocol.model import Request as CanonicalRequest
from ownlight.protocol.model import Response as Answer
from ownlight.protocol.responses import ResponsesCall
from ownlight.runtime import Runtime

from . import responses_mcp as mcp_loop
from .bodies import error_response, event_stream_response, json_response
from .common import bearer_key, until_disconnect
from .frontend import Exchange, FrontEnd

FAILURE = {"type": "error", "code": "internal_error", "message": "internal error",
           "sequence_number": 0}


class ResponsesFrontEnd(FrontEnd):
    """OpenAI's Responses API: its named stream events; errors in OpenAI's shape."""

    paths = {"/v1/responses": Operation.CHAT}

    def exchange(self, runtime: Runtime, principal: Principal,
                 headers: Mapping[str, str]) -> Exchange:
        return _Exchange(runtime, principal)

    async def answer_itself(self, runtime: Runtime, principal: Principal, key: str | None,
                            headers: Mapping[str, str], body: object, scope: Scope,
                            receive: Receive) -> Response | None:
        """A request with ``mcp`` tools: Ownlight runs the tool loop (``responses_mcp``)."""
        if not mcp_loop.has_mcp_tools(body):
            return None
        assert isinstance(body, dict)
        loop = mcp_loop.McpToolLoop(runtime, principal, key, dict(headers), body,
                                    scope["path"],
                                    lambda: self.exchange(runtime, principal, headers))
        await loop.prepare()
        if body.get("stream") is True:
            return self.stream_response(mcp_loop.events(loop), {})
        return json_response(await until_disconnect(receive, mcp_loop.run(loop)))

    def stream_response(self, events: AsyncIterator[Json],
                        headers: Mapping[str, str]) -> Response:
        return event_stream_response(events, headers, FAILURE)


class _Exchange:
    """The body, then the stored conversation a ``previous_response_id`` names (parsed
    inside the pipeline, so a refusal is recorded); the answer, stored when asked."""

    def __init__(self, runtime: Runtime, principal: Principal):
        self.runtime, self.principal = runtime, principal
        self.call: ResponsesCall | None = None
        self.context: list[Json] = []
        self.response_id = wire.new_id("resp")

    def parse(self, _operation: Operation, body: object) -> CanonicalRequest:
        call = wire.parse_call(body)
        if call.previous_response_id:
            previous, earlier = self.runtime.responses.get(self.principal,
                                                           call.previous_response_id)
            self.context = earlier + wire.output_to_items(previous.get("output") or [])
            call.request.turns = wire.items_to_turns(self.context) + call.request.turns
        self.call = call
        return call.request

    def render(self, answer: Answer) -> Json:
        assert self.call is not None
        rendered = wire.render_response(answer, self.call, self.response_id)
        self._store(rendered)
        return rendered

    async def events(self, chunks: AsyncIterator[Chunk]) -> AsyncIterator[Json]:
        """The event stream; once complete, the response is stored as the client saw it."""
        assert self.call is not None
        writer = wire.EventWriter(self.call, self.response_id, self.call.request.model)
        async for event in wire.render_stream(chunks, writer):
            yield event
        if writer.final is not None:
            self._store(writer.final)

    def _store(self, rendered: Json) -> None:
        assert self.call is not None
        if self.call.store:
            self.runtime.responses.save(self.principal, rendered,
                                        self.context + self.call.items)


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


FRONT_END = ResponsesFrontEnd()

routes = [
    Route("/v1/responses/{response_id}", get_response, methods=["GET"]),
    Route("/v1/responses/{response_id}", delete_response, methods=["DELETE"]),
    Route("/v1/responses/{response_id}/input_items", list_input_items, methods=["GET"]),
]
