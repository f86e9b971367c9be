"""What one file may cost ingestion, and the errors a file that cannot be read raises.

The bounds are the ``knowledge.*`` settings of the same names; an error for a file over
one names the setting, so the operator knows what to raise.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ownlight.config import KnowledgeSettings

MB = 1 << 20
#: A file may split into one chunk per this many characters of ``max_text_mb``: a text
#: of a million tiny sections would cost the index far more than its size says.
CHARS_PER_CHUNK = 50


class LoadError(Exception):
    """A file that could not be turned into documents."""


class OverLimit(LoadError):
    """A file over one of the bounds: skipped, with the bound it broke."""

    def __init__(self, what: str, setting: str, value: float, unit: str = "MB"):
        super().__init__(f"{what} (over knowledge.{setting} = {value:g} {unit})")
        self.what, self.setting, self.value, self.unit = what, setting, value, unit


def megabytes(size: int) -> str:
    return f"{size / MB:,.1f} MB"


@dataclass(frozen=True)
class IngestLimits:
    """The bounds one file is parsed within (see ``KnowledgeSettings`` for each)."""

    max_file_mb: float
    max_text_mb: float
    max_mail_mb: float
    file_timeout: float
    parse_memory_mb: float

    @classmethod
    def from_settings(cls, knowledge: KnowledgeSettings) -> IngestLimits:
        return cls(**{name: getattr(knowledge, name) for name in cls.__dataclass_fields__})

    @classmethod
    def default(cls) -> IngestLimits:
        from ownlight.config import KnowledgeSettings

        return cls.from_settings(KnowledgeSettings())

    @property
    def file_bytes(self) -> int:
        return int(self.max_file_mb * MB)

    @property
    def text_chars(self) -> int:
        return int(self.max_text_mb * MB)

    @property
    def max_chunks(self) -> int:
        return max(1, self.text_chars // CHARS_PER_CHUNK)

    @property
    def mail_bytes(self) -> int:
        return int(self.max_mail_mb * MB)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def too_big(self, what: str, size: int) -> OverLimit:
        """``what`` (e.g. "the file is") ``size`` bytes, over ``max_file_mb``."""
        return OverLimit(f"{what} {megabytes(size)}", "max_file_mb", self.max_file_mb)
