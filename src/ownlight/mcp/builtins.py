"""Ownlight's own tools over MCP: ``ownlight__knowledge_search`` searches the knowledge
base with the caller's access rights (``knowledge.service``), so any MCP client can ground
itself in the organisation's documents and see only what its key may read."""

from __future__ import annotations

from typing import Any

import orjson

from ownlight.knowledge.service import KnowledgeService
from ownlight.mcp.hub import OWN_SERVER, Builtin
from ownlight.mcp.types import Tool, ToolInvalidArguments, qualified
from ownlight.principal import Principal

MAX_K = 20

SEARCH_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "query": {"type": "string", "description": "What to look for."},
        "collections": {"type": "array", "items": {"type": "string"}, "minItems": 1,
                        "description": "Knowledge collections to search."},
        "k": {"type": "integer", "minimum": 1, "maximum": MAX_K,
              "description": "How many passages to return (default 5)."},
    },
    "required": ["query", "collections"],
    "additionalProperties": False,
}


def knowledge_search(service: KnowledgeService, default_k: int) -> Builtin:
    """The knowledge base as a tool; answers JSON: the passages the caller may read."""

    async def call(principal: Principal, arguments: dict[str, Any]) -> str:
        query = arguments.get("query")
        collections = arguments.get("collections")
        k = arguments.get("k", default_k)
        if not isinstance(query, str) or not query.strip():
            raise ToolInvalidArguments("`query` must be a non-empty string.")
        if not isinstance(collections, list) or not collections or not all(
                isinstance(c, str) for c in collections):
            raise ToolInvalidArguments("`collections` must be a list of collection names.")
        if not isinstance(k, int) or isinstance(k, bool) or not 1 <= k <= MAX_K:
            raise ToolInvalidArguments(f"`k` must be an integer from 1 to {MAX_K}.")
        hits = await service.search(principal, query, collections, k)
        return orjson.dumps({"results": [h.to_dict() for h in hits]}).decode()

    tool = Tool(name=qualified(OWN_SERVER, "knowledge_search"), server=OWN_SERVER,
                tool="knowledge_search", input_schema=SEARCH_SCHEMA, inside_domain=True,
                description="Search the organisation's knowledge base; returns only passages "
                            "the caller may read, with their document and collection.")
    return Builtin(tool, call)
