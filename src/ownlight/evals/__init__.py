"""Ownlight evals."""
