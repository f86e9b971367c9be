"""What the console shows under an answer: the answer's text as safe HTML, and what the
ledger says about its request (who served it, why, how sensitive, what was pseudonymized
before it left: types and counts, never values)."""

from __future__ import annotations

from typing import Any

import nh3
import orjson
from markdown_it import MarkdownIt

from ownlight.principal import Principal
from ownlight.runtime import Runtime

# html=False: raw HTML in an answer is shown as text; links only of safe schemes
_markdown = MarkdownIt("commonmark", {"html": False, "linkify": False}).enable("table")
_ALLOWED_TAGS = {"p", "br", "strong", "em", "code", "pre", "ul", "ol", "li", "blockquote",
                 "h1", "h2", "h3", "h4", "h5", "h6", "a", "table", "thead", "tbody", "tr",
                 "th", "td", "hr"}


def answer_html(text: str) -> str:
    """Markdown to HTML that cannot run: rendered with HTML off, then sanitized again."""
    return nh3.clean(_markdown.render(text), tags=_ALLOWED_TAGS,
                     attributes={"a": {"href", "title"}}, url_schemes={"http", "https", "mailto"},
                     link_rel="noopener noreferrer nofollow")


def request_facts(runtime: Runtime, who: Principal, request_id: str) -> dict[str, Any] | None:
    """The ledger's record of one of this person's requests (another's: None)."""
    rows = runtime.audit_rows().query(
        "SELECT record FROM audit_log WHERE request_id = ? AND principal = ? AND tenant = ?"
        " AND kind = 'request'", (request_id, who.name, who.tenant))
    if not rows:
        return None
    record: dict[str, Any] = orjson.loads(str(rows[0][0]))
    return {
        "route": record.get("route"),
        "target": record.get("target"),
        "reason": record.get("reason"),
        "inside_domain": record.get("inside_domain"),
        "sensitivity": record.get("sensitivity"),
        "found": record.get("found") or {},
        "pseudonymized": record.get("pseudonymized") or {},
        "guard": record.get("injection"),
        "model": record.get("model"),
        "status": record.get("status"),
    }


def output_text(body: dict[str, Any]) -> str:
    """The text of a stored Responses answer."""
    parts: list[str] = []
    for item in body.get("output") or []:
        if item.get("type") == "message":
            parts += [c.get("text", "") for c in item.get("content") or []
                      if c.get("type") == "output_text"]
    return "".join(parts)
