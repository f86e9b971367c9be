"""Training the guard's word networks (``word_cnn``) with torch.

Torch is needed here only, never to serve: ``pip install torch`` (the CPU build is enough;
a training run on the dev sets takes a few minutes on two cores). The network's input
layer is the lexicon itself, frozen, so it learns which runs of meanings make a prompt, not
new words; the weights go to numpy for ``WordCNN``.

Settings chosen on the dev cross-validation of ``ownlight guard train --untrusted --word-cnn``
(128 filters beat 64 and 256; 25 epochs beat 6 and 15); the user-input model's network
(``ownlight guard train --word-cnn``) uses the same.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

import numpy as np

from ownlight.guard.lexicon import packaged
from ownlight.guard.word_cnn import WordCNN, word_rows

FILTERS = 128
WIDTHS = (1, 2, 3)
EPOCHS = 25
LEARNING_RATE = 2e-3
BATCH = 256
DROPOUT = 0.2
CHECK_LINES = 24


def _torch() -> Any:
    try:
        import torch
    except ImportError as error:  # training only: serving reads the weights in numpy
        raise SystemExit("the word network is trained with torch: pip install torch "
                         "(the CPU build), or train without --word-cnn") from error
    return torch


def _network(torch: Any, filters: int) -> Any:
    nn = torch.nn
    lexicon = packaged()
    table = np.vstack([np.zeros((1, lexicon.dims + 1), np.float32),  # row 0: padding
                       np.hstack([lexicon.vectors, lexicon.weights[:, None]])])

    class Network(nn.Module):  # type: ignore[misc,name-defined]
        def __init__(self) -> None:
            super().__init__()
            self.words = nn.Embedding.from_pretrained(torch.tensor(table), freeze=True,
                                                      padding_idx=0)
            self.convs = nn.ModuleList(nn.Conv1d(lexicon.dims + 1, filters, w, padding=w - 1)
                                       for w in WIDTHS)
            self.drop = nn.Dropout(DROPOUT)
            self.out = nn.Linear(filters * len(WIDTHS), 1)

        def forward(self, ids: Any) -> Any:
            x = self.words(ids).transpose(1, 2)
            padding = (ids == 0)[:, None, :]
            pooled = []
            for conv in self.convs:
                # padding w - 1 on both sides, cut to the line: a position reads its word and
                # the ones before it, as ``WordCNN`` does
                h = torch.relu(conv(x))[:, :, : ids.shape[1]].masked_fill(padding, 0.0)
                pooled.append(h.max(-1).values)
            return self.out(self.drop(torch.cat(pooled, -1)))[:, 0]

    return Network()


def _batch(torch: Any, rows: list[list[int]]) -> Any:
    out = np.zeros((len(rows), max(1, *map(len, rows))), np.int64)
    for i, r in enumerate(rows):
        out[i, : len(r)] = np.asarray(r) + 1
    return torch.tensor(out)


def fit(texts: Sequence[str], labels: Sequence[int], weights: Sequence[float],
        epochs: int = EPOCHS, filters: int = FILTERS, seed: int = 0,
        extended: bool = True) -> WordCNN:
    """A network for the lines ``texts`` (1: a prompt), classes balanced, then ``weights``;
    ``extended``: it reads the lexicon's Russian extension too (``lexicon``)."""
    torch = _torch()
    torch.manual_seed(seed)
    rows = [word_rows(t, extended) for t in texts]
    network = _network(torch, filters)
    trained = [p for p in network.parameters() if p.requires_grad]
    optimiser = torch.optim.Adam(trained, lr=LEARNING_RATE, weight_decay=1e-5)
    y = np.asarray(labels, np.float32)
    w = np.asarray(weights, np.float32) * np.where(
        y == 1, (y == 0).sum() / max((y == 1).sum(), 1), 1.0)
    w /= w.mean()
    order = np.argsort([len(r) for r in rows], kind="stable")  # lines of a size together
    batches = [order[i : i + BATCH] for i in range(0, len(order), BATCH)]
    shuffle = random.Random(seed)
    for _ in range(epochs):
        network.train()
        shuffle.shuffle(batches)
        for b in batches:
            logit = network(_batch(torch, [rows[i] for i in b]))
            loss = torch.nn.functional.binary_cross_entropy_with_logits(
                logit, torch.tensor(y[b]), reduction="none") * torch.tensor(w[b])
            optimiser.zero_grad()
            loss.mean().backward()
            optimiser.step()
    network.eval()
    read = WordCNN(
        [c.weight.detach().numpy().transpose(2, 1, 0).copy() for c in network.convs],
        [c.bias.detach().numpy().copy() for c in network.convs],
        network.out.weight.detach().numpy()[0].copy(), float(network.out.bias.item()),
        extended=extended)
    # lines of every length with torch's own logits: what the numpy reading must reproduce
    picked = sorted(set(order[:: max(1, len(order) // CHECK_LINES)].tolist()))
    with torch.no_grad():
        read.check_texts = tuple(texts[i] for i in picked)
        read.check_logits = np.array([float(network(_batch(torch, [rows[i]]))[0])
                                      for i in picked], np.float32)
    return read
