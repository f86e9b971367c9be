"""Turning chat messages into a prompt for a model that only completes text.

The default, ``plain``, suits base (not instruction-tuned) models such as the bundled
Gemma 3 270M: a short transcript the model continues, with stop strings that end
the answer where the next speaker would begin. A model entry may name another
built-in format or give its own Jinja2 template over ``messages``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import jinja2.sandbox

from ownlight.errors import InvalidRequest

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
    """Flatten OpenAI content parts to text; the local models read text only."""
    content = message.get("content") or ""
    if isinstance(content, list):
        content = "".join(
            part.get("text", "") for part in content if isinstance(part, dict)
        )
    return {"role": str(message.get("role", "user")), "content": str(content).strip()}


PLAIN = ChatTemplate(
    "plain",
    "{% set system = messages | selectattr('role', 'in', ['system', 'developer'])"
    " | map(attribute='content') | join('\n\n') %}"
    "{{ system or default_system }}\n\n{{ examples }}"
    "{% for m in messages if m.role not in ('system', 'developer') %}"
    "{{ 'User' if m.role == 'user' else 'Assistant' }}: {{ m.content }}\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}Assistant:{% endif %}",
    ("\nUser:", "\nAssistant:", "\n\n"),
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
