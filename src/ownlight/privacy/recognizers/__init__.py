"""Recognizers: one module per family, each a class with ``name`` and ``find(text)``.

A recognizer never settles overlaps with others; the detector does (see ``spans``).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol

from ownlight.privacy.spans import Span


class Recognizer(Protocol):
    name: str

    def find(self, text: str) -> Iterator[Span]: ...
