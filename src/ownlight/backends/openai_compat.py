"""Any OpenAI-compatible HTTP server: llama-server, Ollama, vLLM, LocalAI or a cloud API.

The canonical request is rendered in the OpenAI wire format (fields Ownlight does not
model travel along, already scanned by the privacy shield), and answers are parsed
back into the canonical model; streams are relayed chunk by chunk. A stream always
asks for usage, so budgets and records can count it; the gateway hides it from
clients that did not ask.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from ownlight.backends.base import BackendResult, Operation
from ownlight.backends.http import HttpBackend, error_message
from ownlight.errors import UpstreamError
from ownlight.protocol import openai as wire
from ownlight.protocol.model import Chunk, Request

PATHS = {
    Operation.CHAT: "/chat/completions",
    Operation.COMPLETION: "/completions",
    Operation.EMBEDDING: "/embeddings",
}


class OpenAICompatBackend(HttpBackend):
    kind = "openai"
    wire_protocol = "openai"
    operations = frozenset(Operation)

    def auth_headers(self) -> dict[str, str]:
        if self.entry.api_key is None:
            return {}
        return {"Authorization": f"Bearer {self.entry.api_key.reveal()}"}

    async def execute(self, request: Request) -> BackendResult:
        body = wire.render_request(request, self.entry.settings.max_tokens_field)
        body["model"] = self.model_name
        path = PATHS[request.operation]
        if request.stream:
            response = await self.post_stream(path, body)
            return self._relay(request.operation, self.sse_data(response))
        return wire.parse_response(request.operation, await self.post_json(path, body))

    async def _relay(self, operation: Operation,
                     events: AsyncIterator[dict]) -> AsyncIterator[Chunk]:
        try:
            async for event in events:
                if "error" in event:
                    raise UpstreamError(error_message(event) or "upstream stream failed")
                yield wire.parse_chunk(operation, event)
        finally:
            await events.aclose()  # type: ignore[attr-defined]
