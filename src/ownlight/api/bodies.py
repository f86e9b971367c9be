"""JSON and server-sent-event responses in the exact shapes OpenAI clients parse."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Mapping
from typing import Any

import orjson
from starlette.responses import Response, StreamingResponse

from ownlight.errors import OwnlightError

log = logging.getLogger("ownlight.api")


def json_response(
    body: Any, status: int = 200, headers: Mapping[str, str] | None = None
) -> Response:
    return Response(
        orjson.dumps(body), status_code=status, headers=headers, media_type="application/json"
    )


def error_response(error: OwnlightError, headers: Mapping[str, str] | None = None) -> Response:
    return json_response(error.to_dict(), error.status, {**(headers or {}),
                                                         **error_headers(error)})


def error_headers(error: OwnlightError) -> dict[str, str]:
    """``Retry-After`` on a 429 whose upstream said when to come back, or a 503 from a
    busy embedded model."""
    retry_after = getattr(error, "retry_after", None)
    if retry_after is None:
        return {}
    return {"retry-after": str(max(1, round(retry_after)))}


def internal_error(request_id: str) -> Response:
    body = {
        "error": {
            "message": f"The server had an error processing your request ({request_id}).",
            "type": "server_error",
            "param": None,
            "code": "internal_error",
        }
    }
    return json_response(body, 500, {"x-ownlight-request-id": request_id})


def sse_response(chunks: AsyncIterator[dict[str, Any]], headers: Mapping[str, str]) -> Response:
    return StreamingResponse(
        _sse(chunks),
        media_type="text/event-stream",
        headers={**headers, "cache-control": "no-cache", "x-accel-buffering": "no"},
    )


async def _sse(chunks: AsyncIterator[dict[str, Any]]) -> AsyncIterator[bytes]:
    """Encode chunks; an error after the stream began becomes an ``error`` event."""
    try:
        async for chunk in chunks:
            yield b"data: " + orjson.dumps(chunk) + b"\n\n"
    except OwnlightError as exc:
        yield b"data: " + orjson.dumps(exc.to_dict()) + b"\n\n"
        return
    except Exception:
        log.exception("stream failed")
        yield b'data: {"error":{"message":"internal error","type":"server_error"}}\n\n'
        return
    finally:
        await chunks.aclose()  # type: ignore[attr-defined]
    yield b"data: [DONE]\n\n"


def event_stream_response(events: AsyncIterator[dict[str, Any]], headers: Mapping[str, str],
                          failure: dict[str, Any]) -> Response:
    """Named server-sent events (``event: TYPE`` then ``data: JSON``), as the Responses and
    Messages APIs send them; ``failure`` is the event sent if the server itself fails."""
    return StreamingResponse(
        _named_sse(events, failure),
        media_type="text/event-stream",
        headers={**headers, "cache-control": "no-cache", "x-accel-buffering": "no"},
    )


async def _named_sse(events: AsyncIterator[dict[str, Any]],
                     failure: dict[str, Any]) -> AsyncIterator[bytes]:
    try:
        async for event in events:
            yield b"event: " + str(event["type"]).encode() + b"\ndata: " + orjson.dumps(event) \
                + b"\n\n"
    except Exception:
        log.exception("stream failed")
        yield b"event: " + str(failure["type"]).encode() + b"\ndata: " + orjson.dumps(failure) \
            + b"\n\n"
    finally:
        await events.aclose()  # type: ignore[attr-defined]
