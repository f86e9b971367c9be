"""Ownlight models."""
