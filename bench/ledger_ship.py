"""What the shared audit ledger costs: shipping a local chain into PostgreSQL, a shipping
pass with nothing new, and ``verify`` read from PostgreSQL.

The request path does not change with ``[store] url`` (records are journaled as on one
machine); this measures the chainer-side work it adds (``audit.shared``), against a
throwaway PostgreSQL from ``tests.support.servers``. docs/scale-out.md quotes its output.

    python bench/ledger_ship.py [--records 20000]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT)]

from tests.support.servers import Postgres, running  # noqa: E402

from ownlight.audit.ledger import Ledger  # noqa: E402
from ownlight.audit.records import RequestRecord  # noqa: E402
from ownlight.audit.shared import PgLedgerStore, Shipper  # noqa: E402
from ownlight.audit.verify import verify  # noqa: E402
from ownlight.store.postgres import PostgresDatabase  # noqa: E402
from ownlight.store.sqlite import StateStore  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=20000)
    n = parser.parse_args().records
    with running(Postgres()) as server, tempfile.TemporaryDirectory() as tmp:
        url = server.database()
        PostgresDatabase(url).close()  # migrates
        ledger = Ledger(Path(tmp) / "state.db")
        for i in range(n):
            ledger.put(RequestRecord(f"req_{i}", "chat", principal="p", route="cloud",
                                     usage={"prompt_tokens": 10, "completion_tokens": 20}))
        ledger.flush()
        ledger.close()
        local = StateStore(Path(tmp) / "state.db")
        shipper = Shipper(url, local, Path(tmp))
        started = time.perf_counter()
        sent = shipper.ship()
        took = time.perf_counter() - started
        print(f"shipped {sent} records in {took:.2f} s: {took / sent * 1e6:.0f} us a record")
        idle = []
        for _ in range(200):
            started = time.perf_counter()
            shipper.ship()
            idle.append(time.perf_counter() - started)
        print(f"a pass with nothing new: p50 {statistics.median(idle) * 1e6:.0f} us")
        database = PostgresDatabase(url, max_connections=1)
        started = time.perf_counter()
        verdict = verify(PgLedgerStore(database))
        took = time.perf_counter() - started
        print(f"verify of {verdict.count} records from PostgreSQL: {took:.2f} s, "
              f"ok={verdict.ok}")
        database.close()
        shipper.close()
        local.close()


if __name__ == "__main__":
    main()
