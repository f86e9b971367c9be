"""Any OpenAI-compatible HTTP server: llama-server, Ollama, vLLM, LocalAI or a cloud API.

One pooled ``aiohttp`` session per upstream (measured faster than httpx under
concurrency, see bench/overhead.py). The canonical request is rendered in the OpenAI
wire format (fields Ownlight does not model travel along, already scanned by the
privacy shield), and answers are parsed back into the canonical model; streams are
relayed chunk by chunk. Upstream trouble becomes an
Ownlight error with the status a client expects (502/503/504), and the upstream's
own message for a 400 (the client's mistake) is passed on.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import orjson

from ownlight.backends.base import Backend, BackendResult, Json, Operation
from ownlight.errors import (
    ContextLengthExceeded,
    InvalidRequest,
    OwnlightError,
    RateLimited,
    UpstreamError,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from ownlight.protocol import openai as wire
from ownlight.protocol.model import Chunk, Request

PATHS = {
    Operation.CHAT: "/chat/completions",
    Operation.COMPLETION: "/completions",
    Operation.EMBEDDING: "/embeddings",
}


class OpenAICompatBackend(Backend):
    kind = "openai"
    operations = frozenset(Operation)

    def __init__(self, entry: Any, config: Any, session: aiohttp.ClientSession | None = None):
        super().__init__(entry, config)
        if not entry.base_url:
            raise ValueError(f"[models.{entry.alias}] needs base_url")
        self.base_url = entry.base_url.rstrip("/")
        self._session = session
        self._owns_session = session is None
        total = entry.timeout or float(config.get("upstream.timeout"))
        self._timeout = aiohttp.ClientTimeout(
            total=None,
            connect=float(config.get("upstream.connect_timeout")),
            sock_read=total,
        )
        self._headers = {"Content-Type": "application/json"}
        if entry.api_key is not None:
            self._headers["Authorization"] = f"Bearer {entry.api_key.reveal()}"

    @property
    def model_name(self) -> str:
        return self.entry.model or self.entry.alias

    async def start(self) -> None:
        self.session()

    def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(
                limit=int(self.config.get("upstream.max_connections")),
                keepalive_timeout=30,
                ttl_dns_cache=300,
            )
            self._session = aiohttp.ClientSession(
                connector=connector,
                json_serialize=lambda obj: orjson.dumps(obj).decode(),
                skip_auto_headers=("User-Agent",),
            )
            self._owns_session = True
        return self._session

    async def close(self) -> None:
        if self._owns_session and self._session is not None:
            await self._session.close()

    async def execute(self, request: Request) -> BackendResult:
        # A stream always asks for usage, so budgets and records can count it; the
        # gateway hides it from clients that did not ask.
        body = wire.render_request(request)
        body["model"] = self.model_name
        if request.stream:
            return await self._stream(request.operation, body)
        return wire.parse_response(request.operation, await self._request(request.operation,
                                                                          body))

    async def _request(self, operation: Operation, body: Json) -> Json:
        url = self.base_url + PATHS[operation]
        try:
            async with self.session().post(
                url, data=orjson.dumps(body), headers=self._headers, timeout=self._timeout
            ) as response:
                raw = await response.read()
                if response.status >= 400:
                    raise _upstream_error(self.entry.alias, response.status, raw)
        except OwnlightError:
            raise
        except TimeoutError as exc:
            raise UpstreamTimeout(f"upstream {self.entry.alias!r} timed out") from exc
        except aiohttp.ClientConnectionError as exc:
            raise UpstreamUnavailable(f"upstream {self.entry.alias!r} is unreachable") from exc
        except aiohttp.ClientError as exc:
            raise UpstreamError(f"upstream {self.entry.alias!r} failed: {exc}") from exc
        try:
            parsed = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise UpstreamError(f"upstream {self.entry.alias!r} sent invalid JSON") from exc
        if not isinstance(parsed, dict):
            raise UpstreamError(f"upstream {self.entry.alias!r} sent an unexpected body")
        return parsed

    async def _stream(self, operation: Operation, body: Json) -> AsyncIterator[Chunk]:
        """Relay an SSE stream. Errors before the first chunk surface as HTTP errors."""
        url = self.base_url + PATHS[operation]
        try:
            response = await self.session().post(
                url, data=orjson.dumps(body), headers=self._headers, timeout=self._timeout
            )
        except TimeoutError as exc:
            raise UpstreamTimeout(f"upstream {self.entry.alias!r} timed out") from exc
        except aiohttp.ClientConnectionError as exc:
            raise UpstreamUnavailable(f"upstream {self.entry.alias!r} is unreachable") from exc
        return self._relay(operation, response)

    async def _relay(self, operation: Operation,
                     response: aiohttp.ClientResponse) -> AsyncIterator[Chunk]:
        done = False
        try:
            if response.status >= 400:
                raise _upstream_error(self.entry.alias, response.status, await response.read())
            async for line in response.content:
                if not line.startswith(b"data:"):
                    continue
                data = line[5:].strip()
                if data == b"[DONE]":
                    done = True
                    break
                chunk = orjson.loads(data)
                if not isinstance(chunk, dict) or "error" in chunk:
                    raise UpstreamError(_message(chunk) or "upstream stream failed")
                yield wire.parse_chunk(operation, chunk)
            if not done:
                raise UpstreamError(f"upstream {self.entry.alias!r} ended the stream early")
        except OwnlightError:
            raise
        except TimeoutError as exc:
            raise UpstreamTimeout(f"upstream {self.entry.alias!r} timed out") from exc
        except (aiohttp.ClientError, orjson.JSONDecodeError) as exc:
            raise UpstreamError(f"upstream {self.entry.alias!r} broke the stream") from exc
        finally:
            # A finished stream returns its connection to the pool; an abandoned one
            # (client gone, upstream broken) is closed so the upstream stops generating.
            if done:
                response.release()
            else:
                response.close()


def _message(parsed: Any) -> str | None:
    if isinstance(parsed, dict):
        error = parsed.get("error")
        if isinstance(error, dict) and isinstance(error.get("message"), str):
            return error["message"]
        if isinstance(error, str):
            return error
    return None


def _upstream_error(alias: str, status: int, raw: bytes) -> OwnlightError:
    try:
        message = _message(orjson.loads(raw))
    except orjson.JSONDecodeError:
        message = None
    detail = f"upstream {alias!r} answered {status}" + (f": {message}" if message else "")
    if status in (400, 422):
        if message and "context" in message.lower():
            return ContextLengthExceeded(message)
        return InvalidRequest(message or detail)
    if status == 429:
        return RateLimited(detail)
    if status in (502, 503):
        return UpstreamUnavailable(detail)
    if status == 504:
        return UpstreamTimeout(detail)
    return UpstreamError(detail)
