"""The Anthropic Messages API front-end: ``/v1/messages`` and ``/v1/messages/count_tokens``.

Claude Code and the ``anthropic`` SDK send ``x-api-key`` (a bearer token works too) and
``anthropic-version``/``anthropic-beta`` headers, which are accepted. Errors on these
routes take Anthropic's shape, ``{"type": "error", "error": {"type", "message"}}``.
"""

from __future__ import annotations

import logging
from functools import partial

from starlette.responses import Response
from starlette.types import Receive, Scope

from ownlight.backends.base import Operation
from ownlight.errors import OwnlightError
from ownlight.pipeline import GatewayRequest, new_request_id
from ownlight.protocol import anthropic as wire
from ownlight.protocol.model import Request
from ownlight.protocol.slots import estimate_tokens
from ownlight.runtime import Runtime

from .common import PipelineRoute, authenticated_body, until_disconnect
from .responses import error_headers, event_stream_response, json_response

log = logging.getLogger("ownlight.api")
FAILURE = {"type": "error", "error": {"type": "api_error", "message": "internal error"}}


def anthropic_error(error: OwnlightError, request_id: str) -> Response:
    return json_response(wire.error_body(error), error.status,
                         {"x-ownlight-request-id": request_id, "request-id": request_id,
                          **error_headers(error)})


def parse_with_betas(headers: dict[str, str], operation: Operation, body: object) -> Request:
    """A Messages body, with the betas its ``anthropic-beta`` header asks for: they go to
    an Anthropic upstream with the fields they unlock."""
    request = wire.parse_request(operation, body)
    beta = headers.get("anthropic-beta", "")
    request.betas = [b.strip() for b in beta.split(",") if b.strip()]
    return request


class MessagesEndpoint:
    async def respond(self, runtime: Runtime, scope: Scope, receive: Receive) -> Response:
        request_id = new_request_id()
        limit = int(runtime.config.get("server.max_body_bytes"))
        try:
            principal, key, headers, body = await authenticated_body(
                runtime.keys, scope, receive, limit)
            result = await until_disconnect(receive, runtime.pipeline.handle(GatewayRequest(
                Operation.CHAT, body, key, partial(parse_with_betas, headers), headers,
                request_id,
                endpoint="/v1/messages",
            ), principal=principal))
        except OwnlightError as exc:
            return anthropic_error(exc, request_id)
        except Exception:
            log.exception("request %s failed", request_id)
            return json_response(FAILURE, 500, {"x-ownlight-request-id": request_id})
        if result.stream is not None:
            model = body.get("model", "") if isinstance(body, dict) else ""
            return event_stream_response(wire.render_stream(result.stream, str(model)),
                                         result.headers, FAILURE)
        assert result.body is not None
        return json_response(wire.render_response(result.body), headers=result.headers)


class CountTokensEndpoint:
    """``input_tokens`` of a Messages request: exact from the embedded model's tokenizer,
    else the estimate routing uses (about four bytes per token)."""

    async def respond(self, runtime: Runtime, scope: Scope, receive: Receive) -> Response:
        request_id = new_request_id()
        limit = int(runtime.config.get("server.max_body_bytes"))
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


PIPELINE_PATHS: dict[str, PipelineRoute] = {
    "/v1/messages": MessagesEndpoint(),
    "/v1/messages/count_tokens": CountTokensEndpoint(),
}
