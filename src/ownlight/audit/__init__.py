"""Ownlight audit."""
