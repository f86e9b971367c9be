"""Deciding which backend serves a request: aliases now, policy and complexity next."""
