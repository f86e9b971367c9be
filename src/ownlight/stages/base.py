"""The ``Stage`` interface: one concern of the request path, as paired hooks.

Shaped like Bifrost's ``LLMPlugin`` (``PreLLMHook`` / ``PostLLMHook``): the pipeline runs
every stage's ``before`` in list order, then calls the backend, then runs ``after`` (a
whole answer) or ``on_chunk`` (each chunk of a stream) in reverse order — for every stage
whose ``before`` ran, and only those. A ``before`` that returns an answer short-circuits:
no later stage runs and no backend is asked, and the answer takes the same way back.
Adding a concern adds a stage to ``Pipeline.stages``, not a branch in the middle.

A request that fails runs no after-hooks: there is no answer to pass them, and the
pipeline records the failure itself.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from typing import TYPE_CHECKING, ClassVar

from ownlight.backends.base import BackendResult
from ownlight.protocol.model import Chunk, Response
from ownlight.stages.context import RequestContext

if TYPE_CHECKING:
    from ownlight.audit.records import RequestRecord


class Stage:
    """One step of the request path. Subclasses set ``name`` and override what they need."""

    name: ClassVar[str]

    async def before(self, ctx: RequestContext) -> BackendResult | None:
        """Read or change the request on its way in; an answer here short-circuits."""
        return None

    def after(self, ctx: RequestContext, answer: Response) -> Response:
        """Read or change a whole answer on its way out."""
        return answer

    def on_chunk(self, ctx: RequestContext, chunk: Chunk) -> Chunk:
        """Read or change one chunk of a streamed answer on its way out."""
        return chunk


#: Times a named step of one request: ``with step("backend"): ...``.
Timer = Callable[[str], AbstractContextManager[object]]

_UNTIMED = nullcontext()


def untimed(name: str) -> AbstractContextManager[object]:
    return _UNTIMED


class Observer:
    """What instrumentation sees of the pipeline: a request beginning, each named step
    (a stage, routing, the backend, the egress wrapper's steps), the record's commit.
    This one does nothing; tracing hands the pipeline its own (``audit/tracing.py``)."""

    def begin(self, request_id: str) -> None:
        """A request starts (its steps follow, in the same task)."""

    def drop(self, request_id: str) -> None:
        """The request ended without a commit (recorded by ``Ledger.append``)."""

    step: Timer = staticmethod(untimed)

    def committing(self, record: RequestRecord) -> AbstractContextManager[object]:
        """Around the commit of the request's record, the last step of every request."""
        return _UNTIMED
