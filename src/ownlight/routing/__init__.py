"""Ownlight routing."""
