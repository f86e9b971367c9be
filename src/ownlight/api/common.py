"""What every route module needs: the caller's key, then a size- and depth-checked body.

The key is read and checked before the body (cheap, and a stranger learns nothing
about what a body should look like). The key-header rule: ``Authorization``, when
present, decides (``Bearer KEY``; anything else is refused); ``x-api-key`` is read only
when there is no ``Authorization`` header, as Anthropic clients send it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Iterable, Mapping
from typing import Protocol, TypeVar

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope

from ownlight.audit.ledger import AuditUnavailableError
from ownlight.audit.records import RequestRecord, new_request_id
from ownlight.auth import KeyStore
from ownlight.errors import (
    AuditUnavailable,
    ClientDisconnected,
    InvalidRequest,
    PayloadTooLarge,
)
from ownlight.principal import Principal
from ownlight.runtime import Runtime

T = TypeVar("T")


class PipelineRoute(Protocol):
    """A hot route the server dispatches to directly (see server.FastPath)."""

    async def respond(self, runtime: Runtime, scope: Scope, receive: Receive) -> Response: ...


# Deeper JSON than this is refused when parsed: nothing a client sends needs it, and
# forwarding it would hit encoders' recursion limits later.
MAX_JSON_DEPTH = 64


def key_from_headers(headers: Mapping[str, str]) -> str | None:
    """The presented key, by the key-header rule above (a malformed header stays wrong)."""
    auth = headers.get("authorization")
    if auth is None:
        return headers.get("x-api-key") or None
    scheme, _, value = auth.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return auth  # never rescued by x-api-key: it fails the lookup like a wrong key


def bearer_key(request: Request) -> str | None:
    return key_from_headers(request.headers)


def parse_json(raw: bytes) -> object:
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidRequest(f"We could not parse the JSON body of your request: {exc}") from None
    if _too_deep(body):
        raise InvalidRequest(f"The JSON body is nested more than {MAX_JSON_DEPTH} levels deep.")
    return body


def _too_deep(body: object) -> bool:
    """Depth check without recursion: a stack of (container, depth)."""
    stack = [(body, 1)]
    while stack:
        node, depth = stack.pop()
        children: Iterable[object]
        if isinstance(node, dict):
            children = node.values()
        elif isinstance(node, list):
            children = node
        else:
            continue
        if depth > MAX_JSON_DEPTH:
            return True
        stack.extend((child, depth + 1) for child in children
                     if isinstance(child, dict | list))
    return False


async def read_body(receive: Receive, headers: Mapping[str, str], limit: int) -> bytes:
    """The request body from raw ASGI messages, refused early when over ``limit``."""
    length = headers.get("content-length", "")
    if length.isdigit() and int(length) > limit:
        raise PayloadTooLarge(f"Request body is larger than {limit} bytes.")
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise InvalidRequest("The client disconnected before sending its request.")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"Request body is larger than {limit} bytes.")
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


async def read_json(request: Request, limit: int) -> object:
    return parse_json(await read_body(request.receive, request.headers, limit))


def scope_headers(scope: Scope) -> dict[str, str]:
    return {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}


async def authenticated_body(keys: KeyStore, scope: Scope, receive: Receive,
                             limit: int) -> tuple[Principal, str | None, dict[str, str], object]:
    """(principal, key, headers, parsed body): the key first (a refusal is recorded with
    this request's client address and route), then the body."""
    headers = scope_headers(scope)
    key = key_from_headers(headers)
    principal = keys.authenticate(key, scope)
    body = parse_json(await read_body(receive, headers, limit))
    return principal, key, headers, body


async def until_disconnect(receive: Receive, work: Awaitable[T]) -> T:
    """Await ``work``, cancelling it if the client disconnects first.

    A non-streamed answer is only sent at the end, so without this a generation would
    go on for a client that is gone, delaying everyone queued behind it. (Streams notice
    the disconnect themselves when a write fails.)
    """
    task = asyncio.ensure_future(work)
    watch = asyncio.ensure_future(_disconnected(receive))
    try:
        await asyncio.wait({task, watch}, return_when=asyncio.FIRST_COMPLETED)
    except asyncio.CancelledError:
        task.cancel()
        raise
    finally:
        watch.cancel()
    if task.done():
        return task.result()
    task.cancel()
    try:
        await task
    except (asyncio.CancelledError, Exception):
        pass
    raise ClientDisconnected("The client disconnected before the answer was ready.")


async def _disconnected(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


def record_read(runtime: Runtime, principal: Principal, endpoint: str,
                      facts: dict[str, object]) -> None:
    """A search or a scan is in the ledger (documents read, never the text) before it is
    answered, like every request."""
    record = RequestRecord(new_request_id(), "search", endpoint, principal=principal.name,
                           tenant=principal.tenant, groups=list(principal.groups),
                           knowledge=facts)
    try:
        runtime.pipeline.ledger.put(record)
    except AuditUnavailableError:
        raise AuditUnavailable("The audit ledger could not record this request.") from None
