"""One interface for a wire protocol at the edge, and the one endpoint that serves them all.

A front-end says which paths it answers and, for each request, makes an ``Exchange``:
the parser the pipeline runs (after the key is checked, so strangers learn nothing), and
the renderers for a whole answer and for a stream. Errors and streams take the
protocol's own shapes. ``PipelineEndpoint`` does the rest once for every protocol: read
the key and the body, run the pipeline, cancel on disconnect, answer. A new protocol is
one module with a ``FrontEnd`` and one entry in ``server.FRONT_ENDS``.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Mapping
from typing import Any, ClassVar, Protocol

from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from ownlight.audit.records import new_request_id
from ownlight.errors import OwnlightError
from ownlight.pipeline import GatewayRequest
from ownlight.principal import Principal
from ownlight.protocol.model import Chunk, Json, Operation, Request
from ownlight.protocol.model import Response as Answer
from ownlight.runtime import Runtime

from .bodies import error_response, internal_error, json_response, sse_response
from .common import authenticated_body, until_disconnect

log = logging.getLogger("ownlight.api")


class Exchange(Protocol):
    """One request's trip through a front-end: parsed in, rendered out."""

    def parse(self, operation: Operation, body: Any) -> Request: ...

    def render(self, answer: Answer) -> Json: ...

    def events(self, chunks: AsyncIterator[Chunk]) -> AsyncIterator[Json]: ...


class FrontEnd(ABC):
    """A wire protocol: its paths, its exchanges, its error and stream shapes."""

    #: path -> the operation its requests are
    paths: ClassVar[Mapping[str, Operation]]

    @abstractmethod
    def exchange(self, runtime: Runtime, principal: Principal,
                 headers: Mapping[str, str]) -> Exchange:
        """The state one request needs between parsing and rendering."""

    async def answer_itself(self, runtime: Runtime, principal: Principal, key: str | None,
                            headers: Mapping[str, str], body: Any, scope: Scope,
                            receive: Receive) -> Response | None:
        """A request this front-end runs itself (several pipeline rounds, say), or None
        for the one pipeline pass every other request takes."""
        return None

    def error_response(self, error: OwnlightError, request_id: str) -> Response:
        return error_response(error, {"x-ownlight-request-id": request_id})

    def internal_error(self, request_id: str) -> Response:
        return internal_error(request_id)

    def stream_response(self, events: AsyncIterator[Json],
                        headers: Mapping[str, str]) -> Response:
        """Server-sent ``data:`` lines ending in ``[DONE]``, as Chat Completions sends."""
        return sse_response(events, headers)


class PipelineEndpoint:
    """A raw ASGI endpoint for one path of one front-end.

    These are the gateway's hot routes, so the server dispatches to them directly and
    they skip Starlette's request object and middleware (measured in bench/overhead.py);
    through the router they behave identically.
    """

    def __init__(self, front_end: FrontEnd, operation: Operation):
        self.front_end = front_end
        self.operation = operation
        self.runtime: Runtime | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        runtime = self.runtime or scope["app"].state.runtime
        response = await self.respond(runtime, scope, receive)
        await response(scope, receive, send)

    async def respond(self, runtime: Runtime, scope: Scope, receive: Receive) -> Response:
        front_end = self.front_end
        request_id = new_request_id()
        limit = runtime.config.settings.server.max_body_bytes
        try:
            principal, key, headers, body = await authenticated_body(
                runtime.keys, scope, receive, limit)
            own = await front_end.answer_itself(runtime, principal, key, headers, body,
                                                scope, receive)
            if own is not None:
                return own
            exchange = front_end.exchange(runtime, principal, headers)
            result = await until_disconnect(receive, runtime.pipeline.handle(GatewayRequest(
                self.operation, body, key, exchange.parse, headers, request_id,
                endpoint=scope["path"],
            ), principal=principal))
        except OwnlightError as exc:
            return front_end.error_response(exc, request_id)
        except Exception:
            log.exception("request %s failed", request_id)
            return front_end.internal_error(request_id)
        if result.stream is not None:
            return front_end.stream_response(exchange.events(result.stream), result.headers)
        assert result.body is not None
        return json_response(exchange.render(result.body), headers=result.headers)


def pipeline_paths(front_ends: list[FrontEnd]) -> dict[str, PipelineEndpoint]:
    """Every front-end's paths, each with its endpoint; a path claimed twice is a bug."""
    paths: dict[str, PipelineEndpoint] = {}
    for front_end in front_ends:
        for path, operation in front_end.paths.items():
            if path in paths:
                raise ValueError(f"{path} is served by two front-ends")
            paths[path] = PipelineEndpoint(front_end, operation)
    return paths
