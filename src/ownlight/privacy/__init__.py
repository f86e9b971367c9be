"""Ownlight privacy."""
