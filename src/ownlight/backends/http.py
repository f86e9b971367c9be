"""What every backend that talks to an upstream over HTTP shares.

One pooled ``aiohttp`` session per upstream (measured faster than httpx under
concurrency, see bench/overhead.py), a JSON POST, a server-sent-event reader, and the
translation of upstream trouble into Ownlight errors with the status a client expects
(502/503/504), passing on the upstream's own message for a 4xx (that request's problem,
never counted against the upstream's health). An endpoint the upstream answers 404 for is
remembered for ``UNSERVED_SECONDS`` and refused at once meanwhile; its other endpoints
are unaffected.
Subclasses say only how their wire protocol looks: ``OpenAICompatBackend`` and
``AnthropicBackend``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Mapping
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import orjson

from ownlight.backends.base import Backend, Json
from ownlight.errors import (
    ContextLengthExceeded,
    EndpointNotServed,
    InvalidRequest,
    OwnlightError,
    RateLimited,
    UpstreamError,
    UpstreamRejected,
    UpstreamTimeout,
    UpstreamUnavailable,
)

log = logging.getLogger("ownlight.upstream")
UNSERVED_SECONDS = 300.0  # how long an endpoint answered with a route-level 404 stays off


class HttpBackend(Backend):
    """A backend whose model lives behind an HTTP API at ``base_url``."""

    #: What a health probe GETs under ``base_url`` unless the alias names a ``probe_path``.
    probe_path: str = "/models"

    def __init__(self, entry: Any, config: Any, session: aiohttp.ClientSession | None = None):
        super().__init__(entry, config)
        if not entry.base_url:
            raise ValueError(f"[models.{entry.alias}] needs base_url")
        self.base_url = entry.base_url.rstrip("/")
        self._base_path = urlsplit(self.base_url).path
        self._unserved: dict[str, float] = {}  # endpoint path -> until when it is off
        self._session = session
        self._owns_session = session is None
        total = entry.timeout or config.settings.upstream.timeout
        self._timeout = aiohttp.ClientTimeout(
            total=None,
            connect=config.settings.upstream.connect_timeout,
            sock_read=total,
        )
        self.headers = {"Content-Type": "application/json", **self.auth_headers()}
        idle = entry.settings.idle_timeout
        self.idle_timeout = idle if idle is not None else config.settings.upstream.idle_timeout

    def auth_headers(self) -> dict[str, str]:
        """Headers that carry the upstream key (and protocol version)."""
        return {}

    def _check_served(self, path: str) -> None:
        until = self._unserved.get(path)
        if until is not None and time.monotonic() < until:
            raise EndpointNotServed(f"upstream {self.entry.alias!r} does not serve {path}")

    def _learn(self, error: OwnlightError, path: str) -> OwnlightError:
        if isinstance(error, EndpointNotServed):
            self._unserved[path] = time.monotonic() + UNSERVED_SECONDS
        return error

    @property
    def model_name(self) -> str:
        return self.entry.model or self.entry.alias

    async def start(self) -> None:
        self.session()

    def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(
                limit=self.config.settings.upstream.max_connections,
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

    async def probe(self, path: str, timeout: float) -> str | None:
        """GET ``path`` as a health check: None when it answers 2xx, else what went wrong."""
        try:
            async with self.session().get(
                self.base_url + path, headers=self.headers,
                timeout=aiohttp.ClientTimeout(total=timeout),
            ) as response:
                await response.read()
                return None if response.status < 300 else f"probe answered {response.status}"
        except TimeoutError:
            return f"probe got no answer within {timeout:g} s"
        except aiohttp.ClientError as exc:
            return f"probe failed: {type(exc).__name__}"

    async def post_json(self, path: str, body: Json,
                        headers: dict[str, str] | None = None) -> Json:
        """POST a body, return the parsed JSON answer (or raise the matching error)."""
        name = self.entry.alias
        self._check_served(path)
        try:
            async with self.session().post(
                self.base_url + path, data=orjson.dumps(body),
                headers={**self.headers, **headers} if headers else self.headers,
                timeout=self._timeout,
            ) as response:
                raw = await response.read()
                if response.status >= 400:
                    raise self._learn(upstream_error(name, response.status, raw,
                                                     response.headers, path), path)
        except OwnlightError:
            raise
        except TimeoutError as exc:
            raise UpstreamTimeout(f"upstream {name!r} timed out") from exc
        except aiohttp.ClientConnectionError as exc:
            raise UpstreamUnavailable(f"upstream {name!r} is unreachable") from exc
        except aiohttp.ClientError as exc:
            # The library's words (byte counts, internals) go to the log, not the client.
            log.warning("upstream %s failed: %r", name, exc)
            raise UpstreamError(f"upstream {name!r} closed the connection before its answer "
                                "was complete") from exc
        try:
            parsed = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise UpstreamError(f"upstream {name!r} sent invalid JSON") from exc
        if not isinstance(parsed, dict):
            raise UpstreamError(f"upstream {name!r} sent an unexpected body")
        return parsed

    async def post_stream(self, path: str, body: Json,
                          headers: dict[str, str] | None = None) -> aiohttp.ClientResponse:
        """Open a streamed POST; errors before the first byte surface as HTTP errors."""
        name = self.entry.alias
        self._check_served(path)
        try:
            return await self.session().post(
                self.base_url + path, data=orjson.dumps(body),
                headers={**self.headers, **headers} if headers else self.headers,
                timeout=self._timeout,
            )
        except TimeoutError as exc:
            raise UpstreamTimeout(f"upstream {name!r} timed out") from exc
        except aiohttp.ClientConnectionError as exc:
            raise UpstreamUnavailable(f"upstream {name!r} is unreachable") from exc

    async def sse_data(self, response: aiohttp.ClientResponse,
                       end: bytes | None = b"[DONE]") -> AsyncIterator[Json]:
        """The JSON of each ``data:`` line; the stream must end with ``end`` (or normally).

        A finished stream returns its connection to the pool; an abandoned one (client
        gone, upstream broken) is closed so the upstream stops generating.
        """
        name = self.entry.alias
        done = False
        try:
            if response.status >= 400:
                path = response.url.path.removeprefix(self._base_path)
                raise self._learn(upstream_error(name, response.status, await response.read(),
                                                 response.headers, path), path)
            while True:
                try:
                    async with asyncio.timeout(self.idle_timeout):
                        line = await response.content.readline()
                except TimeoutError:
                    raise UpstreamTimeout(
                        f"upstream {name!r} sent nothing for {self.idle_timeout:g} s "
                        "(upstream.idle_timeout)") from None
                if not line:
                    break
                if not line.startswith(b"data:"):
                    continue
                data = line[5:].strip()
                if end is not None and data == end:
                    done = True
                    break
                event = orjson.loads(data)
                if not isinstance(event, dict):
                    raise UpstreamError(f"upstream {name!r} sent an unexpected event")
                yield event
            if end is None:
                done = True
            if not done:
                raise UpstreamError(f"upstream {name!r} ended the stream early")
        except OwnlightError:
            raise
        except TimeoutError as exc:
            raise UpstreamTimeout(f"upstream {name!r} timed out") from exc
        except (aiohttp.ClientError, orjson.JSONDecodeError) as exc:
            log.warning("upstream %s broke its stream: %r", name, exc)
            raise UpstreamError(f"upstream {name!r} broke off its answer mid-stream") from exc
        finally:
            if done:
                response.release()
            else:
                response.close()


def retry_after(headers: Mapping[str, str]) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds form; a date counts as unknown)."""
    raw = headers.get("retry-after") or headers.get("Retry-After")
    try:
        return max(0.0, float(raw)) if raw is not None else None
    except ValueError:
        return None


