"""Privacy classification as a stage: every text slot of the request -> sensitive spans
and a level, which routing and the egress wrapper read."""

from __future__ import annotations

import asyncio
import logging
import time

from ownlight.backends.base import BackendResult
from ownlight.privacy.stage import PrivacyShield
from ownlight.protocol.slots import text_slots
from ownlight.routing.router import UNSCANNED
from ownlight.stages.base import Stage
from ownlight.stages.context import RequestContext

log = logging.getLogger("ownlight.pipeline")

# Scanning this much text inline would hold the event loop for more than a moment.
INLINE_SCAN_CHARS = 4000


class ClassifyStage(Stage):
    name = "privacy"

    def __init__(self, privacy: PrivacyShield | None):
        self.privacy = privacy

    async def before(self, ctx: RequestContext) -> BackendResult | None:
        """Sensitive spans in every slot of the request -> its sensitivity level.

        A detector that fails or overruns ``privacy.scan_timeout`` marks the request
        unscanned: it may still be served inside the domain, but nothing of it may leave
        (fail closed). Short requests are scanned inline (a thread hop costs more than the
        scan) and judged against the budget afterwards; long ones run in a thread that the
        request stops waiting for at the deadline.
        """
        assert ctx.request is not None
        ctx.slots = text_slots(ctx.request)
        if self.privacy is None:
            return None
        privacy, slots = self.privacy, ctx.slots
        started = time.perf_counter()
        try:
            if sum(len(s.text) for s in slots) > INLINE_SCAN_CHARS:
                ctx.findings = await asyncio.wait_for(
                    asyncio.to_thread(privacy.classify_slots, slots), privacy.scan_timeout)
            else:
                ctx.findings = privacy.classify_slots(slots)
            if time.perf_counter() - started > privacy.scan_timeout:
                raise TimeoutError
        except TimeoutError:
            _scan_failed(ctx, f"it took longer than {privacy.scan_timeout:g} s "
                              "(privacy.scan_timeout)")
            return None
        except Exception as exc:
            log.exception("privacy scan failed for %s", ctx.incoming.request_id)
            _scan_failed(ctx, f"a detector failed ({type(exc).__name__})")
            return None
        ctx.sensitivity = ctx.findings.level
        return None


def _scan_failed(ctx: RequestContext, why: str) -> None:
    log.warning("privacy scan of %s failed: %s", ctx.incoming.request_id, why)
    ctx.findings, ctx.sensitivity, ctx.privacy_failure = None, UNSCANNED, why
