"""Ownlight guard."""
