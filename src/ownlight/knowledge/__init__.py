"""Ownlight knowledge."""
