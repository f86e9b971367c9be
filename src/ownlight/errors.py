"""Every error Ownlight shows a client, in one hierarchy.

Each class knows its HTTP status and its OpenAI error ``type``/``code``, so the HTTP
layer turns any of them into ``{"error": {"message", "type", "code", "param"}}`` with
the status OpenAI's own API would use. Nothing else ever reaches a client.

    OwnlightError
    ├── InvalidRequest            400 invalid_request_error
    │   └── ContextLengthExceeded 400 context_length_exceeded
    ├── AuthenticationFailed      401 invalid_api_key
    ├── PermissionDenied          403 permission_denied (a key's rights: admin routes)
    │   └── PolicyRefused         400 policy_refused (data policy: red line, blocked types)
    ├── ModelNotFound             404 model_not_found
    ├── UpstreamRejected          4xx upstream_rejected (the upstream's own 4xx to one request)
    │   └── EndpointNotServed     404 endpoint_not_served
    ├── NotFound                  404 not_found
    ├── PayloadTooLarge           413 request_too_large
    ├── RateLimited               429 rate_limit_exceeded
    ├── ClientDisconnected        499 client_closed_request (recorded, never sent)
    ├── AuditUnavailable          503 audit_unavailable (nothing sent, nothing answered)
    ├── StoreUnavailable          503 store_unavailable (the shared store: fail closed)
    ├── CountersUnavailable       503 counters_unavailable (Redis: nothing priced goes out)
    ├── ModelNotReady             503 model_not_ready (this instance lacks the promoted file)
    └── UpstreamError             502 upstream_error
        ├── UpstreamUnavailable   503 upstream_unavailable
        └── UpstreamTimeout       504 upstream_timeout
"""

from __future__ import annotations

from typing import Any


class OwnlightError(Exception):
    """Base class: an error with a client-facing message, status and OpenAI type."""

    status: int = 500
    type: str = "server_error"
    code: str | None = "internal_error"

    def __init__(self, message: str, *, param: str | None = None, code: str | None = None):
        super().__init__(message)
        self.message = message
        self.param = param
        if code is not None:
            self.code = code

    def to_dict(self) -> dict[str, Any]:
        return {
            "error": {
                "message": self.message,
                "type": self.type,
                "param": self.param,
                "code": self.code,
            }
        }


class InvalidRequest(OwnlightError):
    status = 400
    type = "invalid_request_error"
    code = "invalid_request"


class ContextLengthExceeded(InvalidRequest):
    code = "context_length_exceeded"


class AuthenticationFailed(OwnlightError):
    status = 401
    type = "invalid_request_error"
    code = "invalid_api_key"


class PermissionDenied(OwnlightError):
    status = 403
    type = "permission_error"
    code = "permission_denied"


class PolicyRefused(PermissionDenied):
    """This request may not be served as asked: the red line, a blocked data type, a
    routing rule. 400 ``invalid_request_error`` because that is what clients show as a
    refused request: Claude Code reads a 403 as "Failed to authenticate", the Codex CLI
    retries a 403 five times, and both show a 400's message once, as it is."""

    status = 400
    type = "invalid_request_error"
    code = "policy_refused"


class UpstreamRejected(OwnlightError):
    """An upstream refused this one request with a 4xx of its own: the request's problem,
    not the upstream's health, so no circuit breaker counts it. The client gets the
    upstream's status and, clipped, its message."""

    status = 400
    type = "invalid_request_error"
    code = "upstream_rejected"

    def __init__(self, message: str, *, status: int = 400, code: str | None = None):
        super().__init__(message, code=code)
        self.status = status


class EndpointNotServed(UpstreamRejected):
    """The upstream does not serve this endpoint (a chat-only server asked for
    ``/v1/completions``): learnt per endpoint, never held against the whole target."""

    code = "endpoint_not_served"

    def __init__(self, message: str):
        super().__init__(message, status=404)


class ModelNotFound(OwnlightError):
    status = 404
    type = "invalid_request_error"
    code = "model_not_found"


class NotFound(OwnlightError):
    status = 404
    type = "invalid_request_error"
    code = "not_found"


class PayloadTooLarge(OwnlightError):
    status = 413
    type = "invalid_request_error"
    code = "request_too_large"


class RateLimited(OwnlightError):
    status = 429
    type = "rate_limit_error"
    code = "rate_limit_exceeded"

    def __init__(self, message: str, *, param: str | None = None, code: str | None = None,
                 retry_after: float | None = None):
        super().__init__(message, param=param, code=code)
        self.retry_after = retry_after  # seconds, from the upstream's Retry-After


class ClientDisconnected(OwnlightError):
    """The client went away before its answer: the work stops, the record says so."""

    status = 499
    type = "invalid_request_error"
    code = "client_closed_request"


class AuditUnavailable(OwnlightError):
    """The audit ledger could not make a record durable: fail closed."""

    status = 503
    type = "server_error"
    code = "audit_unavailable"


class GuardUnavailable(OwnlightError):
    """The injection guard could not read what a request carries (its model failed): fail
    closed, nothing is sent on."""

    status = 503
    type = "server_error"
    code = "guard_unavailable"


class StoreUnavailable(OwnlightError):
    """The shared state store (PostgreSQL) cannot be reached: no key is trusted, nothing
    is spent, with ``Retry-After``."""

    status = 503
    type = "server_error"
    code = "store_unavailable"

    def __init__(self, message: str, *, retry_after: float | None = None):
        super().__init__(message)
        self.retry_after = retry_after


class CountersUnavailable(OwnlightError):
    """The shared counters (Redis) cannot be reached: no request that costs money goes out,
    since no instance could tell what the others spent; with ``Retry-After``."""

    status = 503
    type = "server_error"
    code = "counters_unavailable"

    def __init__(self, message: str, *, retry_after: float | None = None):
        super().__init__(message)
        self.retry_after = retry_after


class ModelNotReady(OwnlightError):
    """A registry name's promoted version cannot be served by this instance (its file is
    not here), and no other version may answer in its place: not a backend failure (no
    circuit counts it, no fallback is tried), with ``Retry-After``."""

    status = 503
    type = "server_error"
    code = "model_not_ready"

    def __init__(self, message: str, *, retry_after: float | None = None):
        super().__init__(message)
        self.retry_after = retry_after


class UpstreamError(OwnlightError):
    """A backend answered with an error or garbage. Safe to fail over."""

    status = 502
    type = "upstream_error"
    code = "upstream_error"


class UpstreamUnavailable(UpstreamError):
    """A backend could not be reached or is not loaded."""

    status = 503
    code = "upstream_unavailable"

    def __init__(self, message: str, *, param: str | None = None, code: str | None = None,
                 retry_after: float | None = None):
        super().__init__(message, param=param, code=code)
        self.retry_after = retry_after  # seconds: when a busy local model may take it


class UpstreamTimeout(UpstreamError):
    status = 504
    code = "upstream_timeout"


def clip(value: object, limit: int = 80) -> str:
    """A client's value as an error message may echo it: short, whatever was sent."""
    text = str(value)
    return repr(text) if len(text) <= limit else repr(text[:limit]) + f"... ({len(text)} chars)"


class ConfigError(Exception):
    """The operator's configuration is wrong; raised at start-up, never to a client."""
