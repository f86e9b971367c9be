"""Turning a canonical chat request into a prompt for a model that only completes text.

``prompt_messages`` flattens the request's turns into ``{role, content}`` messages:
instructions, system turns, the tools on offer and the answer format become one system
text; a tool call the model made earlier is shown as ``<tool_call>{...}</tool_call>``
(the shape it is asked to use); a tool's result is a ``tool`` turn. A template then
renders those messages. The default, ``plain``, suits base (not instruction-tuned)
models such as the bundled Gemma 3 270M: a short transcript the model continues, with
stop strings that end the answer where the next speaker would begin. A model entry may
name another built-in format or give its own Jinja2 template over ``messages``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import jinja2.sandbox
import orjson

from ownlight.backends.constrained import CALL_CLOSE, CALL_OPEN, DecodingPlan
from ownlight.errors import InvalidRequest
from ownlight.protocol.model import Request, TextPart, ToolCall, ToolResult, Turn

DEFAULT_SYSTEM = (
    "The following is a conversation with a helpful, honest assistant. "
    "The assistant answers the user's questions clearly and briefly."
)

# Two worked turns show a base model the shape of an answer; without them the bundled
# 270M model tends to echo the question back.
PLAIN_EXAMPLES = (
    "User: What is the boiling point of water at sea level?\n"
    "Assistant: Water boils at 100 °C (212 °F) at sea level.\n"
    "User: Write one sentence about autumn.\n"
    "Assistant: In autumn the leaves turn red and gold and drift slowly to the ground.\n"
)


@dataclass(frozen=True)
class ChatTemplate:
    name: str
    source: str
    stop: tuple[str, ...]

    def render(self, messages: Sequence[dict[str, Any]]) -> str:
        env = jinja2.sandbox.ImmutableSandboxedEnvironment(
            trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True
        )
        try:
            return env.from_string(self.source).render(
                messages=[_plain_message(m) for m in messages],
                default_system=DEFAULT_SYSTEM,
                examples=PLAIN_EXAMPLES,
                add_generation_prompt=True,
            )
        except jinja2.TemplateError as exc:
            raise InvalidRequest(f"chat template {self.name!r} failed: {exc}") from exc


def _plain_message(message: dict[str, Any]) -> dict[str, str]:
    return {"role": str(message.get("role", "user")),
            "content": str(message.get("content") or "").strip()}


def prompt_messages(request: Request, plan: DecodingPlan) -> list[dict[str, str]]:
    """The request as the ``{role, content}`` messages a chat template reads."""
    system = [request.instructions or ""]
    system += [t.text() for t in request.turns if t.role in ("system", "developer")]
    system.append(_tool_instructions(request, plan))
    system.append(_format_instructions(request, plan))
    messages = [{"role": "system", "content": "\n\n".join(s for s in system if s.strip())}]
    names = {c.id: c.name for t in request.turns for c in t.tool_calls}
    for turn in request.turns:
        if turn.role not in ("system", "developer"):
            messages.append({"role": turn.role, "content": _turn_text(turn, names)})
    if not messages[0]["content"]:
        messages.pop(0)
    return messages


def _turn_text(turn: Turn, names: dict[str, str]) -> str:
    pieces: list[str] = []
    for part in turn.parts:
        if isinstance(part, TextPart):
            pieces.append(part.text)
        elif isinstance(part, ToolCall):
            call = {"name": part.name, "arguments": _json_or_text(part.arguments)}
            pieces.append(CALL_OPEN + orjson.dumps(call).decode() + CALL_CLOSE)
        elif isinstance(part, ToolResult):
            text = "".join(p.text for p in part.parts if isinstance(p, TextPart))
            name = part.name or names.get(part.call_id, part.call_id)
            pieces.append(f"Result of {name}: {text}")
    return "\n".join(pieces)


def _json_or_text(arguments: str) -> Any:
    try:
        return orjson.loads(arguments)
    except orjson.JSONDecodeError:
        return arguments


def _tool_instructions(request: Request, plan: DecodingPlan) -> str:
    if not request.tools_active:
        return ""
    lines = ["You can call these tools:"]
    for tool in request.tools:
        schema = orjson.dumps(tool.parameters or {"type": "object"}).decode()
        lines.append(f"- {tool.name}: {tool.description or ''} Arguments: {schema}")
    if plan.mode == "tool":
        lines.append(f"Call {plan.tool} now: answer with its arguments as a JSON object.")
    elif plan.mode == "any_tool":
        lines.append('Call one tool now: answer with {"name": ..., "arguments": {...}}.')
    else:
        lines.append(f'To call a tool, answer only with {CALL_OPEN}{{"name": "...", '
                     f'"arguments": {{...}}}}{CALL_CLOSE}. Otherwise answer in words.')
    return "\n".join(lines)


def _format_instructions(request: Request, plan: DecodingPlan) -> str:
    fmt = request.response_format
    if plan.mode != "json" or fmt is None:
        return ""
    if fmt.schema:
        return ("Answer only with a JSON object that matches this JSON schema: "
                + orjson.dumps(fmt.schema).decode())
    return "Answer only with a JSON object."


PLAIN = ChatTemplate(
    "plain",
    "{% set system = messages | selectattr('role', 'in', ['system', 'developer'])"
    " | map(attribute='content') | join('\n\n') %}"
    "{{ system or default_system }}\n\n{{ examples }}"
    "{% for m in messages if m.role not in ('system', 'developer') %}"
    "{{ {'user': 'User', 'tool': 'Tool'}.get(m.role, 'Assistant') }}: {{ m.content }}\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}Assistant:{% endif %}",
    ("\nUser:", "\nAssistant:", "\nTool:", "\n\n"),
)

GEMMA = ChatTemplate(
    "gemma",
    "<bos>{% for m in messages %}"
    "<start_of_turn>{{ 'model' if m.role == 'assistant' else 'user' }}\n"
    "{{ m.content }}<end_of_turn>\n{% endfor %}"
    "{% if add_generation_prompt %}<start_of_turn>model\n{% endif %}",
    ("<end_of_turn>", "<start_of_turn>"),
)

CHATML = ChatTemplate(
    "chatml",
    "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}",
    ("<|im_end|>", "<|im_start|>"),
)

BUILTIN = {t.name: t for t in (PLAIN, GEMMA, CHATML)}


def resolve_template(spec: str | None, stop: Sequence[str] = ()) -> ChatTemplate:
    """A built-in name, or a Jinja2 template string given in the config."""
    if not spec:
        return PLAIN
    if spec in BUILTIN:
        return BUILTIN[spec]
    return ChatTemplate("custom", spec, tuple(stop))
