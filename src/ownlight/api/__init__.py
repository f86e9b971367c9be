"""Ownlight api."""
