"""An HTTP transport that stops reading an MCP server's answer once it passes a byte cap.

Checking a tool result's size after it has been read protects the caller but not the
gateway: a server that answers 10 GB would be read (and held) in full first. Under this
transport the answer to one POST is counted as it streams in; past the cap the connection
is closed and the SDK's client receives, in place of the rest, a JSON-RPC error for the
same request id, which the hub turns into ``tool_output_too_large``. Only whole SSE events
are passed on, so the SDK never parses half an event.

Compressed answers would be counted compressed, so MCP connections ask for none
(``Accept-Encoding: identity``)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx2
import orjson

# The ``data.ownlight`` marker of the error put in place of a cut answer.
OUTPUT_TOO_LARGE = "tool_output_too_large"
# JSON-RPC's range for implementation-defined server errors.
_ERROR_CODE = -32000


def wire_cap(max_output_bytes: int) -> int:
    """Bytes read of one answer before it is cut. A result's size is checked exactly once
    parsed (``max_output_bytes`` of compact UTF-8 JSON); on the wire the same result may be
    up to six times longer (``\\uXXXX`` escapes) inside a JSON-RPC envelope and SSE framing."""
    return 6 * max_output_bytes + 65_536


def _request_id(request: httpx2.Request) -> Any:
    try:
        message = orjson.loads(request.content)
    except (orjson.JSONDecodeError, httpx2.RequestNotRead):
        return None
    return message.get("id") if isinstance(message, dict) else None


def _error(request_id: Any, cap: int) -> bytes:
    return orjson.dumps({
        "jsonrpc": "2.0", "id": request_id,
        "error": {"code": _ERROR_CODE,
                  "message": f"The server's answer passed {cap} bytes; Ownlight stopped "
                             "reading it.",
                  "data": {"ownlight": OUTPUT_TOO_LARGE, "bytes_read": cap}}})


class _CappedStream(httpx2.AsyncByteStream):
    def __init__(self, inner: httpx2.AsyncByteStream, cap: int, request_id: Any,
                 sse: bool) -> None:
        self.inner, self.cap, self.request_id, self.sse = inner, cap, request_id, sse
        self.bytes_read = 0

    async def __aiter__(self) -> AsyncIterator[bytes]:
        pending = b""
        async for chunk in self.inner:
            self.bytes_read += len(chunk)
            pending += chunk
            if self.bytes_read > self.cap:
                await self.inner.aclose()
                error = _error(self.request_id, self.cap)
                yield b"event: message\ndata: " + error + b"\n\n" if self.sse else error
                return
            if self.sse:  # pass on whole events only
                end = max(pending.rfind(b"\n\n"), pending.rfind(b"\r\n\r\n"))
                if end >= 0:
                    cut = end + (4 if pending.startswith(b"\r\n\r\n", end) else 2)
                    yield pending[:cut]
                    pending = pending[cut:]
        if pending:
            yield pending

    async def aclose(self) -> None:
        await self.inner.aclose()


class CappedTransport(httpx2.AsyncBaseTransport):
    """Caps the answer to each POST (a JSON-RPC request) at ``cap`` bytes."""

    def __init__(self, cap: int, inner: httpx2.AsyncBaseTransport | None = None) -> None:
        self.cap = cap
        self.inner = inner or httpx2.AsyncHTTPTransport()

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        response = await self.inner.handle_async_request(request)
        if request.method != "POST":
            return response
        assert isinstance(response.stream, httpx2.AsyncByteStream)
        headers = [(k, v) for k, v in response.headers.multi_items()
                   if k.lower() != "content-length"]  # the body may be replaced
        sse = response.headers.get("content-type", "").startswith("text/event-stream")
        stream = _CappedStream(response.stream, self.cap, _request_id(request), sse)
        return httpx2.Response(response.status_code, headers=headers, stream=stream,
                               request=request, extensions=response.extensions)

    async def aclose(self) -> None:
        await self.inner.aclose()
