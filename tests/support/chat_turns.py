"""Chat Completions messages for a turn in which the model called a tool and got its output."""

from __future__ import annotations

from typing import Any


def tool_exchange(question: str, tool: str, output: str,
                  follow_up: str | None = None) -> list[dict[str, Any]]:
    """The user's question, the assistant's call of ``tool``, the tool's ``output`` and,
    if given, the user's next turn."""
    messages: list[dict[str, Any]] = [
        {"role": "user", "content": question},
        {"role": "assistant", "tool_calls": [{"id": "c1", "type": "function", "function": {
            "name": tool, "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "c1", "content": output}]
    if follow_up is not None:
        messages.append({"role": "user", "content": follow_up})
    return messages
