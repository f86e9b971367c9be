"""The Anthropic Messages API front-end: ``/v1/messages`` and ``/v1/messages/count_tokens``.

Claude Code and the ``anthropic`` SDK send ``x-api-key`` (a bearer token works too) and
``anthropic-version``/``anthropic-beta`` headers, which are accepted. Errors on these
routes take Anthropic's shape, ``{"type": "error", "error": {"type", "message"}}``.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Mapping

from starlette.responses import Response
from starlette.types import Receive, Scope

from ownlight.audit.records import new_request_id
from ownlight.errors import OwnlightError
from ownlight.principal import Principal
from ownlight.protocol import anthropic as wire
from ownlight.protocol.model import Chunk, Json, Operation, Request
from ownlight.protocol.model import Response as Answer
from ownlight.protocol.slots import estimate_tokens
from ownlight.runtime import Runtime

from .bodies import error_headers, event_stream_response, json_response
from .common import PipelineRoute, authenticated_body
from .frontend import Exchange, FrontEnd

log = logging.getLogger("ownlight.api")
FAILURE = {"type": "error", "error": {"type": "api_error", "message": "internal error"}}


def anthropic_error(error: OwnlightError, request_id: str) -> Response:
    return json_response(wire.error_body(error), error.status,
                         {"x-ownlight-request-id": request_id, "request-id": request_id,
                          **error_headers(error)})


class MessagesFrontEnd(FrontEnd):
    """Anthropic's Messages API: its error shape and its named stream events."""

    paths = {"/v1/messages": Operation.CHAT}

    def exchange(self, runtime: Runtime, principal: Principal,
                 headers: Mapping[str, str]) -> Exchange:
        return _Exchange(headers.get("anthropic-beta", ""))

    def error_response(self, error: OwnlightError, request_id: str) -> Response:
        return anthropic_error(error, request_id)

    def internal_error(self, request_id: str) -> Response:
        return json_response(FAILURE, 500, {"x-ownlight-request-id": request_id})

    def stream_response(self, events: AsyncIterator[Json],
                        headers: Mapping[str, str]) -> Response:
        return event_stream_response(events, headers, FAILURE)


class _Exchange:
    def __init__(self, beta: str):
        self.betas = [b.strip() for b in beta.split(",") if b.strip()]
        self.model = ""

    def parse(self, operation: Operation, body: object) -> Request:
        """A Messages body, with the betas its ``anthropic-beta`` header asks for: they go
        to an Anthropic upstream with the fields they unlock."""
        request = wire.parse_request(operation, body)
        request.betas = self.betas
        self.model = request.model  # the stream's message_start names what was asked for
        return request

    def render(self, answer: Answer) -> Json:
        return wire.render_response(answer)

    def events(self, chunks: AsyncIterator[Chunk]) -> AsyncIterator[Json]:
        return wire.render_stream(chunks, self.model)


class CountTokensEndpoint:
    """``input_tokens`` of a Messages request: exact from the embedded model's tokenizer,
    else the estimate routing uses (about four bytes per token)."""

    async def respond(self, runtime: Runtime, scope: Scope, receive: Receive) -> Response:
        request_id = new_request_id()
        limit = runtime.config.settings.server.max_body_bytes
        try:
            _, _, _, body = await authenticated_body(runtime.keys, scope, receive, limit)
            if isinstance(body, dict):
                body = {"max_tokens": 1, **body}  # count_tokens takes no max_tokens
            request = wire.parse_request(Operation.CHAT, body)
            targets, _ = runtime.pipeline.router.candidates(request.model, Operation.CHAT)
            count = await targets[0].backend.count_tokens(request)
        except OwnlightError as exc:
            return anthropic_error(exc, request_id)
        except Exception:
            log.exception("count_tokens %s failed", request_id)
            return json_response(FAILURE, 500, {"x-ownlight-request-id": request_id})
        if count is None:
            count = estimate_tokens(request)
        return json_response({"input_tokens": count}, headers={"x-ownlight-request-id": request_id})


FRONT_END = MessagesFrontEnd()

#: Not a pipeline request (nothing is generated), but as hot as one for Claude Code.
OTHER_PATHS: dict[str, PipelineRoute] = {"/v1/messages/count_tokens": CountTokensEndpoint()}
