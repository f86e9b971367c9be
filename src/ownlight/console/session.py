"""Who is signed in to the console, and the checks every page and form goes through.

The session cookie is ``Secure``, ``HttpOnly`` and ``SameSite=Strict`` (browsers keep a
Secure cookie on http://localhost and 127.0.0.1, so a local ``make serve`` works). Each
request looks the key up again through the key store (in memory on PostgreSQL, kept
current by LISTEN/NOTIFY), so revoking a key ends its sessions at once. Every request that
changes something carries the session's CSRF token in a form field or the
``x-csrf-token`` header, compared in constant time.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass

from starlette.requests import Request

from ownlight.console.store import SessionRows
from ownlight.principal import Principal
from ownlight.runtime import Runtime

COOKIE = "ownlight_session"
LIFETIME = 12 * 3600.0
CSRF_HEADER = "x-csrf-token"
CSRF_FIELD = "csrf"


@dataclass(frozen=True)
class Session:
    token: str
    principal: Principal
    csrf: str


class NotSignedIn(Exception):
    """No live session: pages redirect to sign-in, the console's API answers 401."""


class Forbidden(Exception):
    """Signed in, but not allowed: an admin page for an ordinary user, a bad CSRF token."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def rows(runtime: Runtime) -> SessionRows:
    assert runtime.stores is not None
    return SessionRows(runtime.stores.registry)


def current(request: Request) -> Session:
    """The live session of this request, its key still valid; else ``NotSignedIn``."""
    runtime: Runtime = request.app.state.runtime
    token = request.cookies.get(COOKIE)
    if not token:
        raise NotSignedIn()
    row = rows(runtime).get(token)
    if row is None:
        raise NotSignedIn()
    principal = runtime.keys.rows.principal(row.key_hash)
    if principal is None:  # revoked since: the session ends with the key
        rows(runtime).close(token)
        raise NotSignedIn()
    return Session(token, principal, row.csrf)


def require_admin(session: Session) -> None:
    if not session.principal.is_admin:
        raise Forbidden("admin_only")


async def check_csrf(request: Request, session: Session) -> None:
    """The token from the header (fetch) or the form field (a plain form post)."""
    sent = request.headers.get(CSRF_HEADER)
    if sent is None and request.headers.get("content-type", "").startswith(
            ("application/x-www-form-urlencoded", "multipart/form-data")):
        sent = str((await request.form()).get(CSRF_FIELD) or "")
    if not sent or not hmac.compare_digest(sent, session.csrf):
        raise Forbidden("csrf")
