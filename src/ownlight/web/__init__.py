"""Ownlight web."""
