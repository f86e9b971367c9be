"""Ownlight's own state, one small interface per kind (``store.base``), each on SQLite (the
embedded default, one file per instance) and on PostgreSQL (shared by every instance);
``store.open`` is the one place that picks, from ``[store] url``."""
