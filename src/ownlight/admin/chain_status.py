"""The chain verification status the egress view shows, without verifying on a page view.

Verifying recomputes every hash (seconds at a million records), so a page shows the last
verdict (when, how many records, the head hash, the first bad record if any) beside the
ledger's current count; an admin asks for a new verification, which runs in a thread and
is recorded in the ledger (``audit.verify``) like any admin act.
"""

from __future__ import annotations

import threading
import time
from dataclasses import asdict
from typing import Any

from ownlight.audit.ledger import Ledger
from ownlight.audit.records import AdminRecord
from ownlight.audit.shared import LedgerRows
from ownlight.audit.verify import head, verify
from ownlight.principal import Principal


class ChainStatus:
    """The last verdict of this process, and at most one verification at a time."""

    def __init__(self) -> None:
        self.verdict: dict[str, Any] | None = None
        self.running = False
        self._lock = threading.Lock()

    def status(self, store: LedgerRows) -> dict[str, Any]:
        _, count = head(store)
        verified = self.verdict["count"] if self.verdict else 0
        return {
            "last": self.verdict,
            "running": self.running,
            "records": count,
            "unverified": max(0, count - verified),
        }

    def start(self, store: LedgerRows, ledger: Ledger, actor: Principal) -> bool:
        """Start a verification unless one is running; whether it started."""
        with self._lock:
            if self.running:
                return False
            self.running = True
        threading.Thread(
            target=self._run, args=(store, ledger, actor), daemon=True, name="chain-verify"
        ).start()
        return True

    def wait(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while self.running and time.monotonic() < deadline:
            time.sleep(0.02)

    def _run(self, store: LedgerRows, ledger: Ledger, actor: Principal) -> None:
        try:
            verdict = verify(store)
            self.verdict = {**asdict(verdict), "at": time.time()}
            ledger.append(
                AdminRecord(
                    "audit.verify",
                    "ledger",
                    actor.name,
                    actor.tenant,
                    {
                        "ok": verdict.ok,
                        "count": verdict.count,
                        "head": verdict.head,
                        "problem": verdict.problem,
                    },
                )
            )
        finally:
            self.running = False


def for_app(state: Any) -> ChainStatus:
    """The one ``ChainStatus`` of a running app (its ``app.state``), made on first use, so
    the admin API and the console show the same verdict."""
    if not hasattr(state, "chain_status"):
        state.chain_status = ChainStatus()
    status: ChainStatus = state.chain_status
    return status
