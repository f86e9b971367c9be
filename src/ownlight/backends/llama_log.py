"""llama.cpp's own log, through Ownlight's logger instead of the user's terminal.

llama.cpp writes its load messages (``load: control-looking token ...``,
``llama_kv_cache_iswa: using full-size SWA cache ...``) from C, and llama-cpp-python
prints them to stderr unless a ``Llama`` object was made with ``verbose=False`` — which
Ownlight's batching engine, built on the low-level API, never makes. ``route_to_logging``
replaces that callback: every line goes to the ``ownlight.llama`` logger at DEBUG (its
errors at ERROR), so the terminal stays quiet unless ``--verbose`` asks for it.
"""

from __future__ import annotations

import ctypes
import logging
import threading
from collections import deque
from typing import Any

log = logging.getLogger("ownlight.llama")

# ggml_log_level: NONE 0, DEBUG 1, INFO 2, WARN 3, ERROR 4, CONT 5 (continues the last).
# Its warnings are about the model file ("probably a bug in the model"), not for users.
_ERROR, _CONT = 4, 5
_lock = threading.Lock()
_pending: list[str] = []
_pending_level = logging.DEBUG
_callback: Any = None  # kept alive: llama.cpp holds a raw pointer to it
_errors: deque[str] = deque(maxlen=3)  # the last error lines, for the error that follows


def route_to_logging() -> None:
    """Send llama.cpp's log to ``ownlight.llama`` (idempotent; call before a model loads)."""
    global _callback
    if _callback is not None:
        return
    import llama_cpp
    import llama_cpp._logger  # noqa: F401  sets its own callback once, on first import: first


    @llama_cpp.llama_log_callback  # type: ignore[misc]
    def callback(level: int, text: bytes, user_data: ctypes.c_void_p) -> None:
        _receive(level, text.decode("utf-8", "replace"))

    _callback = callback
    llama_cpp.llama_log_set(callback, ctypes.c_void_p(0))


def _receive(level: int, text: str) -> None:
    """llama.cpp sends a line in pieces: keep them until the newline, then log the line."""
    global _pending_level
    with _lock:
        if level != _CONT:
            _pending_level = logging.ERROR if level == _ERROR else logging.DEBUG
        _pending.append(text)
        if not text.endswith("\n"):
            return
        line = "".join(_pending).rstrip()
        _pending.clear()
        at = _pending_level
    if line:
        if at == logging.ERROR:
            _errors.append(line)
        log.log(at, "%s", line)


def recent_errors() -> list[str]:
    """llama.cpp's last error lines (taken: each is told once), to explain a failure."""
    with _lock:
        lines = list(_errors)
        _errors.clear()
    return lines
