"""``ownlight`` with the audit ledger and metrics switched off, for bench/overhead.py only.

    python bench/audit_off.py serve --no-local --upstream fake=http://...

Ownlight has no setting that turns its ledger off: a gateway that can run unrecorded
proves nothing to an auditor. To measure what the ledger and metrics cost, the
benchmark starts this copy beside the real one instead: the same code, with the
request and egress records not written (nor their bodies sealed) and the metrics not
updated. Everything else (budgets, routing, privacy, the guard) runs as usual.
"""

from __future__ import annotations

from typing import Any

from ownlight.audit.ledger import Ledger
from ownlight.audit.metrics import Metrics
from ownlight.cli import main
from ownlight.pipeline import Pipeline
from ownlight.privacy.egress import EgressBackend


def _nothing(*args: Any, **kwargs: Any) -> None:
    return None


def switch_off() -> None:
    EgressBackend.record = _nothing  # type: ignore[method-assign]
    Pipeline.commit = _nothing  # type: ignore[method-assign]
    Ledger.seal = _nothing  # type: ignore[assignment,method-assign]
    Ledger.append = _nothing  # type: ignore[method-assign]
    Metrics.observe = _nothing  # type: ignore[method-assign]
    Metrics.observe_egress = _nothing  # type: ignore[method-assign]


if __name__ == "__main__":
    switch_off()
    main()
