"""Ownlight's own state (keys, and later budgets and the audit ledger)."""
