"""Rendering a console page: the template, the language, the nav and the security headers.

Pages are Jinja2 templates with autoescaping on; no page has inline script or style, and
the Content-Security-Policy says so, so text from a model or a document can never run.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from ownlight.console.i18n import LANGUAGES, Translator, language
from ownlight.console.session import CSRF_FIELD, Session

TEMPLATES = Path(__file__).parent / "templates"
SECURITY_HEADERS = {
    "content-security-policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; "
        "form-action 'self'"),
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "cache-control": "no-store",
    "x-frame-options": "DENY",
}

environment = Environment(loader=FileSystemLoader(TEMPLATES),
                          autoescape=select_autoescape(default=True, default_for_string=True))


def nav(session: Session | None) -> list[tuple[str, str]]:
    """(path, catalogue key) of the pages this person may open; the admin views add theirs
    from ``console.admin.NAV`` when that package is installed."""
    if session is None:
        return []
    items = [("/console/", "nav.chat"), ("/console/knowledge", "nav.knowledge")]
    if session.principal.is_admin:
        try:
            admin = importlib.import_module("ownlight.console.admin")
        except ModuleNotFoundError:
            admin = None
        items += list(getattr(admin, "NAV", []))
    return items


def render(request: Request, template: str, session: Session | None = None,
           status: int = 200, **context: Any) -> Response:
    lang = language(request)
    t = Translator(lang)
    html = environment.get_template(template).render(
        t=t, lang=lang, languages=LANGUAGES, session=session, nav=nav(session),
        path=request.url.path, csrf=session.csrf if session else "", csrf_field=CSRF_FIELD,
        **context)
    return HTMLResponse(html, status_code=status, headers=SECURITY_HEADERS)
