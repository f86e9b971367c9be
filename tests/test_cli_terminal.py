"""What a user sees in the terminal of ``ownlight chat``: Ownlight's words only.

llama.cpp writes its model-loading lines from C; Ownlight routes them through its own
logger (src/ownlight/backends/llama_log.py), silent unless ``--verbose`` asks.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.test_cli import ownlight

LLAMA_LINES = ("control-looking token", "llama_kv_cache", "llama_model_loader", "load_tensors")


@pytest.mark.slow
def test_chat_shows_the_answer_and_no_llama_cpp_line(hermetic_env: Path) -> None:
    done = ownlight("chat", "--max-tokens", "8", "Say hi")
    assert done.returncode == 0, done.stderr
    shown = done.stdout + done.stderr
    assert done.stdout.strip()
    assert not any(line in shown for line in LLAMA_LINES), shown[-2000:]
    verbose = ownlight("--verbose", "chat", "--max-tokens", "4", "Say hi")
    assert verbose.returncode == 0 and "ownlight.llama" in verbose.stderr
    assert "control-looking token" in verbose.stderr