def error_message(parsed: Any) -> str | None:
    """The message of an OpenAI- or Anthropic-shaped error body."""
    if isinstance(parsed, dict):
        error = parsed.get("error")
        if isinstance(error, dict) and isinstance(error.get("message"), str):
            return error["message"]
        if isinstance(error, str):
            return error
    return None


def upstream_error(alias: str, status: int, raw: bytes,
                   headers: Mapping[str, str] | None = None, path: str = "") -> OwnlightError:
    """The error a client sees for an upstream's error status.

    Only what says the upstream is unwell counts against it (5xx, 408, 429, a refused
    Ownlight key): a 4xx about one request is that request's problem, answered with the
    upstream's status and message, so one caller cannot trip a breaker for everyone.
    """
    try:
        parsed = orjson.loads(raw)
    except orjson.JSONDecodeError:
        parsed = None
    message = error_message(parsed)
    detail = f"upstream {alias!r} answered {status}" + (f": {message[:500]}"
                                                       if message else "")
    if status in (400, 422):
        if message and "context" in message.lower():
            return ContextLengthExceeded(message)
        return InvalidRequest(message or detail)
    if status in (401, 403):  # Ownlight's own key for it: every request would fail alike
        return UpstreamError(f"{detail} (check [models.{alias}] api_key)",
                             code="upstream_auth_failed")
    if status in (404, 405, 501) and not _names_a_model(message):
        return EndpointNotServed(f"upstream {alias!r} does not serve {path or 'this endpoint'}")
    if status == 408:
        return UpstreamTimeout(detail)
    if status == 429:
        return RateLimited(detail, retry_after=retry_after(headers or {}))
    if 400 <= status < 500:
        return UpstreamRejected(detail, status=status)
    if status in (502, 503, 529):
        return UpstreamUnavailable(detail)
    if status == 504:
        return UpstreamTimeout(detail)
    return UpstreamError(detail)


def _names_a_model(message: str | None) -> bool:
    """A 404 about the model (OpenAI's ``model_not_found``) is not a missing endpoint."""
    return message is not None and "model" in message.lower()
