"""Ownlight backends."""
