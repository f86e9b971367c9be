"""The fields a recorded client request uses, named the way docs/clients.md names them.

``tests/data/agents/*.json`` hold what the pinned agent releases really sent. Every name
this module finds in them must have a row in the protocol's table in docs/clients.md, so
a new release that sends something new fails a test until the table (and the code) say
what Ownlight does with it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

AGENTS = Path(__file__).resolve().parent.parent / "data" / "agents"


def recorded(prefix: str) -> list[dict[str, Any]]:
    """Every recorded request of the fixtures whose name starts with ``prefix``."""
    out: list[dict[str, Any]] = []
    for path in sorted(AGENTS.glob(f"{prefix}*.json")):
        out += json.loads(path.read_text())
    return out


def responses_fields(body: dict[str, Any]) -> set[str]:
    names = {f"`{k}`" for k in body}
    for tool in body.get("tools") or []:
        names.add(f"`tools[type={tool.get('type')}]`")
    for key in body.get("reasoning") or {}:
        names.add(f"`reasoning.{key}`")
    for key in body.get("text") or {}:
        names.add(f"`text.{key}`")
    for item in body.get("input") or []:
        kind = item.get("type", "message")
        names.add(f"`input[type={kind}]`")
        if kind == "message":
            names.add(f"`input[role={item.get('role')}]`")
            for part in item.get("content") or []:
                names.add(f"`content[type={part.get('type')}]`")
    return names


def messages_fields(record: dict[str, Any]) -> set[str]:
    body = record["body"]
    names = {f"`{k}`" for k in body}
    names.update(f"`header:{h}`" for h in record["headers"] if h.startswith("anthropic-"))
    if "?" in record["path"]:
        names.add(f"`query:{record['path'].split('?', 1)[1]}`")
    for key in body.get("thinking") or {}:
        names.add(f"`thinking.{key}`")
    for key in body.get("output_config") or {}:
        names.add(f"`output_config.{key}`")
    for key in body.get("metadata") or {}:
        names.add(f"`metadata.{key}`")
    for tool in body.get("tools") or []:
        names.add(f"`tools[type={tool.get('type', 'custom')}]`")
        names.update(f"`tools[].{k}`" for k in tool
                     if k not in ("name", "description", "input_schema", "type"))
    system = body.get("system")
    for block in system if isinstance(system, list) else []:
        names.update(f"`system[].{k}`" for k in block if k not in ("type", "text"))
    for message in body.get("messages") or []:
        names.add(f"`messages[role={message.get('role')}]`")
        content = message.get("content")
        for block in content if isinstance(content, list) else []:
            names.add(f"`content[type={block.get('type')}]`")
            names.update(f"`content[].{k}`" for k in block
                         if k not in ("type", "text", "id", "name", "input", "tool_use_id",
                                      "content"))
    return names
