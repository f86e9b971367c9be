"""Ownlight: a self-hosted, local-first AI gateway."""

__version__ = "0.1.0"
