"""An Anthropic Messages API upstream (``/v1/messages``), natively.

Any front-end reaches it: a Chat Completions or Responses client's canonical request
is rendered as a Messages body (system text, alternating turns, ``tool_use`` and
``tool_result`` blocks), and the answer or event stream is read back into the
canonical model. The key travels in ``x-api-key`` with the configured
``anthropic-version``; the betas a Messages client asked for (``anthropic-beta``) travel
with the fields they unlock.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from ownlight.backends.base import BackendResult, Operation
from ownlight.backends.http import HttpBackend
from ownlight.protocol import anthropic as wire
from ownlight.protocol.model import Chunk, Request


class AnthropicBackend(HttpBackend):
    kind = "anthropic"
    wire_protocol = "anthropic"
    operations = frozenset({Operation.CHAT})
    probe_path = "/v1/models"

    def auth_headers(self) -> dict[str, str]:
        headers = {"anthropic-version": self.entry.settings.anthropic_version}
        if self.entry.api_key is not None:
            headers["x-api-key"] = self.entry.api_key.reveal()
        return headers

    async def execute(self, request: Request) -> BackendResult:
        body = wire.render_request(request)
        body["model"] = self.model_name
        headers = ({"anthropic-beta": ",".join(request.betas)}
                   if request.betas and request.protocol == "anthropic" else None)
        if request.stream:
            response = await self.post_stream("/v1/messages", body, headers)
            return self._relay(self.sse_data(response, end=None))
        return wire.parse_response(await self.post_json("/v1/messages", body, headers))

    async def _relay(self, events: AsyncIterator[dict]) -> AsyncIterator[Chunk]:
        reader = wire.EventReader()
        try:
            async for event in events:
                for chunk in reader.read(event):
                    yield chunk
        finally:
            await events.aclose()  # type: ignore[attr-defined]
