"""The guard on the knowledge path: a chunk's injection score, computed from its vector at
ingest and stored with it, decides at query time on both stores.

A chunk whose stored score is over the head's threshold is withheld although its words
pass the n-gram model (the stored score is read, not recomputed); documents injected in
Chinese and Russian, ingested by ``ownlight ingest`` with the real embedder, never become
sources, while their clean twins do.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from ownlight.cli import main
from ownlight.guard.chunk_head import shared_head
from ownlight.guard.stage import InjectionGuard
from ownlight.knowledge.base import KnowledgeBase, index_path
from ownlight.knowledge.postgres_store import PostgresKnowledgeStore
from ownlight.knowledge.sqlite_store import SQLiteKnowledgeStore
from ownlight.knowledge.types import Document
from tests.conftest import upstream_toml
from tests.support.fake_upstream import FakeUpstream

DROP = '[guard]\nuntrusted_action = "drop"\n'
QUIET = "The zebrafern order ships from the Porto warehouse within two working days."
ALSO_QUIET = "The zebrafern return window is thirty days from delivery."


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest) -> str | None:
    return None if request.param == "sqlite" else str(request.getfixturevalue("postgres_url"))


def _gateway(gateway_factory, cloud: FakeUpstream, store_url: str | None):
    toml = upstream_toml("cloud", cloud.url, "fake-echo", retries=0)
    toml += "[knowledge]\nvectors = false\n" + DROP
    if store_url:
        toml += f'[store]\nurl = "{store_url}"\n'
    return gateway_factory(toml)


def _kb(gateway, store_url: str | None) -> KnowledgeBase:
    store = (PostgresKnowledgeStore.connect(store_url) if store_url
             else SQLiteKnowledgeStore(index_path(gateway.config.data_dir)))
    return KnowledgeBase(store, None)


def _ask(gateway, question: str):
    return gateway.client().chat.completions.with_raw_response.create(
        model="cloud", messages=[{"role": "user", "content": question}],
        extra_body={"knowledge": ["shop"]})


def test_the_stored_chunk_score_decides_at_query_time(gateway_factory, cloud, store_url) -> None:
    guard = InjectionGuard()
    assert not guard.scan_untrusted(QUIET).injection  # its words alone would pass
    gateway = _gateway(gateway_factory, cloud, store_url)
    kb = _kb(gateway, store_url)
    try:
        kb.ingest_documents("docs", [Document("marked", "Shipping", QUIET, allow=("public",)),
                                     Document("plain", "Returns", ALSO_QUIET,
                                              allow=("public",))], "shop")
        pending = dict(kb.store.pending_chunks(10))
        ids = sorted(pending)
        high = shared_head().threshold + 0.01
        scores = [high if "Porto" in pending[i] else 0.0 for i in ids]
        kb.store.store_vectors(ids, np.full((len(ids), 384), 0.05, np.float32), scores)
    finally:
        kb.close()
    raw = _ask(gateway, "zebrafern shipping and returns?")
    assert "chunks_withheld=1" in raw.headers["x-ownlight-guard"]
    assert [c["document_id"] for c in raw.parse().citations] == ["plain"]  # type: ignore
    assert "Porto" not in json.dumps(cloud.received)


def _row(path: str, lang: str, label: int) -> dict:
    """The first indirect dev row of ``lang`` with ``label`` (training data, so a
    regression test of what the head learned, not a measurement)."""
    rows = [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]
    return next(r for r in rows if r.get("kind") == "indirect" and r.get("lang") == lang
                and int(r["label"]) == label)


EVAL = Path(__file__).resolve().parents[1] / "eval"
INJECTED = {lang: _row(str(EVAL / "injection_multilingual_dev.jsonl"), lang, 1)["text"]
            for lang in ("zh", "ru")}
CLEAN = {lang: _row(str(EVAL / "injection_multilingual_dev.jsonl"), lang, 0)["text"]
         for lang in ("zh", "ru")}


def test_injected_documents_in_chinese_and_russian_are_caught_through_ingest(
        gateway_factory, cloud, store_url, tmp_path: Path) -> None:
    gateway = _gateway(gateway_factory, cloud, store_url)
    folder = tmp_path / "docs"
    folder.mkdir()
    for lang in INJECTED:
        (folder / f"injected-{lang}.txt").write_text("zebrafern\n" + INJECTED[lang])
        (folder / f"clean-{lang}.txt").write_text("zebrafern\n" + CLEAN[lang])
    env = {"OWNLIGHT_DATA_DIR": str(gateway.config.data_dir)}
    if store_url:
        env["OWNLIGHT_STORE_URL"] = store_url
    result = CliRunner().invoke(main, ["ingest", str(folder), "-c", "shop", "--allow",
                                       "public"], env=env)
    assert result.exit_code == 0, result.output
    raw = _ask(gateway, "zebrafern")
    cited = sorted(c["document_id"] for c in raw.parse().citations)  # type: ignore
    assert cited == ["clean-ru.txt", "clean-zh.txt"]
    assert "chunks_withheld=2" in raw.headers["x-ownlight-guard"]
